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


def plot_training(runs: list[dict], path: str | Path, title: str | None = None) -> Path | None:
    """A panel per kind of curve that any run logged; None when there is nothing to draw."""
    from dail_harness.eval.plots import figure, save_figure

    evals = sorted({k for run in runs for row in run["rows"] for k in row if k.startswith("eval/")})
    panels = [
        (title, keys) for title, keys in PANELS if any(k in row for run in runs for row in run["rows"] for k in keys)
    ]
    if evals:
        panels.append(("pass@k during training", tuple(evals)))
    if not panels:
        return None
    fig, axes = figure(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (panel, keys) in zip(axes[0], panels):
        for run in runs:
            for key in keys:
                points = [(r["step"], r[key]) for r in run["rows"] if isinstance(r.get(key), int | float)]
                if points:
                    label = f"{run['run']}: {key}" if len(runs) > 1 or len(keys) > 1 else key
                    ax.plot(
                        [s for s, _ in points],
                        [v for _, v in points],
                        label=label,
                        marker="o" if key.startswith("eval/") else None,
                    )
        ax.set_title(panel)
        ax.set_xlabel("optimizer step")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="x-small")
    return save_figure(fig, path, title)
