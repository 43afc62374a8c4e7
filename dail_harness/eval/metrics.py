"""pass@k, mean accuracy, maj@k, no-answer rate and bootstrap intervals, from graded samples.

pass@k uses the unbiased estimator of Chen et al. (2021), 1 - C(n-c, k) / C(n, k), computed with
exact integer arithmetic (Fractions) so it can be checked against exact values; it is averaged over
problems. Floats appear only at the edge (summaries, tables).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from math import comb

from dail_harness.errors import HarnessError

BOOTSTRAP_SAMPLES = 1000


def pass_at_k(n: int, c: int, k: int) -> Fraction:
    """Unbiased pass@k for one problem with n samples of which c are correct (exact)."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return Fraction(1)
    return 1 - Fraction(comb(n - c, k), comb(n, k))


def power_of_two_grid(k_max: int) -> list[int]:
    """1, 2, 4, ... up to and including k_max (k_max itself is added if not a power of two)."""
    ks, k = [], 1
    while k < k_max:
        ks.append(k)
        k *= 2
    ks.append(k_max)
    return ks


def parse_k(spec: str) -> tuple[list[int], int]:
    """`128` -> (grid 1..128, n=128); `1,8,64` -> ([1, 8, 64], n=64). Returns (ks, default n)."""
    try:
        values = sorted({int(x) for x in str(spec).split(",") if x.strip()})
    except ValueError:
        raise HarnessError(f"--k: expected an integer or a comma-separated list, got '{spec}'") from None
    if not values or values[0] < 1:
        raise HarnessError(f"--k: values must be positive integers, got '{spec}'")
    if len(values) == 1:
        return power_of_two_grid(values[0]), values[0]
    return values, values[-1]


def majority_vote(answers: Sequence[str | None], correct: Sequence[bool]) -> bool:
    """Correctness of the most common non-empty answer (ties: the one seen first); False if none."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return False
    best = max(counts.values())
    for a, ok in zip(answers, correct):
        if a is not None and counts[a] == best:
            return bool(ok)
    return False


@dataclass
class ProblemStats:
    """The graded samples of one problem, in sample-index order."""

    task: str
    problem_id: str
    correct: list[bool]
    answers: list[str | None] = field(default_factory=list)
    """Canonical extracted answers for majority voting (None when no answer)."""
    no_answer: list[bool] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.correct)

    @property
    def c(self) -> int:
        return sum(self.correct)


def _mean(values: Iterable[Fraction]) -> Fraction:
    values = list(values)
    return sum(values, Fraction(0)) / len(values)


def bootstrap_ci(
    per_problem: Sequence[float], *, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over problems (problems resampled with replacement)."""
    import numpy as np

    x = np.asarray(per_problem, dtype=np.float64)
    if len(x) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(samples, len(x)))
    means = x[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def aggregate(problems: Sequence[ProblemStats], ks: Sequence[int], *, ci: bool = True, seed: int = 0) -> dict:
    """Metrics over a set of problems. Every problem must have at least max(ks) samples.

    Returns pass@k (exact Fractions and floats), mean accuracy, maj@k on the first k samples,
    no-answer rate, bootstrap 95% intervals, and the per-problem values.
    """
    if not problems:
        raise HarnessError("no graded problems to compute metrics from (empty data set)")
    n_min = min(p.n for p in problems)
    ks = sorted(set(ks))
    if ks[-1] > n_min:
        worst = min(problems, key=lambda p: p.n)
        raise HarnessError(
            f"k={ks[-1]} is larger than n={n_min} (problem '{worst.problem_id}' has "
            f"{worst.n} samples); pass@k needs k <= n"
        )
    total_samples = sum(len(p.no_answer) for p in problems)
    per_problem = {k: [pass_at_k(p.n, p.c, k) for p in problems] for k in ks}
    out: dict = {
        "num_problems": len(problems),
        "n": n_min if n_min == max(p.n for p in problems) else {"min": n_min, "max": max(p.n for p in problems)},
        "pass_at_k": {str(k): float(_mean(v)) for k, v in per_problem.items()},
        "pass_at_k_exact": {str(k): str(_mean(v)) for k, v in per_problem.items()},
        "mean_accuracy": float(_mean(Fraction(p.c, p.n) for p in problems)),
        "maj_at_k": {
            str(k): float(_mean(Fraction(int(majority_vote(p.answers[:k], p.correct[:k]))) for p in problems))
            for k in ks
            if all(len(p.answers) >= k for p in problems)
        },
        "no_answer_rate": (sum(sum(p.no_answer) for p in problems) / total_samples) if total_samples else 0.0,
    }
    if ci:
        out["pass_at_k_ci95"] = {str(k): bootstrap_ci([float(x) for x in v], seed=seed) for k, v in per_problem.items()}
    out["per_problem"] = [
        {
            "task": p.task,
            "problem_id": p.problem_id,
            "n": p.n,
            "c": p.c,
            "pass_at_k": {str(k): float(per_problem[k][i]) for k in ks},
        }
        for i, p in enumerate(problems)
    ]
    return out


# Stored sample rows -> metrics: grouping, canonical answers for voting, summaries per condition.


def answer_key(row: dict) -> str | None:
    """The canonical answer a sample votes with: its verifier's `answer_key` (rows graded before the
    verifiers recorded one vote with their extracted text)."""
    return row.get("answer_key", row.get("extracted"))


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
        out.append(
            ProblemStats(
                task=task,
                problem_id=pid,
                correct=[bool(r["correct"]) for r in samples],
                answers=[answer_key(r) for r in samples],
                no_answer=[bool(r.get("no_answer", r.get("extracted") is None)) for r in samples],
            )
        )
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
            simple_t = simple_grader([r for r in rows if r["task"] == t])
            if simple_t:
                m["simple_grader"] = simple_t
            summary["per_task"][t] = m
    summary["grading_timeouts"] = sum(1 for r in rows if r.get("grading_timed_out"))
    summary["forced_answers"] = sum(1 for r in rows if r.get("forced_answer"))
    simple = simple_grader(rows)
    if simple:
        summary["simple_grader"] = simple
    tokens = [int(r["num_tokens"]) for r in rows if "num_tokens" in r]
    summary["mean_tokens"] = (sum(tokens) / len(tokens)) if tokens else None
    summary["finish_reasons"] = dict(Counter(r.get("finish_reason", "unknown") for r in rows))
    return summary


def simple_grader(rows: Sequence[dict]) -> dict | None:
    """Accuracy of the authors' string-equality grader and its agreement with ours (None if not recorded)."""
    simple = [r for r in rows if "simple_correct" in r]
    if not simple:
        return None
    return {
        "mean_accuracy": sum(bool(r["simple_correct"]) for r in simple) / len(simple),
        "agreement": sum(bool(r["simple_correct"]) == bool(r["correct"]) for r in simple) / len(simple),
    }


def condition_of(row: dict) -> tuple[float | None, int | None]:
    t = row.get("temperature")
    return (None if t is None else float(t), row.get("budget"))


def primary_condition(conditions: Sequence[tuple[float, int | None]]) -> tuple[float, int | None]:
    """The condition top-level metrics describe: the first temperature at its largest budget."""
    t0 = conditions[0][0]
    budgets = [b for t, b in conditions if t == t0]
    numbered = [b for b in budgets if b is not None]
    return (t0, None if len(numbered) < len(budgets) else max(numbered))


def summarize_conditions(
    rows: Sequence[dict],
    ks: Sequence[int],
    n: int | None,
    conditions: Sequence[tuple[float, int | None]],
    *,
    ci: bool = True,
) -> dict:
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
        entries.append(
            {
                "temperature": t,
                "budget": b,
                **m,
                "mean_thinking_tokens": _mean_field(sub, "thinking_tokens"),
                "mean_answer_tokens": _mean_field(sub, "answer_tokens"),
            }
        )
    t0, b0 = primary_condition(conditions)
    primary = summarize(by_condition.get((float(t0), b0), []), ks, n, ci=ci)
    primary["conditions"] = entries
    primary["primary_condition"] = {"temperature": t0, "budget": b0}
    return primary


def _mean_field(rows: Sequence[dict], name: str) -> float | None:
    values = [r[name] for r in rows if r.get(name) is not None]
    return sum(values) / len(values) if values else None
