"""Which samples a shard owns, where a launched job's shards live, and whether they are all there.

Work is cut by (item, block of sample indices): the (item, block) pairs are dealt round-robin, block by block,
so sample s of the item at position p of P belongs to shard (p + (s // block) * P) % N. A small benchmark at large
k (30 AIME problems x 128 samples in blocks of 16: 240 pairs) thus spreads evenly over many more processes than
it has problems; block = None keeps whole items together (p % N). A larger --n adds blocks without moving any
sample; a larger --limit (P) moves most samples past the first block to other shards, which is harmless: a
launched process skips samples stored anywhere in the run (its output or any shard directory). Keyed sampling
makes the union of the shards a one-process run's samples.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dail_harness.errors import HarnessError
from dail_harness.settings import SettingsRecord

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
