"""`dail-harness data summary`: what a D_syn holds, for the paper's Figures 11 and 12.

Per file (a `generate` output or its `.traces.jsonl`): the mode and tau, traces and problems, the
acceptance rate, correctness by our verifier and by the authors' boxed equality (per trace, and the
share of problems with a correct trace), and token lengths of the traces and of the expert solutions.
Rows that carry no grade (older files) are graded first. Plots: correctness and acceptance against
tau over the files (Figure 11: calibrating tau) and the length histograms of expert solutions and
traces (Figure 12).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from dail_harness.backends.base import text_ids
from dail_harness.errors import HarnessError
from dail_harness.files import iter_jsonl


def dsyn_rows(path: str | Path) -> list[dict]:
    """The rows of a D_syn file; a file of other rows (expert data, say) is one error naming the line."""
    rows = [r for _, r in iter_jsonl(path, allow_partial_tail=True)]
    if not rows:
        raise HarnessError("no traces in this file", path=str(path))
    missing = next((i for i, r in enumerate(rows, 1) if "trace" not in r or "problem_id" not in r), None)
    if missing is not None:
        raise HarnessError("not a D_syn row (needs problem_id and trace)", path=str(path), line=missing)
    return rows


def summarize_dsyn(path: str | Path, tokenizer: Any, answer_type: str = "math", grade_workers: int | None = 0) -> dict:
    rows = dsyn_rows(path)
    if any("correct" not in r for r in rows):
        _grade(rows, answer_type, grade_workers)
    by_problem: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_problem[str(r["problem_id"])].append(r)
    taus = sorted({float(r["tau"]) for r in rows if r.get("tau") is not None})
    accepted = [r["acceptance_rate"] for r in rows if r.get("acceptance_rate") is not None]
    solutions = {pid: rs[0].get("solution", "") for pid, rs in by_problem.items()}
    return {
        "file": str(path),
        "mode": rows[0].get("mode"),
        "tau": taus[0] if len(taus) == 1 else taus or None,
        "traces": len(rows),
        "problems": len(by_problem),
        "acceptance": sum(accepted) / len(accepted) if accepted else None,
        "correct": sum(bool(r.get("correct")) for r in rows) / len(rows),
        "authors_correct": sum(bool(r.get("authors_correct")) for r in rows) / len(rows),
        "problems_with_a_correct_trace": sum(any(r.get("correct") for r in rs) for rs in by_problem.values())
        / len(by_problem),
        "trace_tokens": [int(r.get("num_tokens") or len(text_ids(tokenizer, r["trace"]))) for r in rows],
        "solution_tokens": [len(text_ids(tokenizer, s or "")) for s in solutions.values()],
    }


def _grade(rows: list[dict], answer_type: str, workers: int | None) -> None:
    from dail_harness.dsyn.select import authors_correct
    from dail_harness.eval.grading import GradeJob, grade_jobs

    gradable = [r for r in rows if r.get("answer")]
    verdicts = grade_jobs(
        [GradeJob(r["trace"], str(r["answer"]), answer_type, r.get("finish_reason")) for r in gradable], workers=workers
    )
    for r, v in zip(gradable, verdicts):
        r["correct"] = v.correct
    for r in rows:
        r.setdefault("correct", False)
        r["authors_correct"] = authors_correct(r["trace"], r.get("solution", ""))


def format_summary(summaries: list[dict]) -> str:
    header = [
        "file",
        "mode",
        "tau",
        "traces",
        "problems",
        "accept",
        "correct",
        "authors",
        "solved",
        "trace tok",
        "solution tok",
    ]
    lines = [header]

    def pct(v):
        return f"{100 * v:.1f}" if isinstance(v, float) else "-"

    for s in summaries:
        lines.append(
            [
                Path(s["file"]).name,
                str(s["mode"]),
                str(s["tau"]),
                str(s["traces"]),
                str(s["problems"]),
                pct(s["acceptance"]),
                pct(s["correct"]),
                pct(s["authors_correct"]),
                pct(s["problems_with_a_correct_trace"]),
                f"{_mean(s['trace_tokens']):.0f}",
                f"{_mean(s['solution_tokens']):.0f}",
            ]
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    table = "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in lines)
    return table + (
        "\n(accept, correct (our verifier, per trace), authors (boxed equality), solved (problems with a "
        "correct trace) in %; token lengths are means)"
    )


def _mean(values: list[int]) -> float:
    return sum(values) / len(values) if values else 0.0


def plot_tau(summaries: list[dict], path: str | Path) -> Path | None:
    """Figure 11: correctness and acceptance against tau, one point per file with a single tau."""
    from dail_harness.eval.plots import figure, save_figure

    points = sorted((s["tau"], s) for s in summaries if isinstance(s["tau"], int | float))
    if not points:
        return None
    fig, ax = figure(figsize=(6.4, 4.2))
    taus = [t for t, _ in points]
    for key, label in (
        ("correct", "correct traces"),
        ("problems_with_a_correct_trace", "problems solved"),
        ("acceptance", "acceptance rate"),
    ):
        values = [s[key] for _, s in points]
        if all(v is not None for v in values):
            ax.plot(taus, [100 * v for v in values], marker="o", label=label)
    ax.set_xlabel("tau")
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return save_figure(fig, path)


def plot_lengths(summaries: list[dict], path: str | Path) -> Path:
    """Figure 12: token lengths of the expert solutions and of each file's traces."""
    from dail_harness.eval.plots import figure, save_figure

    fig, ax = figure(figsize=(6.4, 4.2))
    ax.hist(summaries[0]["solution_tokens"], bins=30, alpha=0.5, label="expert solutions")
    for s in summaries:
        ax.hist(s["trace_tokens"], bins=30, alpha=0.5, label=f"traces: {Path(s['file']).name}")
    ax.set_xlabel("tokens")
    ax.set_ylabel("count")
    ax.legend(fontsize="small")
    return save_figure(fig, path)
