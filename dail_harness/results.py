"""Turn stored sample rows into metrics: grouping, canonical answers for voting, summaries."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Iterable, Sequence

from dail_harness.metrics import ProblemStats, aggregate
from dail_harness.verifiers.choice import parse_letter
from dail_harness.verifiers.integer import parse_integer
from dail_harness.verifiers.mathexpr import normalize_text


def canonical_answer(extracted: str | None, answer_type: str) -> str | None:
    """A normal form of an extracted answer, so equal answers vote together in maj@k."""
    if extracted is None:
        return None
    if answer_type == "integer":
        value = parse_integer(extracted)
        return str(value) if value is not None else normalize_text(extracted)
    if answer_type == "choice":
        return parse_letter(extracted)
    return normalize_text(extracted)


def group_rows(rows: Iterable[dict], n: int | None = None) -> list[ProblemStats]:
    """Group sample rows into per-problem stats, ordered by sample index (first n samples if given)."""
    by_problem: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        by_problem[(r["task"], str(r["problem_id"]))].append(r)
    out = []
    for (task, pid), samples in by_problem.items():
        samples.sort(key=lambda r: int(r["sample_index"]))
        if n is not None:
            samples = samples[:n]
        out.append(ProblemStats(
            task=task, problem_id=pid,
            correct=[bool(r["correct"]) for r in samples],
            answers=[canonical_answer(r.get("extracted"), r.get("answer_type", "math")) for r in samples],
            no_answer=[bool(r.get("no_answer", r.get("extracted") is None)) for r in samples],
        ))
    return out


def summarize(rows: Sequence[dict], ks: Sequence[int], n: int | None = None, *, ci: bool = True) -> dict:
    """Metrics for all rows (a combined row over every task) plus a `per_task` breakdown."""
    problems = group_rows(rows, n)
    summary = aggregate(problems, ks, ci=ci)
    tasks = sorted({p.task for p in problems})
    summary["tasks"] = tasks
    summary["per_task"] = {}
    if len(tasks) > 1:
        for t in tasks:
            m = aggregate([p for p in problems if p.task == t], ks, ci=ci)
            m.pop("per_problem")
            summary["per_task"][t] = m
    summary["grading_timeouts"] = sum(1 for r in rows if r.get("grading_timed_out"))
    simple = [r for r in rows if "simple_correct" in r]
    if simple:  # the authors' string-equality grader, for comparison with their numbers
        summary["simple_grader"] = {
            "mean_accuracy": sum(bool(r["simple_correct"]) for r in simple) / len(simple),
            "agreement": sum(bool(r["simple_correct"]) == bool(r["correct"]) for r in simple) / len(simple),
        }
    tokens = [int(r["num_tokens"]) for r in rows if "num_tokens" in r]
    summary["mean_tokens"] = (sum(tokens) / len(tokens)) if tokens else None
    summary["finish_reasons"] = dict(Counter(r.get("finish_reason", "unknown") for r in rows))
    return summary


def condition_of(row: dict) -> tuple[float | None, int | None]:
    t = row.get("temperature")
    return (None if t is None else float(t), row.get("budget"))


def primary_condition(conditions: Sequence[tuple[float, int | None]]) -> tuple[float, int | None]:
    """The condition top-level metrics describe: the first temperature at its largest budget."""
    t0 = conditions[0][0]
    budgets = [b for t, b in conditions if t == t0]
    return (t0, None if None in budgets else max(budgets))


def summarize_conditions(rows: Sequence[dict], ks: Sequence[int], n: int | None,
                         conditions: Sequence[tuple[float, int | None]], *, ci: bool = True) -> dict:
    """Metrics of the primary condition at top level, plus one entry per condition in `conditions`."""
    by_condition: dict = defaultdict(list)
    for r in rows:
        by_condition[condition_of(r)].append(r)
    entries = []
    for t, b in conditions:
        sub = by_condition.get((float(t), b), [])
        if not sub:
            continue
        m = summarize(sub, ks, n, ci=ci)
        m.pop("per_problem")
        entries.append({"temperature": t, "budget": b, **m,
                        "mean_thinking_tokens": _mean_field(sub, "thinking_tokens"),
                        "mean_answer_tokens": _mean_field(sub, "answer_tokens")})
    t0, b0 = primary_condition(conditions)
    primary = summarize(by_condition.get((float(t0), b0), []), ks, n, ci=ci)
    primary["conditions"] = entries
    primary["primary_condition"] = {"temperature": t0, "budget": b0}
    return primary


def _mean_field(rows: Sequence[dict], name: str) -> float | None:
    values = [r[name] for r in rows if r.get(name) is not None]
    return sum(values) / len(values) if values else None
