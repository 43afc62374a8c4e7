"""D_syn commands: generate and prompts."""

from __future__ import annotations

from dataclasses import dataclass

import typer

from dail_harness import registry
from dail_harness.cli import app
from dail_harness.cli.options import config_command
from dail_harness.dsyn.generate import GenerateConfig
from dail_harness.errors import HarnessError, did_you_mean
from dail_harness.options import PATH, option
from dail_harness.scale.launch import Launch, current


@config_command(app, "generate", GenerateConfig)
def generate_cmd(cfg: GenerateConfig) -> None:
    """Build D_syn: in-distribution reasoning traces grounded in expert solutions (DAIL step 1)."""
    from dail_harness.dsyn.generate import run_generate

    registry.load_plugin_dirs(cfg.plugin_dir)
    launch = current()
    if cfg.dry_run:
        _print_plan(cfg, launch)
        return
    if launch.launched:
        from dail_harness.dsyn.launched import run_launched_generate

        stats = run_launched_generate(cfg, launch)  # places the engine once --backend auto is settled
        if not stats["merged"]:
            return
        typer.echo(f"merged {launch.world} shards into {cfg.out}.traces.jsonl")
    else:
        stats = run_generate(cfg)
    msg = (
        f"{cfg.out}.traces.jsonl: {stats['rows']} traces ({stats['new_rows']} new, {stats['tokens']} tokens generated)"
    )
    if stats.get("acceptance_rate") is not None:
        msg += f"; acceptance rate {stats['acceptance_rate']:.3f} (student tokens kept / all tokens)"
    s = stats["selection"]
    typer.echo(msg)
    typer.echo(
        f"{cfg.out}: {s['kept_traces']} traces kept ({s['rule']}, correct by {s['by']}): {s['kept_problems']} "
        f"problems kept, {s['dropped_problems']} dropped; {s['correct_traces']} of {s['traces']} traces correct"
        + (f"; {s['empty_traces']} empty traces dropped (nothing to train on)" if s.get("empty_traces") else "")
        + f"; problems by number of correct traces: {s['correct_per_problem']}"
    )


def _print_plan(cfg: GenerateConfig, launch: Launch) -> None:
    """--dry-run: the samples, a bound on the new tokens, and every rank's share and devices."""
    from dail_harness.dsyn.generate import load_records
    from dail_harness.scale.plan import Work, format_plan

    work = [Work(p, cfg.n, int(cfg.max_tokens or 0)) for p in range(len(load_records(cfg)))]
    if cfg.shard is not None:  # the plan of the N shards, as if each were a process
        launch = Launch(cfg.shard[0], cfg.shard[1], cfg.shard[0], cfg.shard[1], "--shard")
    typer.echo(format_plan(f"generate ({cfg.mode})", work, launch, 1, cfg.sample_block, cfg.device))


@dataclass(kw_only=True)
class PromptsConfig:
    problem_id: str = option(help="The problem to show.")
    data: str = option(path=PATH, help="Expert data file.")
    templates: str | None = option(None, path=PATH, help="JSON with student/privileged/negative templates.")


@config_command(app, "prompts", PromptsConfig)
def prompts_cmd(cfg: PromptsConfig) -> None:
    """Show the student, privileged and negative-reference prompts and the waypoints of one problem."""
    from dail_harness.dsyn.expert_data import load_expert_data
    from dail_harness.dsyn.generate import waypoints_for
    from dail_harness.dsyn.prompts import Templates, negative_prompt, privileged_prompt, student_prompt

    records = {r.problem_id: r for r in load_expert_data(cfg.data)}
    if cfg.problem_id not in records:
        hint = did_you_mean(cfg.problem_id, records)
        raise HarnessError(f"no problem_id '{cfg.problem_id}'" + (f"; {hint}" if hint else ""), path=cfg.data)
    rec, t = records[cfg.problem_id], (Templates.from_file(cfg.templates) if cfg.templates else Templates())
    waypoints, answer = waypoints_for(rec)
    for title, text in (
        ("STUDENT", student_prompt(rec.problem, t)),
        ("PRIVILEGED STUDENT", privileged_prompt(rec.problem, rec.solution, t)),
        ("NEGATIVE REFERENCE", negative_prompt(rec.problem, waypoints, answer, t)),
    ):
        typer.echo(f"===== {title} =====\n{text}\n")
    typer.echo(
        f"===== WAYPOINTS ({'numbers only' if rec.answer else 'all categories'}; final answer "
        f"{answer!r} removed) =====\n{waypoints}"
    )
