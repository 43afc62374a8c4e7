"""Checkpoints of a training run: the trained weights, optimizer, scheduler and step, written atomically.

A checkpoint directory appears only once complete (written to a temporary name, then renamed); the
last two are kept. `state.pt` marks a complete one. With FSDP (`--fsdp`) the weights and optimizer state are a
torch distributed checkpoint in `shards/` (each process writes and reads its own shard, on a file system every
node sees), and `state.pt` holds the step and the schedule.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from dail_harness.errors import HarnessError
from dail_harness.files import temp_dir

KEEP = 2


def _sharded_options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    # only the weights that train (LoRA: the adapter); strict=False: the frozen ones are not in the checkpoint
    return StateDictOptions(ignore_frozen_params=True, strict=False)


def step_of(checkpoint: Path) -> int:
    """The optimizer steps a checkpoint directory (`step-N`) holds."""
    return int(checkpoint.name.split("-")[1])


def latest_checkpoint(out: Path) -> Path | None:
    ckpts = sorted((p for p in (out / "checkpoints").glob("step-*") if (p / "state.pt").exists()), key=step_of)
    return ckpts[-1] if ckpts else None


def save_checkpoint(out: Path, step: int, weights: dict, optimizer, scheduler) -> None:
    root = out / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir(root, ".tmp-")
    state = {"step": step, "weights": weights, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
    torch.save(state, tmp / "state.pt")
    _publish(root, tmp, step)


def _publish(root: Path, tmp: Path, step: int) -> None:
    """Rename a complete checkpoint into place; keep the last KEEP. A checkpoint is renamed aside before it is
    deleted, so a kill never leaves a half-deleted one under a `step-N` name; what a kill did leave (a temporary
    or an aside directory) is removed here, when nothing else is being written."""
    final = root / f"step-{step}"
    if final.exists():
        _discard(final)
    os.rename(tmp, final)
    for old in sorted(root.glob("step-*"), key=step_of)[:-KEEP]:
        _discard(old)
    for stale in [*root.glob(".tmp-*"), *root.glob(".old-*")]:
        shutil.rmtree(stale, ignore_errors=True)


def _discard(checkpoint: Path) -> None:
    aside = checkpoint.with_name(f".old-{checkpoint.name}")
    shutil.rmtree(aside, ignore_errors=True)
    os.rename(checkpoint, aside)
    shutil.rmtree(aside, ignore_errors=True)


def save_sharded_checkpoint(out: Path, step: int, module, optimizer, scheduler, main: bool) -> None:
    """Every process: its shard of the weights that train and of the optimizer state; the main process adds the
    step and schedule and publishes the directory once every shard is written."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    root = out / "checkpoints"
    tmp = root / f".tmp-sharded-{step}"  # one name every process knows
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    weights, optim = get_state_dict(module, optimizer, options=_sharded_options())
    dcp.save({"weights": weights, "optimizer": optim}, checkpoint_id=str(tmp / "shards"))
    dist.barrier()
    if main:
        torch.save({"step": step, "scheduler": scheduler.state_dict(), "sharded": True}, tmp / "state.pt")
        _publish(root, tmp, step)
    dist.barrier()


def load_sharded_checkpoint(path: Path, module, optimizer, scheduler) -> dict:
    """Every process: restore its shards of a sharded checkpoint, the optimizer and the schedule; returns the
    state (`step`)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
    if not state.get("sharded"):
        raise HarnessError(
            "this checkpoint holds whole weights, not FSDP shards: resume it without --fsdp", path=str(path)
        )
    weights, optim = get_state_dict(module, optimizer, options=_sharded_options())
    dcp.load({"weights": weights, "optimizer": optim}, checkpoint_id=str(path / "shards"))
    set_state_dict(module, optimizer, model_state_dict=weights, optim_state_dict=optim, options=_sharded_options())
    _restore_schedule(scheduler, state)
    return state


def load_checkpoint(path: Path, optimizer, scheduler) -> dict:
    """Restore the optimizer and scheduler; returns the state (`step`, `weights` for the policy). The next
    step's rate comes from `scheduler`'s own schedule, whose total may exceed the checkpoint's (an extended run)."""
    state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
    if state.get("sharded"):
        raise HarnessError("this checkpoint holds FSDP shards: resume it with --fsdp", path=str(path))
    optimizer.load_state_dict(state["optimizer"])
    _restore_schedule(scheduler, state)
    return state


def _restore_schedule(scheduler, state: dict) -> None:
    scheduler.load_state_dict(state["scheduler"])
    scheduler.last_epoch -= 1  # step() recomputes the rate of the current step under this schedule
    scheduler.step()
