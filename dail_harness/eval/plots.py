"""Plots of the reports (PNG, written atomically): pass@k against k, pass@k against the thinking budget,
and the shared helpers other reports (training curves, D_syn summaries) draw with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dail_harness.eval.report import budget_curve


def figure(*args: Any, **kwargs: Any) -> Any:
    """A matplotlib figure on the file-only Agg back-end (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def save_figure(fig, path: str | Path, title: str | None = None) -> Path:
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")  # legends placed outside the axes stay in the picture
    plt.close(fig)
    tmp.replace(path)
    return path


def log2_axis(ax, ticks) -> None:
    from matplotlib.ticker import FixedLocator, NullLocator

    ticks = sorted(ticks)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(t) for t in ticks])
    ax.grid(True, alpha=0.3)


def plot_pass_at_k(reports: list[dict], path: str | Path, title: str | None = None) -> Path:
    """pass@k against k (log-2 axis), one line per run and temperature, with 95% bootstrap bands."""
    fig, ax = figure(figsize=(6.4, 4.2))
    all_ks, top = set(), 0.0
    for rep in reports:
        b0 = rep["primary_condition"]["budget"]
        entries = [c for c in rep.get("conditions", []) if c["budget"] == b0] or [rep]
        for c in entries:
            ks = sorted(int(k) for k in c["pass_at_k"])
            ys = [100 * c["pass_at_k"][str(k)] for k in ks]
            all_ks.update(ks)
            top = max(top, *ys)
            temp = f", T={c['temperature']:g}" if len(entries) > 1 else ""
            (line,) = ax.plot(ks, ys, marker="o", label=f"{rep['run']} ({rep['task']}{temp})")
            ci = c.get("pass_at_k_ci95")
            if ci:
                ax.fill_between(
                    ks,
                    [100 * ci[str(k)][0] for k in ks],
                    [100 * ci[str(k)][1] for k in ks],
                    color=line.get_color(),
                    alpha=0.15,
                    linewidth=0,
                )
    log2_axis(ax, all_ks)
    ax.set_ylim(0, min(100, max(5.0, top * 1.1)))
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k (%)")
    ax.legend(fontsize="small")
    return save_figure(fig, path, title or pass_at_k_title(reports))


def pass_at_k_title(reports: list[dict]) -> str:
    """The default title: the task(s) the runs were evaluated on and, for budget-forced runs, the budget
    the curves are drawn at."""
    tasks = ", ".join(dict.fromkeys(rep["task"] for rep in reports))
    budgets = sorted({b for rep in reports if (b := rep.get("primary_condition", {}).get("budget")) is not None})
    at = f" at thinking budget {', '.join(map(str, budgets))}" if budgets else ""
    return f"pass@k on {tasks}{at}"


def plot_budgets(reports: list[dict], path: str | Path, title: str | None = None) -> Path | None:
    """pass@1 and pass@n against the thinking budget, one line per run; None if no run has budgets."""
    budgeted = [r for r in reports if budget_curve(r, 1)]
    if not budgeted:
        return None
    fig, axes = figure(1, 2, figsize=(10, 4))
    for ax, which in zip(axes, ("1", "n")):
        ticks: set[int] = set()
        top = 0.0
        for rep in budgeted:
            k = 1 if which == "1" else rep["n"]
            curve = budget_curve(rep, k)
            ax.plot([b for b, _ in curve], [100 * v for _, v in curve], marker="o", label=f"{rep['run']} (pass@{k})")
            ticks.update(b for b, _ in curve)
            top = max(top, *(100 * v for _, v in curve))
        log2_axis(ax, ticks)
        ax.set_ylim(0, min(100, max(5.0, top * 1.1)))
        ax.set_xlabel("thinking budget (tokens)")
        ax.set_ylabel(f"pass@{which} (%)")
        ax.legend(fontsize="small")
    return save_figure(fig, path, title)
