"""`dail-harness report`: recompute metrics from stored samples (no generation), tables and plots.

Run directories that are shards of one run (same settings but `--shard`) are merged into one entry.
Runs with thinking budgets also get a budget curve (pass@1 and pass@n against the budget) and, for
each pair of runs, the smallest budget at which one matches the other's best score.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from dail_harness.errors import HarnessError
from dail_harness.eval.metrics import condition_of, group_rows, power_of_two_grid, summarize_conditions
from dail_harness.eval.problem_ids import is_listed
from dail_harness.eval.store import RunStore


def run_conditions(settings: dict) -> list[tuple[float, int | None]]:
    temps = settings.get("temperatures") or [settings["sampling"]["temperature"]]
    return [(float(t), b) for t in temps for b in (settings.get("budgets") or [None])]


def group_shards(dirs: Sequence[str | Path]) -> list[tuple[list[Path], dict]]:
    """Group run directories by settings, ignoring `shard`: each group is one logical run."""
    groups: dict[str, tuple[list[Path], dict]] = {}
    for d in dirs:
        settings = RunStore(d).read_settings()
        key = json.dumps({k: v for k, v in settings.items() if k != "shard"}, sort_keys=True)
        groups.setdefault(key, ([], settings))[0].append(Path(d))
    return list(groups.values())


def report_run(
    dirs: Sequence[str | Path] | str | Path,
    ks: Sequence[int] | None = None,
    tasks: Sequence[str] | None = None,
    exclude: set[str] | None = None,
) -> dict:
    """Metrics of one run (or of the shards of one run), optionally of some of its tasks only and without the
    problems of `exclude`. Problems that lack some of their n samples in a condition (an unfinished run) are
    left out of that condition and counted."""
    paths = [Path(dirs)] if isinstance(dirs, str | Path) else [Path(d) for d in dirs]
    settings = RunStore(paths[0]).read_settings()
    n = int(settings["sampling"]["n"])
    rows = [r for d in paths for r in RunStore(d).load_samples()]
    if not rows:
        raise HarnessError("run has no samples yet", path=str(paths[0]))
    if tasks:
        missing = [t for t in tasks if t not in settings["tasks"]]
        if missing:
            raise HarnessError(
                f"--task {','.join(missing)}: not a task of this run (its tasks: {', '.join(settings['tasks'])})",
                path=str(paths[0]),
            )
        rows = [r for r in rows if r["task"] in tasks]
    if exclude:
        rows = [r for r in rows if not is_listed(exclude, r["task"], r["problem_id"])]
        if not rows:
            raise HarnessError("--exclude leaves no problem of this run", path=str(paths[0]))
    complete, incomplete = [], 0
    by_condition = defaultdict(list)
    for r in rows:
        by_condition[condition_of(r)].append(r)
    for cond_rows in by_condition.values():
        full = {(p.task, p.problem_id) for p in group_rows(cond_rows) if p.n >= n}
        incomplete += len({(r["task"], str(r["problem_id"])) for r in cond_rows}) - len(full)
        complete += [r for r in cond_rows if (r["task"], str(r["problem_id"])) in full and int(r["sample_index"]) < n]
    if not complete:
        raise HarnessError(f"no problem has all n={n} samples yet; finish the run first", path=str(paths[0]))
    ks = sorted(k for k in (ks or power_of_two_grid(n)) if k <= n)
    conditions = [c for c in run_conditions(settings) if c in {condition_of(r) for r in complete}]
    summary = summarize_conditions(complete, ks, n, conditions)
    summary.pop("per_problem")
    shards = sorted(tuple(RunStore(d).read_settings().get("shard") or ()) for d in paths)
    name = paths[0].name if len(paths) == 1 else f"{paths[0].name}+{len(paths) - 1} shard(s)"
    return {
        "run": name,
        "dirs": [str(d) for d in paths],
        "model": settings.get("model"),
        "task": "+".join(tasks or settings["tasks"]),
        "n": n,
        "ks": ks,
        "shards": [list(s) for s in shards if s],
        "incomplete_problems": incomplete,
        **summary,
    }


def report_from_summary(name: str, summary: dict) -> dict:
    """The report entry of a run just evaluated, from its summary (nothing is read back from disk)."""
    return {
        "run": name,
        "dirs": [],
        "shards": [],
        "incomplete_problems": 0,
        **{k: v for k, v in summary.items() if k != "per_problem"},
    }


def report_runs(
    dirs: Sequence[str | Path],
    ks: Sequence[int] | None = None,
    tasks: Sequence[str] | None = None,
    exclude: set[str] | None = None,
) -> list[dict]:
    return [report_run(group, ks, tasks, exclude) for group, _ in group_shards(dirs)]


def _cols(m: dict) -> dict:
    return {
        "problems": m["num_problems"],
        "pass_at_k": m["pass_at_k"],
        "mean_acc": m["mean_accuracy"],
        "no_answer": m["no_answer_rate"],
        "think": m.get("mean_thinking_tokens"),
        "str_eq": (m.get("simple_grader") or {}).get("mean_accuracy"),
    }


def table_rows(reports: list[dict]) -> list[dict]:
    """Per run and condition: one row per task, plus a combined row for runs over several tasks."""
    out = []
    for rep in reports:
        entries = rep.get("conditions") or [{**rep, "temperature": None, "budget": None}]
        for c in entries:
            base = {"run": rep["run"], "n": rep["n"], "T": c["temperature"], "budget": c["budget"]}
            for task, m in c["per_task"].items():
                out.append({**base, "task": task, **_cols(m)})
            label = "combined (" + "+".join(c["tasks"]) + ")" if c["per_task"] else rep["task"]
            out.append({**base, "task": label, **_cols(c), "incomplete": rep["incomplete_problems"]})
    return out


def format_table(reports: list[dict]) -> str:
    rows = table_rows(reports)
    ks = sorted({int(k) for r in rows for k in r["pass_at_k"]})
    show_cond = any(
        len(rep.get("conditions") or []) > 1 or rep.get("primary_condition", {}).get("budget") for rep in reports
    )
    header = (
        ["run", "task"]
        + (["T", "budget"] if show_cond else [])
        + ["n", "problems"]
        + [f"pass@{k}" for k in ks]
        + ["mean acc", "str-eq acc", "no-ans", "think tok"]
    )
    lines = [header]
    for r in rows:
        cells = [r["run"], r["task"]]
        if show_cond:
            cells += [f"{r['T']:g}" if r["T"] is not None else "-", str(r["budget"]) if r["budget"] else "-"]
        cells += [str(r["n"]), str(r["problems"])]
        cells += [f"{100 * r['pass_at_k'][str(k)]:.1f}" if str(k) in r["pass_at_k"] else "-" for k in ks]
        cells += [
            f"{100 * r['mean_acc']:.1f}",
            f"{100 * r['str_eq']:.1f}" if r.get("str_eq") is not None else "-",
            f"{100 * r['no_answer']:.1f}",
            f"{r['think']:.0f}" if r.get("think") else "-",
        ]
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = "\n".join(
        "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))) for line in lines
    )
    notes = sorted(
        {
            f"note: {r['run']}: {r['incomplete']} problem(s) without all n samples were left out"
            for r in rows
            if r.get("incomplete")
        }
    )
    notes += [
        f"note: {rep['run']} merges shards {', '.join(f'{i}/{n}' for i, n in rep['shards'])}"
        for rep in reports
        if len(rep.get("shards") or []) > 1
    ]
    notes += budget_matches(reports)
    return (
        text
        + (
            "\n(pass@k, mean accuracy and no-answer rate in %; unbiased pass@k; str-eq acc: the authors' "
            "string-equality grader on the last box, for comparison)"
        )
        + ("\n" + "\n".join(notes) if notes else "")
    )


def budget_curve(rep: dict, k: int) -> list[tuple[int, float]]:
    """(budget, pass@k) at the run's primary temperature, sorted by budget."""
    t0 = rep["primary_condition"]["temperature"]
    return sorted(
        (c["budget"], c["pass_at_k"][str(k)])
        for c in rep.get("conditions", [])
        if c["budget"] is not None and c["temperature"] == t0 and str(k) in c["pass_at_k"]
    )


def budget_matches(reports: list[dict]) -> list[str]:
    """For each ordered pair of budgeted runs: the smallest budget at which A reaches B's best score."""
    lines = []
    budgeted = [r for r in reports if len(budget_curve(r, 1)) > 1]
    for a in budgeted:
        for b in budgeted:
            if a is b:
                continue
            for k in sorted({1, min(a["n"], b["n"])}):
                ca, cb = budget_curve(a, k), budget_curve(b, k)
                if not ca or not cb:
                    continue
                best_budget, best = max(cb, key=lambda x: (x[1], -x[0]))
                if best <= 0:
                    continue  # nothing to match
                reach = next((bud for bud, v in ca if v >= best), None)
                if reach is None:
                    lines.append(
                        f"{a['run']} does not reach {b['run']}'s best pass@{k} ({100 * best:.1f}% at "
                        f"budget {best_budget}) at any budget up to {ca[-1][0]}"
                    )
                else:
                    lines.append(
                        f"{a['run']} matches {b['run']}'s best pass@{k} ({100 * best:.1f}% at budget "
                        f"{best_budget}) from budget {reach}: {best_budget / reach:.2g}x the thinking tokens"
                    )
    return lines
