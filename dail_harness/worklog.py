"""The one resumable job: work items keyed by (item, sample index) -> produce -> grade -> append -> skip on rerun.

eval's samples, generate's traces, data hints' hints and explanations, and STaR's generated rows are all work
items keyed by (item, sample index or attempt). A `Job` holds the settings record that says what its `WorkLog`
holds: a rerun with other settings is refused (naming them), a matching one repairs the line a kill cut short
and reads the keys already stored; `pending` says which samples of which items this process owns (its shard)
and lacks; `Job.run` stores each finished, graded group in one durable write as it comes, the record first so
that no row is ever without one. Each job supplies only what is its own: its items, how it draws and grades
them, and the row it stores.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from dail_harness.errors import HarnessError
from dail_harness.files import append_jsonl, iter_jsonl, repair_partial_tail
from dail_harness.settings import SettingsRecord

T = TypeVar("T")


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


class Dealing(Protocol):
    """Which sample indices of the item at a position a process owns (`scale.shards.Shard` is the one rule)."""

    def indices(self, position: int, indices: Iterable[int]) -> list[int]: ...


@dataclass(frozen=True)
class Pending(Generic[T]):
    """An item of a job and the sample indices of it that this process owns and has not stored."""

    position: int
    """Where the item stands among the job's items: what the sharding rule deals out."""
    item: T
    indices: list[int]


def pending(items: Sequence[T], n: int, shard: Dealing | None, stored: Callable[[T, int], bool]) -> list[Pending[T]]:
    """Per item, in order, the indices in range(n) that `shard` owns (all without one) and `stored` says are
    missing; items with none are left out."""
    work = []
    for position, item in enumerate(items):
        owned = range(n) if shard is None else shard.indices(position, range(n))
        missing = [i for i in owned if not stored(item, i)]
        if missing:
            work.append(Pending(position, item, missing))
    return work


class Job:
    """A resumable job's settings record, its work log (and any side logs, e.g. hints' explanations), and the
    loop that stores its finished work."""

    def __init__(
        self,
        record: SettingsRecord | None,
        settings: dict,
        log: WorkLog,
        side_logs: Iterable[WorkLog] = (),
        may_change: Iterable[str] | Mapping[str, Any] = (),
    ):
        self.record, self.settings, self.log = record, settings, log
        self.side_logs, self.may_change = list(side_logs), may_change
        self.new_rows = 0

    def resume(self) -> set:
        """Refuse a rerun whose settings differ (except the growable ones), repair the logs of a matching earlier
        run, and return the keys it stored. Without a record of its own (a part of a larger run whose record
        the caller checked) the logs are only repaired."""
        if self.record is None:
            for log in [self.log, *self.side_logs]:
                log.repair()
        else:
            self._refuse_rows_without_record()
            resume(self.record, self.settings, [self.log, *self.side_logs], self.may_change)
        return self.log.done()

    def _refuse_rows_without_record(self) -> None:
        """Rows with no settings record (a merge cut short between its rows and its record, or a file this job did
        not write) would be taken for this job's: one error instead."""
        assert self.record is not None
        if not self.record.exists() and any(True for _ in self.log.rows()):
            raise HarnessError(
                f"{self.log.path} holds rows but {self.record.path.name} is missing (a merge of a launched run cut "
                "short, or another job's file): rerun the launch to merge again, or move the file away",
                path=str(self.log.path),
            )

    def discard_unrecorded(self) -> None:
        """A launched job's OUT: rows without a record are a merge cut short (its shards hold every row), so they
        go, and the next merge writes them again."""
        if self.record is not None and not self.record.exists():
            for log in [self.log, *self.side_logs]:
                log.path.unlink(missing_ok=True)

    def start(self) -> None:
        """Record the settings (a new job, or an earlier one's grown settings and this invocation)."""
        if self.record is not None:
            self.record.path.parent.mkdir(parents=True, exist_ok=True)
            self.record.write(self.settings)

    def run(self, groups: Iterable[list[dict]], stored: Callable[[list[dict]], object] | None = None) -> list[dict]:
        """Append each finished group durably as it comes (after the settings record, written here if the job
        has none yet) and report it to `stored`; the new rows."""
        new: list[dict] = []
        for rows in groups:
            if self.record is not None and not self.record.exists():
                self.start()
            if rows:
                self.log.append(rows)
                new += rows
                self.new_rows += len(rows)
            if stored is not None:
                stored(rows)
        return new

    def finish(self) -> dict | None:
        """Stamp this invocation's end in the record; its provenance."""
        return None if self.record is None else self.record.finish()
