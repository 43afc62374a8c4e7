"""The result store of one run: `run.json` (settings), `samples.jsonl` (append-only), `summary.json`.

Samples are appended in whole lines and fsynced, so a kill at any moment loses at most the batch in
flight; a partial last line is cut on the next open. A rerun with the same settings resumes (only the
missing samples are generated); different settings into the same directory are refused.
"""

from __future__ import annotations

import json
from pathlib import Path

from dail_harness.errors import HarnessError
from dail_harness.files import append_jsonl, atomic_write_json, iter_jsonl, repair_partial_tail

SETTINGS_FILE, SAMPLES_FILE, SUMMARY_FILE = "run.json", "samples.jsonl", "summary.json"


def _flatten(d: dict, prefix: str = "") -> dict:
    """{'sampling': {'n': 8}} -> {'sampling.n': 8}, so a mismatch names the exact setting."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def settings_changes(old: dict, new: dict) -> str | None:
    """'key: old -> new; ...' for every (nested) setting that differs, or None when they match."""
    old_flat, new_flat = _flatten(old), _flatten(json.loads(json.dumps(new)))
    diff = sorted(k for k in set(old_flat) | set(new_flat) if old_flat.get(k) != new_flat.get(k))
    return "; ".join(f"{k}: {old_flat.get(k)!r} -> {new_flat.get(k)!r}" for k in diff) or None


def sample_id(row: dict) -> tuple:
    """A sample's identity: task, problem, condition (temperature, thinking budget), sample index."""
    temperature = row.get("temperature")
    return (row["task"], str(row["problem_id"]), None if temperature is None else float(temperature),
            row.get("budget"), int(row["sample_index"]))


class RunStore:
    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self.settings_path = self.dir / SETTINGS_FILE
        self.samples_path = self.dir / SAMPLES_FILE
        self.summary_path = self.dir / SUMMARY_FILE

    def exists(self) -> bool:
        return self.settings_path.exists()

    def read_settings(self) -> dict:
        if not self.settings_path.exists():
            raise HarnessError(f"not a run directory (no {SETTINGS_FILE})", path=str(self.dir))
        try:
            return json.loads(self.settings_path.read_text())
        except json.JSONDecodeError as e:
            raise HarnessError(f"malformed JSON: {e}", path=str(self.settings_path)) from None

    def check(self, settings: dict) -> None:
        """If the run exists, check that `settings` match the ones it was started with."""
        if self.exists():
            details = settings_changes(self.read_settings(), settings)
            if details:
                raise HarnessError(f"{self.dir} holds a run with different settings ({details}); "
                                   "use another --out directory, or rerun with the original settings to resume")
            repair_partial_tail(self.samples_path)

    def create(self, settings: dict) -> None:
        """Write the settings of a new run (called once there is work to store)."""
        if not self.exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.settings_path, settings)

    def load_samples(self) -> list[dict]:
        """All stored sample rows (a trailing partial line is ignored; duplicates keep the first)."""
        if not self.samples_path.exists():
            return []
        rows, seen = [], set()
        for line, row in iter_jsonl(self.samples_path, allow_partial_tail=True):
            for f in ("task", "problem_id", "sample_index", "correct"):
                if f not in row:
                    raise HarnessError("missing field", path=str(self.samples_path), line=line, field=f)
            key = sample_id(row)
            if key not in seen:
                seen.add(key)
                rows.append(row)
        return rows

    def append(self, rows: list[dict]) -> None:
        append_jsonl(self.samples_path, rows)

    def write_summary(self, summary: dict) -> None:
        atomic_write_json(self.summary_path, summary)
