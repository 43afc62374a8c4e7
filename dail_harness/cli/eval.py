"""Evaluation commands: list, eval, report, grade."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import typer

from dail_harness import registry
from dail_harness.cli import app
from dail_harness.cli.options import config_command
from dail_harness.errors import HarnessError, did_you_mean
from dail_harness.eval.grading import DEFAULT_TIMEOUT_S
from dail_harness.eval.pipeline import EvalConfig
from dail_harness.options import PATH, option
from dail_harness.scale.launch import Launch, current


@dataclass(kw_only=True)
class ListConfig:
    kind: str | None = option(
        None, positional=True, help="tasks, methods, losses, backends, rollouts or verifiers (all if omitted)."
    )
    plugin_dir: list[str] = option(
        default_factory=list, repeat=True, path=PATH, help="Directory of extra plugin modules."
    )


@config_command(app, "list", ListConfig)
def list_cmd(cfg: ListConfig) -> None:
    """List what is registered: one line per entry (tasks: name, problems, answer type)."""
    registry.load_plugin_dirs(cfg.plugin_dir)
    if cfg.kind and cfg.kind not in registry.KINDS:
        hint = did_you_mean(cfg.kind, registry.KINDS)
        raise HarnessError(
            f"unknown kind '{cfg.kind}'" + (f"; {hint}" if hint else "") + f" (kinds: {', '.join(registry.KINDS)})"
        )
    for k in [cfg.kind] if cfg.kind else list(registry.KINDS):
        if not cfg.kind:
            typer.echo(f"[{k}]")
        for e in registry.entries(k):
            marked = f"{e.help} [overrides {e.overrides}]" if e.overrides else e.help
            if k == "tasks":
                count = e.obj.expected_count if e.obj.expected_count is not None else "-"
                typer.echo(f"{e.name:18} {count!s:>5}  {e.obj.answer_type:8} {marked}")
            else:
                typer.echo(f"{e.name:18} {marked}")


@config_command(app, "eval", EvalConfig)
def eval_cmd(cfg: EvalConfig) -> None:
    """Sample completions, grade them, and write samples.jsonl + summary.json with pass@k."""
    from dail_harness.eval.pipeline import run_eval
    from dail_harness.eval.report import format_table, report_from_summary

    registry.load_plugin_dirs(cfg.plugin_dir)
    from dail_harness.backends.base import refuse_unused_engine_options

    # fail fast on an unknown back-end, or a flag it would ignore, before loading anything
    refuse_unused_engine_options(cfg.backend, registry.get("backends", cfg.backend), cfg.backend_options())
    if cfg.num_samples > 1 and 0 in (cfg.temperatures or [cfg.temperature]):
        typer.echo(
            f"warning: temperature 0 is greedy decoding: the n={cfg.num_samples} samples of a problem are "
            "identical, so pass@k for every k equals pass@1",
            err=True,
        )
    launch = current()
    if cfg.dry_run:
        _print_plan(cfg, launch)
        return
    if launch.launched:
        from dail_harness.eval.launched import run_launched

        merged = run_launched(cfg, launch)  # places this process's engine on its devices
        if merged is not None:
            typer.echo(format_table([report_from_summary(Path(cfg.out).name, merged)]))
            typer.echo(f"merged {launch.world} shards into {Path(cfg.out) / 'samples.jsonl'} and summary.json")
        return
    summary = run_eval(cfg)
    if cfg.shard is not None and "pass_at_k" not in summary:
        typer.echo(
            f"shard {cfg.shard[0]}/{cfg.shard[1]}: {summary['shard']['samples']} samples in "
            f"{Path(cfg.out) / 'samples.jsonl'} (its blocks split problems: `dail-harness report` the shards together)"
        )
        return
    typer.echo(format_table([report_from_summary(Path(cfg.out).name, summary)]))
    typer.echo(f"wrote {Path(cfg.out) / 'samples.jsonl'} and {Path(cfg.out) / 'summary.json'}")


def _print_plan(cfg: EvalConfig, launch) -> None:
    """--dry-run: the samples, a bound on the new tokens, and every rank's share and devices."""
    from dail_harness.eval.pipeline import load_tasks, plan_work
    from dail_harness.scale.plan import format_plan

    work = plan_work(cfg, load_tasks(cfg))
    if cfg.shard is not None:  # the plan of the N shards, as if each were a process
        launch = Launch(cfg.shard[0], cfg.shard[1], cfg.shard[0], cfg.shard[1], "--shard")
    typer.echo(format_plan("eval", work, launch, cfg.tensor_parallel_size, cfg.sample_block, cfg.device))


@dataclass(kw_only=True)
class ReportConfig:
    runs: list[str] = option(
        positional=True,
        repeat=True,
        path=PATH,
        help="Run directories: evaluations (`dail-harness eval`) and/or training runs (`dail-harness train`).",
    )
    json: bool = option(False, flag="--json", help="Print metrics as JSON instead of a table.")
    k: str | None = option(
        None,
        help="k values to report, as eval's --k: '8' is 1,2,4,8; '1,8' exactly those (default: each run's own --k, "
        "else 1,2,4,... up to its n). A column a run has no value for shows '-'.",
    )
    plot: str | None = option(
        None,
        path=PATH,
        help="Where to write the pass@k-vs-k PNG (default: pass_at_k.png; with --json, none unless given).",
    )
    no_plot: bool = option(False, flag="--no-plot", help="Do not write a plot.")
    title: str | None = option(None, help="Title of the plots (e.g. what the runs are).")
    task: list[str] | None = option(
        None, help="Report only these tasks of each run, as one set (e.g. aime24,aime25 of a run over four)."
    )
    exclude: str | None = option(
        None,
        path=PATH,
        help="File of problem ids to leave out (`id` or `task/id` lines, e.g. from `data dedup --ids-out`).",
    )


@config_command(app, "report", ReportConfig)
def report_cmd(cfg: ReportConfig) -> None:
    """Recompute pass@k from stored samples (no generation); print a table and plot pass@k vs k.

    Shards of one run (same settings, different --shard) are merged. Runs with --budgets also get
    PLOT_budgets.png (pass@1 and pass@n against the thinking budget) and a line per pair of runs
    stating the smallest budget at which one matches the other's best score. Training run directories
    (with a train_log.jsonl) get a table of their last values and PLOT_training.png: loss, KL terms,
    reward and pass@k during training against the step."""
    from dail_harness.eval.metrics import parse_k
    from dail_harness.eval.plots import plot_budgets, plot_pass_at_k
    from dail_harness.eval.report import format_table, report_runs
    from dail_harness.training.curves import format_training_table, is_training_run, plot_training, read_training_run

    training = [read_training_run(r) for r in cfg.runs if is_training_run(r) and not (Path(r) / "run.json").exists()]
    evals = [r for r in cfg.runs if not (is_training_run(r) and not (Path(r) / "run.json").exists())]
    plot = None if cfg.no_plot else Path(cfg.plot) if cfg.plot else None if cfg.json else Path("pass_at_k.png")
    if training:
        typer.echo(json.dumps(training, indent=2) if cfg.json else format_training_table(training))
        if plot is not None:
            drawn = plot_training(training, plot.with_name(f"{plot.stem}_training{plot.suffix}"), cfg.title)
            if drawn:
                typer.echo(f"plot: {drawn}", err=cfg.json)
    if not evals:
        return
    ks = parse_k(cfg.k)[0] if cfg.k else None
    from dail_harness.eval.task import read_id_file

    reports = report_runs(evals, ks, cfg.task, read_id_file(cfg.exclude) if cfg.exclude else None)
    typer.echo(json.dumps(reports, indent=2) if cfg.json else format_table(reports))
    if plot is not None:
        typer.echo(f"plot: {plot_pass_at_k(reports, plot, cfg.title)}", err=cfg.json)
        budget_plot = plot_budgets(reports, plot.with_name(f"{plot.stem}_budgets{plot.suffix}"), cfg.title)
        if budget_plot:
            typer.echo(f"plot: {budget_plot}", err=cfg.json)


@dataclass(kw_only=True)
class GradeConfig:
    input: str = option(
        positional=True, path=PATH, help="JSONL rows with completion, gold, answer_type (finish_reason optional)."
    )
    output: str = option(flag="--output -o", path=PATH, help="Graded JSONL (rows + correct, extracted, no_answer).")
    workers: int | None = option(None, ge=0, help="Grading processes (0: in-process).")
    timeout: float = option(DEFAULT_TIMEOUT_S, gt=0, help="Seconds per row before it counts as a timeout.")
    progress: bool = option(True, help="Show a progress bar.")
    plugin_dir: list[str] = option(
        default_factory=list, repeat=True, path=PATH, help="Directory of extra plugin modules."
    )


@config_command(app, "grade", GradeConfig)
def grade_cmd(cfg: GradeConfig) -> None:
    """Grade (or re-grade) any JSONL file of completions with the harness verifiers."""
    from dail_harness.eval.grade_file import grade_file

    registry.load_plugin_dirs(cfg.plugin_dir)
    stats = grade_file(cfg.input, cfg.output, workers=cfg.workers, timeout_s=cfg.timeout, progress=cfg.progress)
    typer.echo(
        f"graded {stats['rows']} rows: {stats['correct']} correct, {stats['no_answer']} without an "
        f"answer, {stats['timeouts']} timed out; agreement with the authors' string-equality grader "
        f"{100 * stats['simple_agreement']:.1f}% -> {cfg.output}"
    )
