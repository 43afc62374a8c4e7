"""The cost of a sampling job before it starts: samples and a token bound per rank, and where each engine runs.

`eval --dry-run` and `generate --dry-run` print this without loading a model; every run prints its one-line
total before sampling. Run a dry run with a launcher's variables to see a cluster's plan from one shell, e.g.
`WORLD_SIZE=16 LOCAL_WORLD_SIZE=8 RANK=0 dail-harness eval ... --dry-run` for 2 nodes x 8 GPUs.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass

from dail_harness.scale.launch import Launch, local_devices
from dail_harness.scale.shards import Shard


@dataclass(frozen=True)
class Work:
    """One item's samples: its position in the job, how many samples, and at most how many tokens each."""

    position: int
    samples: int
    max_tokens_each: int


def per_rank(work: Iterable[Work], world: int, block: int | None) -> list[tuple[int, int]]:
    """(samples, token bound) of each of `world` ranks under the sharding rule."""
    work = list(work)
    totals = [[0, 0] for _ in range(world)]
    shard = Shard(0, world, block, 1 + max((w.position for w in work), default=0))
    for w in work:
        for i in range(w.samples):
            owner = shard.owner(w.position, i)
            totals[owner][0] += 1
            totals[owner][1] += w.max_tokens_each
    return [(s, t) for s, t in totals]


def total_line(what: str, samples: int, tokens: int, launch: Launch) -> str:
    where = f", over {launch.world} processes" if launch.launched else ""
    return f"{what}: {samples:,} samples, at most {tokens:,} new tokens{where}"


def launcher_name(launch: Launch) -> str:
    return "no launcher" if launch.launcher == "none" else launch.launcher


def format_plan(
    what: str,
    work: list[Work],
    launch: Launch,
    tensor_parallel_size: int,
    block: int | None,
    device: str | None = None,
) -> str:
    """The plan: totals, then one line per rank (node, local rank, the devices its engine asks for, its share).
    Without --device the devices are those a GPU node would give (a dry run on a login node plans a cluster)."""
    world, local = launch.world, launch.local_world
    shares = per_rank(work, world, block)
    header = "devices" if device else "devices (if GPUs)"
    lines = [
        total_line(what, sum(s for s, _ in shares), sum(t for _, t in shares), launch),
        f"launch: {world} process(es) = {max(1, world // local)} node(s) x {local}, {launcher_name(launch)}; "
        f"one engine per process over {tensor_parallel_size} device(s): {local * tensor_parallel_size} devices "
        f"per node; sample block {block or 'whole items'}",
        f"{'rank':>5} {'node':>5} {'local':>5}  {header:<30} {'samples':>9} {'token bound':>14}",
    ]
    for rank, (samples, tokens) in enumerate(shares):
        devices = device or ",".join(f"cuda:{d}" for d in local_devices(rank % local, tensor_parallel_size))
        lines.append(f"{rank:>5} {rank // local:>5} {rank % local:>5}  {devices:<30} {samples:>9,} {tokens:>14,}")
    return "\n".join(lines)


def format_training_plan(
    head: str, step: str, launch: Launch, engine: str, device: str | None, sharded: bool = False
) -> str:
    """`train --dry-run`: the run and its steps, then one line per rank (node, local rank, the device its
    policy replica, and any colocated sampling engine, sits on: --device, or GPU <local rank> as accelerate
    places it)."""
    world, local = launch.world, launch.local_world
    lines = [
        head,
        step,
        f"launch: {world} process(es) = {max(1, world // local)} node(s) x {local}, {launcher_name(launch)}; "
        f"{_placement(world, sharded)}; {engine}",
        f"{'rank':>5} {'node':>5} {'local':>5}  {'device' if device else 'device (if GPUs)'}",
    ]
    for rank in range(world):
        lines.append(f"{rank:>5} {rank // local:>5} {rank % local:>5}  {device or f'cuda:{rank % local}'}")
    return "\n".join(lines)


def _placement(world: int, sharded: bool) -> str:
    if sharded:
        return f"the policy sharded over the {world} processes (FSDP2: each holds 1/{world} of it)"
    return "one policy replica per process (DDP)" if world > 1 else "one policy"


class JobProgress:
    """The progress of one process's sampling: its cost line, then a bar where one is shown (a process alone, or
    rank 0 of a launch); every other launched rank prints its cost line and one ETA line after its first batch
    instead (bars of several processes on one terminal garble each other)."""

    def __init__(self, what: str, unit: str, total: int, token_bound: int, show: bool, launch: Launch):
        from tqdm import tqdm

        self.what, self.unit, self.total, self.launch = what, unit, total, launch
        self.quiet_rank = launch.launched and not show
        self.done, self.tokens, self.start = 0, 0, time.monotonic()
        if show or launch.launched:
            rank = f" (rank {launch.rank}/{launch.world})" if launch.launched else ""
            print(f"{what}{rank}: {total:,} {unit}s to draw, at most {token_bound:,} new tokens", file=sys.stderr)
        self.bar = tqdm(total=total, desc=what, unit=unit, disable=not show, dynamic_ncols=True)

    def update(self, n: int, tokens: int = 0, **postfix: object) -> None:
        """`n` more units done, with `tokens` new tokens (shown as tokens per second) and other figures."""
        self.bar.update(n)
        self.tokens += tokens
        if n and (self.tokens or postfix):  # a job that counts no tokens shows no rate
            rate = {"tok_s": f"{self.tokens / max(time.monotonic() - self.start, 1e-9):.0f}"} if self.tokens else {}
            self.bar.set_postfix(**rate, **postfix)
        first = self.done == 0 and n > 0
        self.done += n
        if first and self.quiet_rank and self.done < self.total:
            elapsed = time.monotonic() - self.start
            eta = elapsed / self.done * (self.total - self.done)
            print(
                f"{self.what} (rank {self.launch.rank}/{self.launch.world}): {self.done}/{self.total} {self.unit}s "
                f"after {elapsed:.0f} s, about {eta / 60:.1f} min left",
                file=sys.stderr,
            )

    def close(self) -> None:
        self.bar.close()
