"""Training curves: `dail-harness report` on training run directories (those with a `train_log.jsonl`).

One table row per run (method, loss, steps, the last logged values) and one PNG with a panel per kind
of curve against the optimizer step: the loss, the KL terms (DAIL's kl_ps and kl_nr: the paper's
Figure 13; GRPO's kl), the reward and the shares online methods log, and pass@k of the evaluations
during training (`--eval-task`). Every run is one line in each panel it has values for.
"""

from __future__ import annotations

import json
from pathlib import Path

from dail_harness.errors import HarnessError
from dail_harness.files import iter_jsonl

PANELS = (
    ("loss", ("loss",)),
    ("KL", ("kl_ps", "kl_nr", "kl")),
    ("reward", ("reward", "hinted_solve_rate")),
    ("share", ("solved_all", "solved_none", "frac_reward_zero_std", "hinted_groups", "clip_ratio")),
)
LOG = "train_log.jsonl"


def is_training_run(path: str | Path) -> bool:
    return (Path(path) / LOG).exists()


def read_training_run(path: str | Path) -> dict:
    """The run's log rows and settings."""
    path = Path(path)
    rows = [r for _, r in iter_jsonl(path / LOG, allow_partial_tail=True)]
    if not rows:
        raise HarnessError("training run has no logged steps yet", path=str(path))
    config = path / "train_config.json"
    settings = json.loads(config.read_text()) if config.exists() else {}
    return {
        "run": path.name,
        "dir": str(path),
        "method": settings.get("method"),
        "loss": settings.get("loss"),
        "rows": rows,
    }


def format_training_table(runs: list[dict]) -> str:
    keys = ["loss", "kl_ps", "kl_nr", "reward", "kl"]
    evals = sorted({k for run in runs for row in run["rows"] for k in row if k.startswith("eval/")})
    header = ["run", "method", "loss fn", "steps", *[f"last {k}" for k in keys], *evals]
    lines = [header]
    for run in runs:
        last = run["rows"][-1]
        latest_eval = {k: next((r[k] for r in reversed(run["rows"]) if k in r), None) for k in evals}
        cells = [run["run"], str(run["method"]), str(run["loss"]), str(last["step"])]
        cells += [f"{last[k]:.4f}" if isinstance(last.get(k), float) else "-" for k in keys]
        cells += [f"{100 * v:.1f}" if v is not None else "-" for v in latest_eval.values()]
        lines.append(cells)
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in lines) + (
        "\n(eval columns: the latest pass@k during training, in %)" if evals else ""
    )


NATS = ("nll", "kl", "dail")
"""Losses that are log-probability terms per token (nats); other losses (RL surrogates) are unitless."""
UNITS = {
    "KL": "KL (nats/token)",
    "reward": "reward (mean per sample)",
    "share": "share (fraction, 0-1)",
    "pass@k during training": "pass@k (%)",
}
SPAN = 100.0
"""Lines whose typical sizes differ by this factor or more share a panel on a log (or symlog) scale."""


def y_scale(series: list[list[float]]) -> tuple[str, dict]:
    """The y scale of a panel: linear, or log when its lines' typical sizes (medians of |value|) differ by SPAN or
    more, so a small term is not flattened against a large one; symlog when some values are <= 0."""
    import statistics

    sizes = [statistics.median(abs(v) for v in s) for s in series if s]
    sizes = [m for m in sizes if m > 0]
    if len(sizes) < 2 or max(sizes) / min(sizes) < SPAN:
        return "linear", {}
    if all(v > 0 for s in series for v in s):
        return "log", {}
    return "symlog", {"linthresh": min(sizes)}


def line_colors(n: int) -> list:
    """n distinct colours: tab10, tab20 past ten lines, then evenly spaced along a colour map."""
    import matplotlib

    if n <= 20:  # listed colour maps: an integer picks the i-th colour
        cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
        return [cmap(i) for i in range(n)]
    cmap = matplotlib.colormaps["turbo"]
    return [cmap(i / (n - 1)) for i in range(n)]


def draw_training(runs: list[dict], title: str | None = None):
    """The figure of `plot_training` (None when there is nothing to draw): a panel per kind of curve, integer step
    ticks, units on the y axis, log scales where a panel's lines differ by orders of magnitude, and each
    panel's legend below it, off the data."""
    from matplotlib.ticker import MaxNLocator

    from dail_harness.eval.plots import figure

    evals = sorted({k for run in runs for row in run["rows"] for k in row if k.startswith("eval/")})
    panels = [(t, keys) for t, keys in PANELS if any(k in row for run in runs for row in run["rows"] for k in keys)]
    if evals:
        panels.append(("pass@k during training", tuple(evals)))
    if not panels:
        return None
    fig, axes = figure(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False)
    for ax, (panel, keys) in zip(axes[0], panels):
        lines = [
            (f"{run['run']}: {key}" if len(runs) > 1 or len(keys) > 1 else key, key, points)
            for run in runs
            for key in keys
            if (points := [(r["step"], r[key]) for r in run["rows"] if isinstance(r.get(key), int | float)])
        ]
        percent = 100.0 if panel.startswith("pass@k") else 1.0
        for (label, key, points), color in zip(lines, line_colors(len(lines))):
            xs, ys = [s for s, _ in points], [percent * v for _, v in points]
            ax.plot(xs, ys, label=label, color=color, marker="o" if key.startswith("eval/") or len(xs) == 1 else None)
        scale, kwargs = y_scale([[percent * v for _, v in points] for _, _, points in lines])
        ax.set_yscale(scale, **kwargs)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(panel)
        ax.set_xlabel("optimizer step")
        nats = all(run.get("loss") in NATS for run in runs)
        ax.set_ylabel(("loss (nats/token)" if nats else "loss") if panel == "loss" else UNITS.get(panel, panel))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=2 if len(lines) > 6 else 1)
    if title:
        fig.suptitle(title, fontsize="medium")
    return fig


def plot_training(runs: list[dict], path: str | Path, title: str | None = None) -> Path | None:
    """A panel per kind of curve that any run logged, as a PNG; None when there is nothing to draw."""
    from dail_harness.eval.plots import save_figure

    fig = draw_training(runs, title)
    return None if fig is None else save_figure(fig, path)
