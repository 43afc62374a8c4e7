"""What the harness runs inside vLLM's workers (`LLM(worker_extension_cls=WORKER_EXTENSION)`): methods called by
name through `LLM.collective_rpc`, which works whether the engine runs in this process or in its own."""

from __future__ import annotations

from collections.abc import Iterable

import torch


class HarnessWorker:
    """Mixed into vLLM's worker class; `self` is the worker."""

    def dail_take_accepted(self, limits: dict[str, list[int]]) -> dict[str, int]:
        """The mixed-rollout processor's student-token counts per pair (rollout/vllm_pairs.py)."""
        from dail_harness.rollout.vllm_pairs import PairedMixing

        for proc in self.model_runner.input_batch.logitsprocs.all:  # type: ignore[attr-defined]
            if isinstance(proc, PairedMixing):
                return proc.take_accepted({pair: (int(lo), int(hi)) for pair, (lo, hi) in limits.items()})
        raise RuntimeError("the vLLM engine was built without the mixed-rollout logits processor")

    def dail_load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Load a trained model's weights (Hugging Face names) into the served model, in place, through vLLM's
        own reload: its loader maps them onto the fused layers (qkv, gate-up), casts them to the engine's dtype,
        and redoes what loading does afterwards (e.g. the CPU kernels' repacked weights)."""
        self.reload_weights(weights_iterator=iter(weights), is_checkpoint_format=True)  # type: ignore[attr-defined]


WORKER_EXTENSION = f"{__name__}.{HarnessWorker.__name__}"
