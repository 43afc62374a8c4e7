"""The step plan of a run: which examples (or prompts) each optimizer step takes, and each process's share.

Data order is a function of (seed, epoch) alone, so a resumed run takes the same steps, and a longer run
(more epochs, a larger --max-steps) the same first steps as a shorter one. Offline, a step
takes `grad_accum` micro-batches per process (with N processes under DDP it spans grad_accum x N);
online, a step takes `prompts_per_step` prompts, shared among the processes.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dail_harness.errors import HarnessError
from dail_harness.training.examples import Example


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    order = list(range(n))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return order


LENGTH_SETTINGS = ("max_steps", "epochs")
"""Settings that only say how long the plan is: a longer plan starts with every step of a shorter one, so a
finished run can be extended by changing them (the engine refuses a plan shorter than the finished steps)."""


def epochs_covered(steps: list[tuple[int, list[list[int]]]], n_items: int) -> float:
    """How many passes over the data a plan takes, partial ones as a share (--max-steps 2 of 4 prompts on 8: 0.5)."""
    return sum(len(b) for _, batches in steps for b in batches) / max(1, n_items)


def plan_steps(
    n_items: int,
    *,
    epochs: int,
    seed: int,
    batch_size: int,
    per_step: int,
    max_steps: int | None = None,
    drop_last: bool = False,
) -> list[tuple[int, list[list[int]]]]:
    """Every optimizer step as (epoch, batches of item indices), in order. `max_steps` overrides `epochs` (as in
    Hugging Face Trainer): exactly that many steps, passing over the data as often as it takes, each pass
    in its own keyed order, so a plan of any length is a prefix of every longer one. `drop_last` leaves out
    each epoch's last step when it holds fewer than batch_size x per_step items (DataLoader's drop_last)."""
    full = batch_size * per_step
    if drop_last and 0 < n_items < full:
        raise HarnessError(
            f"--drop-last with {n_items} item(s) and {full} per step: every step would be dropped; "
            "use fewer per step or no --drop-last"
        )
    steps: list[tuple[int, list[list[int]]]] = []
    epoch = 0
    while n_items and ((len(steps) < max_steps) if max_steps else (epoch < epochs)):
        order = epoch_order(n_items, seed, epoch)
        if drop_last:
            order = order[: n_items - n_items % full]
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        for g in range(0, len(batches), per_step):
            steps.append((epoch, batches[g : g + per_step]))
        epoch += 1
    return steps[:max_steps] if max_steps else steps


@dataclass
class StepBatch:
    """This process's share of one optimizer step: its micro-batches, and what to log about the step."""

    micro_batches: list[list[Example]]
    total_micro_batches: int
    """Micro-batches of the whole step, over all processes (the denominator of a "mean" loss)."""
    idle: list[Example] | None = None
    """A micro-batch for a process without data this step: it runs with weight 0 to join the all-reduce."""
    stats: dict = field(default_factory=dict)


def offline_batches(examples: list[Example], steps: list, rank: int, world: int) -> Callable[[int], StepBatch]:
    def batch(step: int) -> StepBatch:
        epoch, group = steps[step]
        mine = [[examples[i] for i in m] for m in group[rank::world]]
        return StepBatch(mine, len(group), idle=[examples[i] for i in group[0]], stats={"epoch": epoch})

    return batch


def micro_batches(examples: list[Example], size: int) -> list[list[Example]]:
    return [examples[i : i + size] for i in range(0, len(examples), size)]


class StepSource:
    """Where a run's steps come from (`Trainer.fit` runs any of them): `plan` says how many optimizer steps there
    are (before the model loads), `open` holds what the steps need while they run (e.g. the grading pool),
    `batch(step)` gives a step's micro-batches, `result` what the run reports besides steps and the last log row.
    Checkpoints fall on multiples of `align`."""

    align = 1

    def plan(self, trainer: Any) -> int:  # trainer: engine.Trainer (not imported: the engine imports this)
        raise NotImplementedError

    def open(self, trainer: Any) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def batch(self, step: int) -> StepBatch:
        raise NotImplementedError

    def result(self) -> dict:
        return {}
