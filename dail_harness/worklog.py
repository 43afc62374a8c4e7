"""The finished work of a resumable job, kept as an append-only JSONL file of keyed rows.

eval's samples, generate's traces, data hints' hints and explanations, and STaR's generated rows are all
work items keyed by (item, sample index or attempt): each finished group is appended in one write, a kill
can only cut the last line short, and a rerun (after its settings record has said the settings match)
repairs that line, reads the keys already done and produces only the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from dail_harness.files import append_jsonl, iter_jsonl, repair_partial_tail
from dail_harness.scale.shards import Shard
from dail_harness.settings import SettingsRecord

T = TypeVar("T")


def share(items: list[T], shard: tuple[int, int] | None) -> list[T]:
    """Shard i of N of a job's whole items (the sharding rule of scale/shards.py without sample blocks): `--shard
    i/N` of data hints, and a process's share (rank, world) of STaR's generation. None: all of them."""
    if shard is None:
        return list(items)
    whole = Shard(shard[0], shard[1])
    return [x for position, x in enumerate(items) if whole.owns(position, 0)]


class WorkLog:
    """One append-only file of finished work rows, and the key that identifies a row's work item."""

    def __init__(self, path: str | Path, key: Callable[[dict], Hashable]):
        self.path, self.key = Path(path), key

    def repair(self) -> None:
        """Cut the line a kill left half-written (only once the settings say the file belongs to this job)."""
        repair_partial_tail(self.path)

    def rows(self) -> Iterator[dict]:
        """The finished rows, in the order they were appended."""
        if self.path.exists():
            yield from (row for _, row in iter_jsonl(self.path, allow_partial_tail=True))

    def done(self) -> set:
        """The keys of the finished work items."""
        return {self.key(row) for row in self.rows()}

    def append(self, rows: Iterable[dict]) -> None:
        """Store finished rows durably (one write and an fsync)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        append_jsonl(self.path, rows)


def resume(
    record: SettingsRecord,
    settings: dict,
    logs: Iterable[WorkLog],
    may_change: Iterable[str] | Mapping[str, Any] = (),
) -> bool:
    """Refuse a rerun whose settings differ from the record's (naming them, except the growable `may_change`),
    and repair the logs of a matching earlier run; True if there was one."""
    if not record.check(settings, may_change):
        return False
    for log in logs:
        log.repair()
    return True
