"""The result store of one run: `run.json` (settings), `samples.jsonl` (append-only), `summary.json`.

Samples are appended in whole lines and fsynced, so a kill at any moment loses at most the batch in
flight; a partial last line is cut on the next open. A rerun with the same settings resumes (only the
missing samples are generated); different settings into the same directory are refused.
"""

from __future__ import annotations

from pathlib import Path

from dail_harness.errors import HarnessError
from dail_harness.files import atomic_write_json, iter_jsonl
from dail_harness.worklog import Job, SettingsRecord, WorkLog

SETTINGS_FILE, SAMPLES_FILE, SUMMARY_FILE = "run.json", "samples.jsonl", "summary.json"


def _more_problems(old: int | None, new: int | None) -> bool:
    return new is None or (old is not None and new >= old)


GROWABLE = {"sampling.n": None, "ks": None, "limit": _more_problems}
"""Settings that only say how many samples and problems to take: keyed sampling makes sample i of a problem
the same whatever n is, so any n extends the run (or reports its first n samples), and a larger --limit adds
problems (the first L problems of each task). A smaller limit, or another --exclude list, is refused."""


def sample_id(row: dict) -> tuple:
    """A sample's identity: task, problem, condition (temperature, thinking budget), sample index."""
    temperature = row.get("temperature")
    return (
        row["task"],
        str(row["problem_id"]),
        None if temperature is None else float(temperature),
        row.get("budget"),
        int(row["sample_index"]),
    )


class RunStore:
    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self.settings_path = self.dir / SETTINGS_FILE
        self.samples_path = self.dir / SAMPLES_FILE
        self.summary_path = self.dir / SUMMARY_FILE
        self.record = SettingsRecord(self.settings_path, self.dir, "run")
        self.samples = WorkLog(self.samples_path, sample_id)

    def exists(self) -> bool:
        return self.record.exists()

    def read_settings(self) -> dict:
        if not self.exists():
            raise HarnessError(f"not a run directory (no {SETTINGS_FILE})", path=str(self.dir))
        return self.record.read()

    def job(self, settings: dict) -> Job:
        """The run as a resumable job with these settings (the amounts of GROWABLE may grow; under --budgets the
        unused --max-tokens may differ from a record that holds one)."""
        unused = {"sampling.max_tokens": None} if settings.get("budgets") else {}
        return Job(self.record, settings, self.samples, may_change={**GROWABLE, **unused})

    def load_samples(self) -> list[dict]:
        """All stored sample rows (a trailing partial line is ignored; duplicates keep the first)."""
        if not self.samples_path.exists():
            return []
        rows, seen = [], set()
        for line, row in iter_jsonl(self.samples_path, allow_partial_tail=True):  # with line numbers for errors
            for f in ("task", "problem_id", "sample_index", "correct"):
                if f not in row:
                    raise HarnessError("missing field", path=str(self.samples_path), line=line, field=f)
            key = sample_id(row)
            if key not in seen:
                seen.add(key)
                rows.append(row)
        return rows

    def write_summary(self, summary: dict) -> None:
        atomic_write_json(self.summary_path, summary)
