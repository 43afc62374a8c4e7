"""What the ranks of a launched job share once their own shard is stored: every row stored anywhere in the run,
and the one merge that the last rank to finish writes (eval, generate and data hints use it alike).

Rank r of W stores shard r/W as an ordinary resumable job of its own (a run directory under OUT/shards, or a
file under OUT.shards); nothing passes between the processes, so a failed rank stalls nobody. A rank skips
samples stored anywhere in the run (OUT, or a shard of any earlier launch with the same settings), and after its
own shard it checks whether every sample is stored: the one that finds them all writes OUT as one process would,
the rows first and the settings record last, so a merge cut short leaves OUT to the shards and a rerun redoes it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Hashable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from dail_harness.files import atomic_write_jsonl
from dail_harness.scale.launch import Launch
from dail_harness.scale.plan import lacking_per_shard, shard_file, waiting_message
from dail_harness.worklog import Job, SettingsRecord, WorkLog, settings_changes

Part = tuple[SettingsRecord, WorkLog]
"""One shard's settings record and work log."""
C = TypeVar("C")


def own_shard(cfg: C, launch: Launch, top: Job, place: Callable[[str | Path, int, int], Path]) -> C:
    """This rank's settings, once OUT's job is opened: rows that OUT holds without a record are dropped (a merge cut
    short, which the last rank redoes) and another run in OUT is refused before any sampling. The rank draws its
    shard into its own place under OUT (`place(OUT, rank, world)`), and only rank 0 draws a progress bar."""
    top.discard_unrecorded()
    top.resume()
    settings: Any = cfg  # a command's config dataclass: shard, out and progress are what every one of them has
    return replace(
        settings,
        shard=(launch.rank, launch.world),
        out=str(place(settings.out, launch.rank, launch.world)),
        progress=settings.progress and launch.rank == 0,
    )


def file_parts(out: str | Path, log_of: Callable[[Path], WorkLog]) -> list[Part]:
    """The shards of a launched job that writes the file `out` (settings in OUT.settings.json beside it): every
    OUT.shards/r-of-W file, whatever W, with the log `log_of` keeps for it."""
    root = shard_file(out, 0, 1).parent
    parts = []
    for settings_file in sorted(root.glob("*-of-*.settings.json")) if root.is_dir() else []:
        path = Path(str(settings_file)[: -len(".settings.json")])
        parts.append((SettingsRecord(settings_file, path, "shard"), log_of(path)))
    return parts


def stored_rows(top: Job, parts: Iterable[Part]) -> list[dict]:
    """Every stored row of a launched run: OUT's own (the caller checked its settings), then each shard's whose
    settings are the run's but for the shard (and the amounts that may grow)."""
    rows = list(top.log.rows()) if top.record is not None and top.record.exists() else []
    for record, log in parts:
        if record.exists():
            theirs = record.read()
            ours = {**top.settings, "shard": theirs.get("shard"), "sample_block": theirs.get("sample_block")}
            if settings_changes(theirs, ours, top.may_change) is None:
                rows += list(log.rows())
    return rows


def complete(
    what: str,
    rows: Iterable[dict],
    key: Callable[[dict], Hashable],
    expected: Iterable[tuple[int, int, Hashable]],
    world: int,
    block: int | None,
    items: int,
) -> dict[Hashable, dict] | None:
    """One row per key (the first stored wins) when every expected (position, sample index, key) is stored;
    else None, after saying which of the `world` shards still owe how many."""
    by_key: dict[Hashable, dict] = {}
    for row in rows:
        by_key.setdefault(key(row), row)
    absent = [(position, i) for position, i, k in expected if k not in by_key]
    if absent:
        print(waiting_message(what, lacking_per_shard(absent, world, block, items), world), file=sys.stderr)
        return None
    return by_key


def publish(top: Job, rows: list[dict]) -> None:
    """Write the merged rows as OUT's log in one atomic replace, then OUT's settings record."""
    atomic_write_jsonl(top.log.path, rows)
    top.start()
