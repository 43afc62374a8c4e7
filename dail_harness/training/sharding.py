"""FSDP2 for the training loop (`train --fsdp`): weights, gradients and optimizer state sharded over the processes.

torch's `fully_shard` is applied by the harness (each decoder layer, then the module around the model, and the
same for a frozen reference copy), not by accelerate's plugin: accelerate 1.x turns FSDP on only for accelerator
devices, so its path could not run here at all, while this one runs the same code on CPU processes (gloo) and on
GPUs (NCCL) and is tested with 2 processes. The loop around it is unchanged:

- The LM head is used outside the forward (the chunked loss). The outermost sharded module keeps its own
  parameters (embeddings, final norm, head) gathered from its forward to the end of the backward (FSDP2 does not
  reshard a root after forward), so the head's gradient is reduce-scattered with them.
- Sampling (hf generate, and evaluation during training) runs inside `whole`: every process gathers every
  weight at once and keeps it gathered until the block ends, since processes sampling different lengths would
  otherwise meet each layer's collective a different number of times.
- Checkpoints are torch distributed checkpoints, one shard per process (`checkpoints.py`); the final weights are
  gathered to the main process and saved as usual (adapter, or the full model).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch


def shard(policy: Any, student: torch.nn.Module, device: torch.device) -> torch.nn.Module | None:
    """Shard the policy in place over the launch's processes (already moved to `device`): each decoder layer, then
    `student` (the module whose forward the loop calls, as student(ids, mask, index)) and, with a frozen reference
    copy, a module around its decoder. Returns that reference module (None without a frozen copy): call it, not the
    copy's decoder."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    if not dist.is_initialized():  # one launched process (torchrun --nproc-per-node 1): accelerate starts no group
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    for model in (policy.model, policy.frozen):
        if model is not None:
            for layer in model.get_decoder().layers:
                fully_shard(layer, mesh=mesh)
    root = fully_shard(student, mesh=mesh)
    one = torch.zeros((1, 1), dtype=torch.long, device=device)
    at = torch.zeros(1, dtype=torch.long, device=device)
    with torch.no_grad():  # FSDP sets itself up at a root's first forward, which must come before a layer's own
        student(one, torch.ones_like(one), (at, at))
    root.reshard()  # a root keeps its own weights gathered after forward; the optimizer must get the shards
    if policy.frozen is None:
        return None
    reference = DecoderHidden(policy.frozen)
    fully_shard(reference, mesh=mesh)
    with torch.no_grad():
        reference(one, torch.ones_like(one))
    return reference


class DecoderHidden(torch.nn.Module):
    """A model's final hidden states, as one module: the unit FSDP gathers around a frozen reference's decoder."""

    def __init__(self, model: Any):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        return self.model.get_decoder()(input_ids=input_ids, attention_mask=attention_mask)


def sharded_modules(root: torch.nn.Module) -> list:
    from torch.distributed.fsdp import FSDPModule

    return [m for m in root.modules() if isinstance(m, FSDPModule)]


@contextlib.contextmanager
def whole(root: torch.nn.Module) -> Iterator[None]:
    """Every weight under `root` gathered on every process until the block ends (entered by all processes
    together): for sampling, whose forward calls differ in number between processes."""
    modules = sharded_modules(root)
    for m in modules:
        m.set_reshard_after_forward(False, recurse=False)
        m.unshard()
    try:
        yield
    finally:
        for m in modules:
            m.reshard()
            m.set_reshard_after_forward(m is not root, recurse=False)  # FSDP2's own choice: the root keeps its own
            _forget_forwards(m)


def _forget_forwards(module: Any) -> None:
    """Drop FSDP2's record of the forwards run since the last backward. It prefetches layers in backward by that
    order, and sampling runs a different number of forwards on each process (or on the main one alone): kept, the
    record would make the processes prefetch different layers, and their collectives would not meet (a hang found
    with an evaluation between two steps). torch's private state (2.13): no public way to reset it."""
    state = module._get_fsdp_state()
    state._comm_ctx.post_forward_order.clear()
    for group in state._fsdp_param_groups:
        group._post_forward_indices.clear()


def clip_grad_norm(params: list[torch.nn.Parameter], max_norm: float) -> float:
    """Clip the gradients to a total norm over every shard (the norm of the whole gradient); returns it."""
    from torch.distributed.tensor import DTensor

    grads = [p.grad for p in params if p.grad is not None]
    total = torch.nn.utils.get_total_norm(grads)
    if isinstance(total, DTensor):
        total = total.full_tensor()
    torch.nn.utils.clip_grads_with_norm_([p for p in params if p.grad is not None], max_norm, total)
    return float(total)


def gathered_weights(model: torch.nn.Module, trainable_only: bool) -> dict[str, Any]:
    """The model's whole weights (only those that train, with `trainable_only`) on the main process, in the
    model's own names; an empty dict on the others. Every process calls it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=trainable_only)
    return get_model_state_dict(model, options=options)
