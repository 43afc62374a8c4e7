"""Checkpoints of a training run: the trained weights, optimizer, scheduler and step, written atomically.

A checkpoint directory appears only once complete (written to a temporary name, then renamed); the
last two are kept.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from dail_harness.files import temp_dir

KEEP = 2


def step_of(checkpoint: Path) -> int:
    """The optimizer steps a checkpoint directory (`step-N`) holds."""
    return int(checkpoint.name.split("-")[1])


def latest_checkpoint(out: Path) -> Path | None:
    ckpts = sorted((p for p in (out / "checkpoints").glob("step-*") if (p / "state.pt").exists()), key=step_of)
    return ckpts[-1] if ckpts else None


def save_checkpoint(out: Path, step: int, weights: dict, optimizer, scheduler) -> None:
    root = out / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step}"
    tmp = temp_dir(root, ".tmp-")
    state = {"step": step, "weights": weights, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
    torch.save(state, tmp / "state.pt")
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    for old in sorted(root.glob("step-*"), key=step_of)[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(path: Path, optimizer, scheduler) -> dict:
    """Restore the optimizer and scheduler; returns the state (`step`, `weights` for the policy). The next
    step's rate comes from `scheduler`'s own schedule, whose total may exceed the checkpoint's (an extended run)."""
    state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scheduler.last_epoch -= 1  # step() recomputes the rate of the current step under this schedule
    scheduler.step()
    return state
