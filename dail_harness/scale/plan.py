"""The plan of a sampling job over its processes: which samples each shard owns, where its shards live, and
what each rank's work costs before it starts.

Work is cut by (item, block of sample indices): the (item, block) pairs are dealt round-robin, block by block,
so sample s of the item at position p of P belongs to shard (p + (s // block) * P) % N. A small benchmark at large
k (30 AIME problems x 128 samples in blocks of 16: 240 pairs) thus spreads evenly over many more processes than
it has problems; block = None keeps whole items together (p % N). A larger --n adds blocks without moving any
sample; a larger --limit (P) moves most samples past the first block to other shards, which is harmless: a
launched process skips samples stored anywhere in the run (its output or any shard directory). Keyed sampling
makes the union of the shards a one-process run's samples.

The cost: samples and a token bound per rank, and where each engine runs. `eval --dry-run` and
`generate --dry-run` print it without loading a model; every run prints its one-line total before sampling.
Run a dry run with a launcher's variables to see a cluster's plan from one shell, e.g.
`WORLD_SIZE=16 LOCAL_WORLD_SIZE=8 RANK=0 dail-harness eval ... --dry-run` for 2 nodes x 8 GPUs.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dail_harness.errors import HarnessError
from dail_harness.scale.launch import Launch, local_devices
from dail_harness.worklog import SettingsRecord

DEFAULT_SAMPLE_BLOCK = 16


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count`, in blocks of `block` sample indices (None: whole items)."""

    index: int
    count: int
    block: int | None = None
    items: int = 1
    """How many items the job has (P): the stride between one block of an item and its next."""

    def owner(self, position: int, sample_index: int) -> int:
        """The shard that owns sample `sample_index` of the item at `position`."""
        block = 0 if self.block is None else sample_index // self.block
        return (position + block * self.items) % self.count

    def owns(self, position: int, sample_index: int) -> bool:
        return self.owner(position, sample_index) == self.index

    def indices(self, position: int, indices: Iterable[int]) -> list[int]:
        """The sample indices of `indices` this shard owns for the item at `position`."""
        return [i for i in indices if self.owns(position, i)]


def refuse_old_sharding(record: SettingsRecord) -> None:
    """A shard started before sample blocks (problems split by index % N within each task) cannot be finished
    under today's rule: say so instead of a settings difference the user cannot undo."""
    if record.exists():
        old = record.read()
        if old.get("shard") and "sample_block" not in old:
            raise HarnessError(
                f"{record.target} is a shard started by an older dail-harness (problems split by index % N); "
                "finish it with that version, or start the shards again in a new --out"
            )


def as_shard(spec: tuple[int, int] | None, block: int | None, items: int) -> Shard | None:
    """The Shard of `--shard i/N` in a job of `items` items (None without it)."""
    return None if spec is None else Shard(spec[0], spec[1], block, items)


def shard_dir(out: str | Path, index: int, count: int) -> Path:
    """The run directory of shard index/count of a launched eval into `out`."""
    return Path(out) / "shards" / f"{index}-of-{count}"


def shard_file(out: str | Path, index: int, count: int) -> Path:
    """The output file of shard index/count of a launched job writing the file `out` (e.g. D_syn)."""
    out = Path(out)
    return out.with_name(out.name + ".shards") / f"{index}-of-{count}{out.suffix}"


def lacking_per_shard(absent: Iterable[tuple[int, int]], count: int, block: int | None, items: int) -> dict[int, int]:
    """How many of the `absent` (position, sample index) samples each of `count` shards still owes."""
    lacking: dict[int, int] = {}
    for position, i in absent:
        owner = Shard(0, count, block, items).owner(position, i)
        lacking[owner] = lacking.get(owner, 0) + 1
    return lacking


def waiting_message(what: str, lacking: dict[int, int], count: int) -> str:
    """The line a rank prints when it finished its own shard but others are not done."""
    shards = ", ".join(f"{i}/{count} ({n} left)" for i, n in sorted(lacking.items()))
    return (
        f"{what}: this shard is done; shard(s) {shards} are not finished yet. The last rank to finish merges; "
        "rerun the same command to finish a shard that was stopped"
    )


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
