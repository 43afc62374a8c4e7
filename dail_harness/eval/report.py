"""`dail-harness report`: recompute metrics from stored samples (no generation), tables and plots.

Run directories that declare themselves shards of one run (`--shard i/N`, same settings) are merged into
one entry, and a missing shard is named; any other directories are separate runs, labelled by their
shortest distinguishing path.
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
from dail_harness.eval.store import SETTINGS_FILE, RunStore, sample_id
from dail_harness.eval.task import is_listed
from dail_harness.worklog import settings_changes


def run_conditions(settings: dict) -> list[tuple[float, int | None]]:
    temps = settings.get("temperatures") or [settings["sampling"]["temperature"]]
    return [(float(t), b) for t in temps for b in (settings.get("budgets") or [None])]


def short_labels(paths: Sequence[Path]) -> list[str]:
    """Each path's shortest trailing part that no other path shares (`a/run` and `b/run` for two runs named
    `run` in different folders), so a table row or a legend entry names one run."""
    parts = [p.resolve().parts for p in paths]

    def tail(i: int, d: int) -> tuple:
        return parts[i][-d:]

    labels = []
    for i, own in enumerate(parts):
        d = 1
        while d < len(own) and any(tail(j, d) == tail(i, d) for j in range(len(parts)) if j != i):
            d += 1
        labels.append("/".join(tail(i, d)))
    return labels


def _identity(settings: dict) -> str:
    """What makes shards one run: their settings but the shard and the samples per problem (n, ks: a shard stopped
    before a rerun grew n still belongs to the run, reported at the newest n, its missing samples counted as
    incomplete problems). --limit stays: a shard that never saw the added problems would hide them."""
    same = {k: v for k, v in settings.items() if k not in ("shard", "ks")}
    same["sampling"] = {k: v for k, v in (settings.get("sampling") or {}).items() if k != "n"}
    return json.dumps(same, sort_keys=True)


def group_runs(dirs: Sequence[str | Path]) -> list[list[Path]]:
    """The logical runs among `dirs`, in the order given: a directory evaluated without --shard is a run of
    its own (two such runs are never merged, whatever their settings); directories that declare shards
    i/N of the same run (same settings and N) are merged. Two directories that claim the same shard, or
    shards of one N whose settings differ, are refused with the difference named."""
    groups: dict[str, list[tuple[int, Path, dict]]] = {}
    order: list[str] = []
    for d in dict.fromkeys(Path(x).resolve() for x in dirs):  # one directory however it is spelled
        settings = RunStore(d).read_settings()
        shard = settings.get("shard")
        key = f"{_identity(settings)}|{shard[1]}" if shard else f"dir|{d.resolve()}"
        if key not in groups:
            groups[key] = []
            order.append(key)
        claimed = next((p for i, p, _ in groups[key] if shard and i == shard[0]), None)
        if shard and claimed is not None:
            raise HarnessError(
                f"{claimed} and {d} both hold shard {shard[0]}/{shard[1]} of one run; report one of them"
            )
        groups[key].append((shard[0] if shard else 0, d, settings))
    _refuse_mismatched_shards([groups[k] for k in order if not k.startswith("dir|")])
    return [[p for _, p, _ in sorted(groups[k], key=lambda x: x[0])] for k in order]


def _refuse_mismatched_shards(sharded: list[list[tuple[int, Path, dict]]]) -> None:
    """Incomplete shard sets of the same N that would complete each other are one run evaluated with
    different settings: say which."""
    for a_i, a in enumerate(sharded):
        for b in sharded[a_i + 1 :]:
            n_a, n_b = a[0][2]["shard"][1], b[0][2]["shard"][1]
            if n_a != n_b or {i for i, _, _ in a} & {i for i, _, _ in b}:
                continue
            diff = settings_changes(a[0][2], b[0][2])
            raise HarnessError(
                f"{a[0][1]} and {b[0][1]} are shards of {n_a} with different settings ({diff}): "
                "they are not one run; rerun the odd shard with the others' settings"
            )


def _complete_rows(rows: list[dict], n: int) -> tuple[list[dict], int]:
    """The first n samples of each (problem, condition) that has all n, and how many problems lack some."""
    complete, incomplete = [], 0
    by_condition = defaultdict(list)
    for r in rows:
        by_condition[condition_of(r)].append(r)
    for cond_rows in by_condition.values():
        full = {(p.task, p.problem_id) for p in group_rows(cond_rows) if p.n >= n}
        incomplete += len({(r["task"], str(r["problem_id"])) for r in cond_rows}) - len(full)
        complete += [r for r in cond_rows if (r["task"], str(r["problem_id"])) in full and int(r["sample_index"]) < n]
    return complete, incomplete


def _newest_settings(paths: list[Path]) -> dict:
    """Shards of one run may have been grown apart (a rerun with a larger n stopped before every shard resumed):
    the largest n says what the run is; the samples a shard lacks count as incomplete."""
    return max((RunStore(d).read_settings() for d in paths), key=lambda s: int(s["sampling"]["n"]))


def _selected(
    rows: list[dict], run_tasks: list[str], tasks: Sequence[str] | None, exclude: set[str] | None, path: Path
) -> tuple[list[dict], int]:
    """The rows of `tasks` (all of the run's if None) without the problems of `exclude`, and how many problems
    `exclude` left out."""
    if tasks:
        missing = [t for t in tasks if t not in run_tasks]
        if missing:
            raise HarnessError(
                f"--task {','.join(missing)}: not a task of this run (its tasks: {', '.join(run_tasks)})",
                path=str(path),
            )
        rows = [r for r in rows if r["task"] in tasks]
    if not exclude:
        return rows, 0
    before = {(r["task"], r["problem_id"]) for r in rows}
    rows = [r for r in rows if not is_listed(exclude, r["task"], r["problem_id"])]
    if not rows:
        raise HarnessError("--exclude leaves no problem of this run", path=str(path))
    return rows, len(before) - len({(r["task"], r["problem_id"]) for r in rows})


def report_run(
    dirs: Sequence[str | Path] | str | Path,
    ks: Sequence[int] | None = None,
    tasks: Sequence[str] | None = None,
    exclude: set[str] | None = None,
    label: str | None = None,
) -> dict:
    """Metrics of one run (or of the shards of one run), optionally of some of its tasks only and without the
    problems of `exclude`. Problems that lack some of their n samples in a condition (an unfinished run) are
    left out of that condition and counted."""
    paths = [Path(dirs)] if isinstance(dirs, str | Path) else [Path(d) for d in dirs]
    settings = _newest_settings(paths)
    n = int(settings["sampling"]["n"])
    rows = list({sample_id(r): r for d in reversed(paths) for r in RunStore(d).load_samples()}.values())
    if not rows:
        raise HarnessError("run has no samples yet", path=str(paths[0]))
    rows, excluded = _selected(rows, settings["tasks"], tasks, exclude, paths[0])
    shards = sorted(tuple(RunStore(d).read_settings().get("shard") or ()) for d in paths)
    missing_shards = [i for i in range(shards[0][1]) if (i, shards[0][1]) not in shards] if shards[0] else []
    complete, incomplete = _complete_rows(rows, n)
    if not complete:
        listed = ", ".join(f"{i}/{shards[0][1]}" for i in missing_shards)
        note = f"; shard(s) {listed} missing" if missing_shards else ""
        raise HarnessError(f"no problem has all n={n} samples yet{note}; finish the run first", path=str(paths[0]))
    too_large = [k for k in ks or () if k > n]
    if too_large:
        raise HarnessError(
            f"--k {max(too_large)} is larger than this run's n={n}; pass@k needs k <= n", path=str(paths[0])
        )
    ks = sorted(ks or [int(k) for k in settings.get("ks") or ()] or power_of_two_grid(n))
    conditions = [c for c in run_conditions(settings) if c in {condition_of(r) for r in complete}]
    summary = summarize_conditions(complete, ks, n, conditions)
    summary.pop("per_problem")
    first = label or paths[0].name
    name = first if len(paths) == 1 else f"{first}+{len(paths) - 1} shard(s)"
    return {
        "run": name,
        "dirs": [str(d) for d in paths],
        "model": settings.get("model"),
        "task": "+".join(tasks or settings["tasks"]),
        "n": n,
        "ks": ks,
        "shards": [list(s) for s in shards if s],
        "missing_shards": missing_shards,
        "incomplete_problems": incomplete,
        "excluded_problems": excluded,
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


def launched_shards(d: Path) -> list[Path]:
    """The shard directories of a launched eval that has not merged yet (OUT/shards/i-of-W, the most recent W);
    [] for any other directory."""
    if (d / SETTINGS_FILE).exists() or not (d / "shards").is_dir():
        return []
    sets: dict[str, list[Path]] = defaultdict(list)
    for s in (d / "shards").iterdir():
        if (s / SETTINGS_FILE).exists() and "-of-" in s.name:
            sets[s.name.split("-of-")[1]].append(s)
    if not sets:
        return []
    latest = max(sets.values(), key=lambda ds: max((s / SETTINGS_FILE).stat().st_mtime for s in ds))
    return sorted(latest)


def report_runs(
    dirs: Sequence[str | Path],
    ks: Sequence[int] | None = None,
    tasks: Sequence[str] | None = None,
    exclude: set[str] | None = None,
) -> list[dict]:
    expanded: list[Path] = []
    named: dict[Path, Path] = {}  # a launched run's shard directory -> the run directory it belongs to
    for d in map(Path, dirs):
        shards = launched_shards(d)
        expanded += shards or [d]
        named.update({s.resolve(): d for s in shards})
    groups = group_runs(expanded)
    labels = short_labels([named.get(g[0].resolve(), g[0]) for g in groups])
    return [report_run(g, ks, tasks, exclude, label) for g, label in zip(groups, labels)]


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
    thinking = any(r.get("think") for r in rows)  # the column only for runs that think
    header = (
        ["run", "task"]
        + (["T", "budget"] if show_cond else [])
        + ["n", "problems"]
        + [f"pass@{k}" for k in ks]
        + ["mean acc", "str-eq acc", "no-ans"]
        + (["think tok"] if thinking else [])
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
        ]
        if thinking:
            cells.append(f"{r['think']:.0f}" if r.get("think") else "-")
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = "\n".join(
        "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))) for line in lines
    )
    notes = _notes(reports, rows)
    return (
        text
        + (
            "\n(pass@k, mean accuracy and no-answer rate in %; unbiased pass@k; str-eq acc: the authors' "
            "string-equality grader on the last box, for comparison)"
        )
        + ("\n" + "\n".join(notes) if notes else "")
    )


def _notes(reports: list[dict], rows: list[dict]) -> list[str]:
    """The lines under the table: left-out problems, merged or missing shards, forced answers, budget matches."""
    notes = sorted(
        {
            f"note: {r['run']}: {r['incomplete']} problem(s) without all n samples were left out"
            for r in rows
            if r.get("incomplete")
        }
    )
    notes += [
        f"note: {rep['run']}: --exclude left out {rep['excluded_problems']} of its problems"
        for rep in reports
        if rep.get("excluded_problems")
    ]
    notes += [
        f"note: {rep['run']} merges shards {', '.join(f'{i}/{n}' for i, n in rep['shards'])}"
        for rep in reports
        if len(rep.get("shards") or []) > 1
    ]
    notes += [
        f"note: {rep['run']}: {rep['forced_answers']} of {rep['n'] * rep['num_problems']} samples got the "
        "final-answer pass (--force-answer)"
        for rep in reports
        if rep.get("forced_answers")
    ]
    for rep in reports:
        if rep.get("missing_shards"):
            total = rep["shards"][0][1]
            missing = ", ".join(f"{i}/{total}" for i in rep["missing_shards"])
            notes.append(f"note: {rep['run']}: shard(s) {missing} missing: their problems are not in these numbers")
    return notes + budget_matches(reports)


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
