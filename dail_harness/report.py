"""`dail-harness report`: recompute metrics from stored samples (no generation), table and plot."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from dail_harness.errors import HarnessError
from dail_harness.metrics import power_of_two_grid
from dail_harness.results import group_rows, summarize
from dail_harness.store import RunStore


def report_run(directory: str | Path, ks: Sequence[int] | None = None) -> dict:
    """Metrics of one run directory; problems with fewer than n samples (an unfinished run) are
    left out and counted in `incomplete_problems`."""
    store = RunStore(directory)
    settings = store.read_settings()
    n = int(settings["sampling"]["n"])
    rows = store.load_samples()
    if not rows:
        raise HarnessError("run has no samples yet", path=str(store.samples_path))
    complete = {(p.task, p.problem_id) for p in group_rows(rows) if p.n >= n}
    incomplete = len({(r["task"], str(r["problem_id"])) for r in rows}) - len(complete)
    rows = [r for r in rows if (r["task"], str(r["problem_id"])) in complete and int(r["sample_index"]) < n]
    if not rows:
        raise HarnessError(f"no problem has all n={n} samples yet; finish the run first", path=str(store.dir))
    ks = sorted(k for k in (ks or power_of_two_grid(n)) if k <= n)
    summary = summarize(rows, ks, n)
    summary.pop("per_problem")
    return {"run": str(directory), "model": settings.get("model"), "task": "+".join(settings["tasks"]),
            "n": n, "ks": ks, "incomplete_problems": incomplete, **summary}


def table_rows(reports: list[dict]) -> list[dict]:
    """One row per run and task, plus a combined row for runs over several tasks."""
    out = []
    for rep in reports:
        base = {"run": Path(rep["run"]).name or rep["run"], "n": rep["n"]}
        for task, m in rep["per_task"].items():
            out.append({**base, "task": task, **_cols(m)})
        label = "combined (" + "+".join(rep["tasks"]) + ")" if rep["per_task"] else rep["task"]
        out.append({**base, "task": label, **_cols(rep), "incomplete": rep["incomplete_problems"]})
    return out


def _cols(m: dict) -> dict:
    return {"problems": m["num_problems"], "pass_at_k": m["pass_at_k"], "ci95": m.get("pass_at_k_ci95", {}),
            "mean_acc": m["mean_accuracy"], "no_answer": m["no_answer_rate"]}


def format_table(reports: list[dict]) -> str:
    rows = table_rows(reports)
    ks = sorted({int(k) for r in rows for k in r["pass_at_k"]})
    header = ["run", "task", "n", "problems"] + [f"pass@{k}" for k in ks] + ["mean acc", "no-ans"]
    lines = [header]
    for r in rows:
        cells = [r["run"], r["task"], str(r["n"]), str(r["problems"])]
        cells += [f"{100 * r['pass_at_k'][str(k)]:.1f}" if str(k) in r["pass_at_k"] else "-" for k in ks]
        cells += [f"{100 * r['mean_acc']:.1f}", f"{100 * r['no_answer']:.1f}"]
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = "\n".join("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
                     for line in lines)
    notes = [f"note: {r['run']}: {r['incomplete']} problem(s) without all n samples were left out"
             for r in rows if r.get("incomplete")]
    return text + "\n(pass@k, mean accuracy and no-answer rate in %; unbiased pass@k)" + \
        ("\n" + "\n".join(notes) if notes else "")


def plot_pass_at_k(reports: list[dict], path: str | Path) -> Path:
    """pass@k against k (log-2 axis), one line per run (its combined row), with 95% bootstrap bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import FixedLocator, NullLocator

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    all_ks, top = set(), 0.0
    for rep in reports:
        ks = sorted(int(k) for k in rep["pass_at_k"])
        ys = [100 * rep["pass_at_k"][str(k)] for k in ks]
        all_ks.update(ks)
        top = max(top, *ys)
        label = f"{Path(rep['run']).name} ({rep['task']})"
        line, = ax.plot(ks, ys, marker="o", label=label)
        ci = rep.get("pass_at_k_ci95")
        if ci:
            ax.fill_between(ks, [100 * ci[str(k)][0] for k in ks], [100 * ci[str(k)][1] for k in ks],
                            color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(sorted(all_ks)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(k) for k in sorted(all_ks)])
    ax.set_ylim(0, min(100, max(5.0, top * 1.1)))
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path
