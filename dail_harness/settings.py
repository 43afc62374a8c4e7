"""The settings record of a resumable output (an eval run, a D_syn file, a training run).

Each output keeps the settings that determine its contents in a JSON file beside it. A rerun with the
same settings resumes; different settings are refused with one line naming every setting that differs,
so finished work is never mixed with work done under other settings. Settings that only say how much
work there is (an eval's n or problem limit, a training run's max_steps or epochs) may change when the
caller allows it (`may_change`): the finished work stays valid, so the run is extended (or an eval reported
on a subset; a training run refuses a plan shorter than what is done). The record also carries the
provenance of each invocation (`provenance.py`), which never takes part in the check.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from dail_harness import provenance
from dail_harness.errors import HarnessError
from dail_harness.files import atomic_write_json

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
        current = provenance.started()
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
        data[PROVENANCE] = provenance.finished(data[PROVENANCE])
        atomic_write_json(self.path, data)
        return data[PROVENANCE]
