"""D_syn selection: every trace is graded; which ones become training data is the `--select` rule.

The authors sample 32 traces per problem. For non-reasoning models they keep the first correct trace of
each problem (sample order) and drop problems with none (`first-correct`); for reasoning models, whose
256-token traces rarely finish, one random trace per problem (`random`). `all-correct` keeps every
correct trace and `all` every trace. Correctness is our verifier's by default (`--select-by ours`) or
the authors' exact equality of the last boxed answers (`--select-by authors`); both are recorded on
every trace (`correct`, `authors_correct`). The authors also shuffle D_syn (seed 42); training shuffles
its examples every epoch, so the order of the selected file does not matter.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Set as AbstractSet
from pathlib import Path

from dail_harness.files import atomic_write_json, atomic_write_jsonl, iter_jsonl
from dail_harness.verifiers.extract import last_boxed

SELECT_RULES = ("first-correct", "random", "all-correct", "all")


def traces_path(out: str | Path) -> Path:
    """Where every generated (and graded) trace of `out` lives; `out` holds the selected ones."""
    return Path(str(out) + ".traces.jsonl")


def selection_path(out: str | Path) -> Path:
    return Path(str(out) + ".selection.json")


def authors_correct(trace: str, solution: str) -> bool:
    """The authors' selection check: the trace's last boxed answer equals the solution's, as strings."""
    mine, theirs = last_boxed(trace), last_boxed(solution)
    return mine is not None and theirs is not None and mine == theirs


def is_empty(row: dict) -> bool:
    """A trace with no text (the model ended at once): nothing to train on, and `train` refuses it."""
    return not str(row.get("trace") or "").strip()


def select_traces(rows: list[dict], rule: str, by: str, seed: int) -> tuple[list[dict], dict]:
    """The selected rows (problems in first-seen order) and the counts. No rule keeps an empty trace: empty
    ones are counted (`empty_traces`) and left out, and a problem with nothing else is dropped."""
    by_problem: dict[str, list[dict]] = defaultdict(list)
    empty = 0
    for r in rows:
        by_problem.setdefault(str(r["problem_id"]), [])
        if is_empty(r):
            empty += 1
        else:
            by_problem[str(r["problem_id"])].append(r)
    key = "correct" if by == "ours" else "authors_correct"
    kept: list[dict] = []
    correct_per_problem: Counter = Counter()
    dropped = 0
    for pid, samples in by_problem.items():
        samples.sort(key=lambda r: int(r["sample_index"]))
        good = [r for r in samples if r.get(key)]
        correct_per_problem[len(good)] += 1
        if rule == "all":
            chosen = samples
        elif rule == "random":
            chosen = [random.Random(f"{seed}:{pid}").choice(samples)] if samples else []
        elif rule == "all-correct":
            chosen = good
        else:  # first-correct
            chosen = good[:1]
        dropped += not chosen
        kept += chosen
    counts = {
        "rule": rule,
        "by": by,
        "problems": len(by_problem),
        "kept_problems": len(by_problem) - dropped,
        "dropped_problems": dropped,
        "traces": len(rows),
        "empty_traces": empty,
        "kept_traces": len(kept),
        "correct_traces": sum(1 for r in rows if r.get(key)),
        "correct_per_problem": {str(c): n for c, n in sorted(correct_per_problem.items())},
    }
    return kept, counts


def write_selection(out: str | Path, rule: str, by: str, seed: int, problems: AbstractSet[str]) -> dict:
    """Select from the traces file into `out` (atomically) and record the counts beside it: the traces of
    `problems`, this run's (those of problems past a smaller --limit stay stored for a later, larger one)."""
    rows = [r for _, r in iter_jsonl(traces_path(out), allow_partial_tail=True)] if traces_path(out).exists() else []
    rows = [r for r in rows if str(r["problem_id"]) in problems]
    kept, counts = select_traces(rows, rule, by, seed)
    atomic_write_jsonl(out, kept)
    atomic_write_json(selection_path(out), counts)
    return counts
