"""Evaluation commands: list, eval, report, grade."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from dail_harness import registry
from dail_harness.cli import PluginDir, _load_plugins, _parse_list, _parse_shard, _task_options, app
from dail_harness.errors import HarnessError, did_you_mean


@app.command("list")
def list_cmd(kind: Optional[str] = typer.Argument(None, help="tasks, methods, losses, backends or verifiers (all if omitted)."),
             plugin_dir: Optional[List[Path]] = PluginDir):
    """List what is registered: one line per entry (tasks: name, problems, answer type)."""
    _load_plugins(plugin_dir)
    kinds = [kind] if kind else list(registry.KINDS)
    if kind and kind not in registry.KINDS:
        hint = did_you_mean(kind, registry.KINDS)
        raise HarnessError(f"unknown kind '{kind}'" + (f"; {hint}" if hint else "")
                           + f" (kinds: {', '.join(registry.KINDS)})")
    for k in kinds:
        if not kind:
            typer.echo(f"[{k}]")
        for e in registry.entries(k):
            if k == "tasks":
                count = e.obj.expected_count if e.obj.expected_count is not None else "-"
                typer.echo(f"{e.name:18} {str(count):>5}  {e.obj.answer_type:8} {e.help}")
            else:
                typer.echo(f"{e.name:18} {e.help}")

@app.command("eval")
def eval_cmd(
    task: str = typer.Option(..., "--task", help="Task name(s), comma-separated (e.g. aime24,aime25), or a data file."),
    model: str = typer.Option(..., "--model", help="Local model/adapter directory, hub id, or 'tiny-random'."),
    out: Path = typer.Option(..., "--out", help="Run directory; rerunning the same command resumes."),
    backend: str = typer.Option("hf", "--backend", help="Sampling back-end (see `dail-harness list backends`)."),
    n: Optional[int] = typer.Option(None, "--n", help="Samples per problem (default: the largest k)."),
    k: Optional[str] = typer.Option(None, "--k", help="'128' = pass@k at 1,2,4,...,128; '1,8,64' = exactly those k."),
    temperature: float = typer.Option(0.6, "--temperature", help="0 means greedy decoding."),
    top_p: float = typer.Option(0.95, "--top-p"),
    presence_penalty: float = typer.Option(1.5, "--presence-penalty", help="vLLM semantics (the paper used 1.5)."),
    max_tokens: int = typer.Option(8000, "--max-tokens", help="Maximum new tokens per sample."),
    stop: Optional[List[str]] = typer.Option(None, "--stop", help="Stop string (repeatable)."),
    seed: int = typer.Option(0, "--seed", help="Base seed; samples are keyed by (seed, problem, index)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first L problems of each task."),
    data: Optional[str] = typer.Option(None, "--data", help="Data file for the 'file' task or gpqa-diamond."),
    fields: Optional[str] = typer.Option(None, "--fields", help="Field map for --data, e.g. problem=question,answer=final."),
    answer_type: Optional[str] = typer.Option(None, "--answer-type", help="integer, math or choice (for --data)."),
    prompt_template: Optional[Path] = typer.Option(None, "--prompt-template", help="File with a template containing {problem}."),
    system_prompt: Optional[str] = typer.Option(None, "--system-prompt"),
    task_opt: Optional[List[str]] = typer.Option(None, "--task-opt", help="Extra task option KEY=VALUE (repeatable)."),
    temperatures: Optional[str] = typer.Option(None, "--temperatures", help="Temperature sweep, e.g. 0.6,0.8,1.0,1.2 (one condition each)."),
    thinking: str = typer.Option("off", "--thinking", help="on: thinking model (enable_thinking, </think> phases); off: plain."),
    budgets: Optional[str] = typer.Option(None, "--budgets", help="Thinking budgets for budget forcing, e.g. 512,1024,2048,4096 (implies --thinking on)."),
    answer_tokens: int = typer.Option(2048, "--answer-tokens", help="Answer tokens after the thinking phase."),
    budget_mode: str = typer.Option("shared", "--budget-mode", help="shared: branch answers from one trace per sample; independent: sample each budget."),
    shard: Optional[str] = typer.Option(None, "--shard", help="i/N: only problems with index % N == i (report merges shards)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Rows per generate call (hf)."),
    tensor_parallel_size: int = typer.Option(1, "--tensor-parallel-size", help="GPUs per vLLM engine (vllm)."),
    gpu_memory_utilization: Optional[float] = typer.Option(None, "--gpu-memory-utilization", help="vLLM KV-cache share (default 0.9 GPU, 0.3 CPU)."),
    max_model_len: Optional[int] = typer.Option(None, "--max-model-len", help="vLLM context length (default: the model's)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32, bfloat16 ... (default: bf16 on GPU)."),
    grade_workers: Optional[int] = typer.Option(None, "--grade-workers", help="Grading processes (0: in-process)."),
    grade_timeout: float = typer.Option(10.0, "--grade-timeout", help="Seconds per sample before grading gives up."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
    plugin_dir: Optional[List[Path]] = PluginDir,
):
    """Sample completions, grade them, and write samples.jsonl + summary.json with pass@k."""
    from dail_harness.eval.pipeline import EvalConfig, run_eval
    from dail_harness.eval.metrics import parse_k, power_of_two_grid
    from dail_harness.sampling import SamplingParams

    _load_plugins(plugin_dir)
    if k is not None:
        ks, default_n = parse_k(k)
    elif n is not None:
        ks, default_n = power_of_two_grid(n), n
    else:
        ks, default_n = [1], 1
    n = n if n is not None else default_n
    if n < 1:
        raise HarnessError(f"--n must be >= 1, got {n}")
    if max(ks) > n:
        raise HarnessError(f"--k {max(ks)} is larger than --n {n}; pass@k needs k <= n")
    task_options = _task_options(task_opt, data, fields, answer_type, prompt_template)
    backend_options = {k2: v for k2, v in (("batch_size", batch_size), ("device", device), ("dtype", dtype),
                                           ("system_prompt", system_prompt), ("max_model_len", max_model_len),
                                           ("gpu_memory_utilization", gpu_memory_utilization)) if v is not None}
    if tensor_parallel_size != 1:
        backend_options["tensor_parallel_size"] = tensor_parallel_size
    if thinking not in ("on", "off"):
        raise HarnessError(f"--thinking must be 'on' or 'off', got '{thinking}'")
    temps = _parse_list(temperatures, float, "--temperatures") if temperatures else None
    budget_list = _parse_list(budgets, int, "--budgets") if budgets else None
    if budget_list and min(budget_list) < 1:
        raise HarnessError("--budgets must be positive token counts")
    shard_spec = _parse_shard(shard) if shard else None
    cfg = EvalConfig(
        tasks=[t.strip() for t in task.split(",") if t.strip()], model=model, out=str(out), ks=ks,
        params=SamplingParams(n=n, temperature=temps[0] if temps else temperature, top_p=top_p,
                              presence_penalty=presence_penalty, max_tokens=max_tokens, stop=list(stop or []), seed=seed),
        temperatures=temps, budgets=budget_list, thinking=thinking == "on" or bool(budget_list),
        answer_tokens=answer_tokens, budget_mode=budget_mode, shard=shard_spec,
        backend=backend, limit=limit, task_options=task_options, backend_options=backend_options,
        grade_workers=grade_workers, grade_timeout=grade_timeout, progress=not no_progress,
    )
    registry.get("backends", backend)  # fail fast on an unknown back-end, before loading anything
    run_eval(cfg)
    from dail_harness.eval.report import format_table, report_runs

    typer.echo(format_table(report_runs([out], ks)))
    typer.echo(f"wrote {out / 'samples.jsonl'} and {out / 'summary.json'}")

@app.command("report")
def report_cmd(
    runs: List[Path] = typer.Argument(..., help="Run directories (from `dail-harness eval`)."),
    as_json: bool = typer.Option(False, "--json", help="Print metrics as JSON instead of a table."),
    k: Optional[str] = typer.Option(None, "--k", help="k values to report (default 1,2,4,... up to n)."),
    plot: Optional[Path] = typer.Option(Path("pass_at_k.png"), "--plot", help="Where to write the pass@k-vs-k PNG."),
    no_plot: bool = typer.Option(False, "--no-plot", help="Do not write a plot."),
):
    """Recompute pass@k from stored samples (no generation); print a table and plot pass@k vs k.

    Shards of one run (same settings, different --shard) are merged. Runs with --budgets also get
    PLOT_budgets.png (pass@1 and pass@n against the thinking budget) and a line per pair of runs
    stating the smallest budget at which one matches the other's best score."""
    from dail_harness.eval.metrics import parse_k
    from dail_harness.eval.report import format_table, plot_budgets, plot_pass_at_k, report_runs

    ks = parse_k(k)[0] if k else None
    reports = report_runs(runs, ks)
    if as_json:
        typer.echo(json.dumps(reports, indent=2))
    else:
        typer.echo(format_table(reports))
    if not no_plot and plot is not None:
        typer.echo(f"plot: {plot_pass_at_k(reports, plot)}", err=as_json)
        budget_plot = plot_budgets(reports, plot.with_name(f"{plot.stem}_budgets{plot.suffix}"))
        if budget_plot:
            typer.echo(f"plot: {budget_plot}", err=as_json)

@app.command("grade")
def grade_cmd(
    input: Path = typer.Argument(..., help="JSONL rows with completion, gold, answer_type (finish_reason optional)."),
    output: Path = typer.Option(..., "--output", "-o", help="Graded JSONL (rows + correct, extracted, no_answer)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Grading processes (0: in-process)."),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds per row before it counts as a timeout."),
    no_progress: bool = typer.Option(False, "--no-progress"),
):
    """Grade (or re-grade) any JSONL file of completions with the harness verifiers."""
    from dail_harness.eval.grade_file import grade_file

    stats = grade_file(input, output, workers=workers, timeout_s=timeout, progress=not no_progress)
    typer.echo(f"graded {stats['rows']} rows: {stats['correct']} correct, {stats['no_answer']} without an "
               f"answer, {stats['timeouts']} timed out; agreement with the authors' string-equality grader "
               f"{100 * stats['simple_agreement']:.1f}% -> {output}")
