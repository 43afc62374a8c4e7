"""The `dail-harness` command line (one Typer app). Bad input: one `error:` line, exit code 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from dail_harness import registry
from dail_harness.errors import HarnessError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Evaluate and train language models from expert solutions (DAIL and baselines).")

PluginDir = typer.Option(None, "--plugin-dir", help="Directory of extra plugin modules (*.py) to load.")


def _load_plugins(dirs: Optional[List[Path]]) -> None:
    for d in dirs or []:
        registry.load_plugin_dir(d)


@app.command("list")
def list_cmd(kind: Optional[str] = typer.Argument(None, help="tasks, methods, losses, backends or verifiers (all if omitted)."),
             plugin_dir: Optional[List[Path]] = PluginDir):
    """List what is registered: one line per entry (tasks: name, problems, answer type)."""
    _load_plugins(plugin_dir)
    kinds = [kind] if kind else list(registry.KINDS)
    if kind and kind not in registry.KINDS:
        import difflib

        close = difflib.get_close_matches(kind, registry.KINDS, n=1)
        raise HarnessError(f"unknown kind '{kind}'" + (f"; did you mean '{close[0]}'?" if close else "")
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


def _parse_kv(pairs: Optional[List[str]], flag: str) -> dict:
    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise HarnessError(f"{flag}: expected KEY=VALUE, got '{p}'")
        k, v = p.split("=", 1)
        out[k.strip()] = v
    return out


def _task_options(task_opt, data, fields, answer_type, prompt_template) -> dict:
    """Options every task receives, from the shared task flags."""
    task_options = _parse_kv(task_opt, "--task-opt")
    for key, value in (("data", data), ("fields", fields), ("answer_type", answer_type)):
        if value is not None:
            task_options[key] = value
    if prompt_template is not None:
        if not prompt_template.exists():
            raise HarnessError("prompt template file not found", path=str(prompt_template))
        text = prompt_template.read_text(encoding="utf-8")
        if "{problem}" not in text:
            raise HarnessError("prompt template has no {problem} placeholder", path=str(prompt_template))
        task_options["prompt_template"] = text
    return task_options


def _parse_list(spec: str, kind, flag: str) -> list:
    try:
        values = [kind(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise HarnessError(f"{flag}: expected a comma-separated list of numbers, got '{spec}'") from None
    if not values:
        raise HarnessError(f"{flag}: empty list")
    return list(dict.fromkeys(values))


def _parse_shard(spec: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise HarnessError(f"--shard: expected i/N (e.g. 0/4), got '{spec}'") from None
    if not 0 <= i < n:
        raise HarnessError(f"--shard: need 0 <= i < N, got '{spec}'")
    return i, n


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
    from dail_harness.evaluate import EvalConfig, run_eval
    from dail_harness.metrics import parse_k, power_of_two_grid
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
    from dail_harness.report import format_table, report_runs

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
    from dail_harness.metrics import parse_k
    from dail_harness.report import format_table, plot_budgets, plot_pass_at_k, report_runs

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
    from dail_harness.grade_file import grade_file

    stats = grade_file(input, output, workers=workers, timeout_s=timeout, progress=not no_progress)
    typer.echo(f"graded {stats['rows']} rows: {stats['correct']} correct, {stats['no_answer']} without an "
               f"answer, {stats['timeouts']} timed out -> {output}")


@app.command("lm-eval-export")
def lm_eval_export_cmd(
    task: str = typer.Option(..., "--task", help="Task name(s), comma-separated."),
    out: Path = typer.Option(..., "--out", help="Directory to write (use it as lm-eval's --include_path)."),
    n: int = typer.Option(1, "--n", help="Samples per problem (lm-eval `repeats`)."),
    k: Optional[str] = typer.Option(None, "--k", help="k values for pass@k (default: 1,2,4,... up to n)."),
    temperature: float = typer.Option(0.6, "--temperature"),
    top_p: float = typer.Option(0.95, "--top-p"),
    max_tokens: int = typer.Option(8000, "--max-tokens"),
    limit: Optional[int] = typer.Option(None, "--limit"),
    data: Optional[str] = typer.Option(None, "--data", help="Data file for the 'file' task or gpqa-diamond."),
    fields: Optional[str] = typer.Option(None, "--fields", help="Field map for --data, e.g. problem=question,answer=final."),
    answer_type: Optional[str] = typer.Option(None, "--answer-type", help="Verifier for --data (integer, math, choice, ...)."),
    prompt_template: Optional[Path] = typer.Option(None, "--prompt-template", help="File with a template containing {problem}."),
    task_opt: Optional[List[str]] = typer.Option(None, "--task-opt", help="Extra task option KEY=VALUE (repeatable)."),
    plugin_dir: Optional[List[Path]] = PluginDir,
):
    """Write our tasks as an lm-eval task directory that reports our pass@k (cross-check with lm-eval)."""
    from dail_harness.lmeval_bridge import export_tasks
    from dail_harness.metrics import parse_k, power_of_two_grid

    ks = parse_k(k)[0] if k else power_of_two_grid(n)
    if max(ks) > n:
        raise HarnessError(f"--k {max(ks)} is larger than --n {n}; pass@k needs k <= n")
    _load_plugins(plugin_dir)
    names = export_tasks([t.strip() for t in task.split(",") if t.strip()], out, n=n, ks=ks, temperature=temperature,
                         top_p=top_p, max_tokens=max_tokens, limit=limit,
                         task_options=_task_options(task_opt, data, fields, answer_type, prompt_template))
    typer.echo(f"wrote {', '.join(names)} to {out}\nrun: lm_eval --model hf --model_args pretrained=MODEL "
               f"--include_path {out} --tasks {','.join(names)} --apply_chat_template\n"
               f" or: dail-harness lm-eval --model MODEL --include-path {out} --tasks {','.join(names)}")


@app.command("lm-eval")
def lm_eval_cmd(
    model: str = typer.Option(..., "--model", help="Model directory, adapter directory, hub id or 'tiny-random'."),
    tasks: str = typer.Option(..., "--tasks", help="lm-eval task names, comma-separated (e.g. gsm8k,dail_aime24)."),
    include_path: Optional[Path] = typer.Option(None, "--include-path", help="Extra lm-eval task directory (e.g. from lm-eval-export)."),
    limit: Optional[int] = typer.Option(None, "--limit"),
    batch_size: int = typer.Option(1, "--batch-size"),
    no_chat_template: bool = typer.Option(False, "--no-chat-template", help="Do not apply the model's chat template."),
    device: Optional[str] = typer.Option(None, "--device"),
    output: Optional[Path] = typer.Option(None, "--output", help="Write lm-eval's results (and samples) as JSON here."),
    log_samples: bool = typer.Option(False, "--log-samples", help="Keep every sample in --output."),
    plugin_dir: Optional[List[Path]] = PluginDir,
):
    """Run lm-eval tasks on a model or trained checkpoint (lm-eval's hf model)."""
    _load_plugins(plugin_dir)
    from dail_harness.jsonio import atomic_write_text
    from dail_harness.lmeval_bridge import run_lm_eval

    results = run_lm_eval(model, [t.strip() for t in tasks.split(",") if t.strip()],
                          include_path=str(include_path) if include_path else None, limit=limit,
                          batch_size=batch_size, apply_chat_template=not no_chat_template, device=device,
                          log_samples=log_samples or output is not None)
    from lm_eval.utils import make_table

    typer.echo(make_table(results))
    if output is not None:
        atomic_write_text(output, json.dumps(results, indent=2, default=str) + "\n")
        typer.echo(f"wrote {output}")


@app.command("generate")
def generate_cmd(
    data: Path = typer.Option(..., "--data", help="Expert data: JSONL/CSV/Parquet with problem_id, problem, solution[, answer]."),
    model: str = typer.Option(..., "--model", help="The student (and, with other context, the privileged student)."),
    out: Path = typer.Option(..., "--out", help="D_syn JSONL to write; rerunning resumes."),
    mode: str = typer.Option("mixed", "--mode", help="direct: sample from the privileged student; mixed: mixed-policy rollouts."),
    tau: float = typer.Option(0.8, "--tau", help="Keep a student token when M_PS(token) >= tau (0: pure student; >1: pure privileged)."),
    draft_tokens: int = typer.Option(8, "--draft-tokens", help="K student tokens drafted per verification pass (1: token by token)."),
    samples_per_problem: int = typer.Option(1, "--samples-per-problem"),
    max_tokens: int = typer.Option(2048, "--max-tokens"),
    temperature: float = typer.Option(1.0, "--temperature"),
    top_p: float = typer.Option(1.0, "--top-p"),
    seed: int = typer.Option(0, "--seed"),
    backend: str = typer.Option("hf", "--backend", help="Direct mode's sampling back-end (hf or vllm)."),
    thinking: str = typer.Option("off", "--thinking", help="on: thinking model (enable_thinking; </think> suppressed in rollouts)."),
    templates: Optional[Path] = typer.Option(None, "--templates", help="JSON with student/privileged/negative templates."),
    max_prompt_tokens: Optional[int] = typer.Option(None, "--max-prompt-tokens", help="Truncate privileged prompts to this many tokens."),
    batch_size: int = typer.Option(16, "--batch-size"),
    limit: Optional[int] = typer.Option(None, "--limit"),
    shard: Optional[str] = typer.Option(None, "--shard", help="i/N: only problems with index % N == i."),
    device: Optional[str] = typer.Option(None, "--device"),
    dtype: Optional[str] = typer.Option(None, "--dtype"),
    no_progress: bool = typer.Option(False, "--no-progress"),
):
    """Build D_syn: in-distribution reasoning traces grounded in expert solutions (DAIL step 1)."""
    from dail_harness.dsyn import GenerateConfig, run_generate

    if thinking not in ("on", "off"):
        raise HarnessError(f"--thinking must be 'on' or 'off', got '{thinking}'")
    cfg = GenerateConfig(data=str(data), model=model, out=str(out), mode=mode, tau=tau, draft_tokens=draft_tokens,
                         samples_per_problem=samples_per_problem, max_tokens=max_tokens, temperature=temperature,
                         top_p=top_p, seed=seed, backend=backend, thinking=thinking == "on",
                         templates=str(templates) if templates else None, max_prompt_tokens=max_prompt_tokens,
                         batch_size=batch_size, limit=limit, shard=_parse_shard(shard) if shard else None,
                         device=device, dtype=dtype, progress=not no_progress)
    stats = run_generate(cfg)
    msg = f"{out}: {stats['rows']} traces ({stats['new_rows']} new, {stats['tokens']} tokens generated)"
    if stats.get("acceptance_rate") is not None:
        msg += f"; acceptance rate {stats['acceptance_rate']:.3f} (student tokens kept / all tokens)"
    typer.echo(msg)


@app.command("prompts")
def prompts_cmd(
    problem_id: str = typer.Option(..., "--problem-id"),
    data: Path = typer.Option(..., "--data", help="Expert data file."),
    templates: Optional[Path] = typer.Option(None, "--templates", help="JSON with student/privileged/negative templates."),
):
    """Show the student, privileged and negative-reference prompts and the waypoints of one problem."""
    from dail_harness.dail_prompts import Templates, negative_prompt, privileged_prompt, student_prompt
    from dail_harness.dsyn import waypoints_for
    from dail_harness.expert_data import load_expert_data

    records = {r.problem_id: r for r in load_expert_data(data)}
    if problem_id not in records:
        import difflib

        close = difflib.get_close_matches(problem_id, list(records), n=1)
        raise HarnessError(f"no problem_id '{problem_id}'" + (f"; did you mean '{close[0]}'?" if close else ""),
                           path=str(data))
    rec, t = records[problem_id], (Templates.from_file(templates) if templates else Templates())
    waypoints, answer = waypoints_for(rec)
    for title, text in (("STUDENT", student_prompt(rec.problem, t)),
                        ("PRIVILEGED STUDENT", privileged_prompt(rec.problem, rec.solution, t)),
                        ("NEGATIVE REFERENCE", negative_prompt(rec.problem, waypoints, answer, t))):
        typer.echo(f"===== {title} =====\n{text}\n")
    typer.echo(f"===== WAYPOINTS ({'numbers only' if rec.answer else 'all categories'}; final answer "
               f"{answer!r} removed) =====\n{waypoints}")


data_app = typer.Typer(help="Build and check expert data sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("harp")
def data_harp_cmd(
    out: Path = typer.Option(..., "--out", help="Expert data JSONL to write."),
    first_year: int = typer.Option(1985, "--first-year"),
    last_year: int = typer.Option(2023, "--last-year"),
    filter_model: Optional[str] = typer.Option(None, "--filter-model", help="Keep only problems this model fails in all --n samples."),
    n: int = typer.Option(32, "--n", help="Samples per problem for the filter (the paper: 32)."),
    filter_dir: Optional[Path] = typer.Option(None, "--filter-dir", help="Run directory of the filter's eval (resumable)."),
    backend: str = typer.Option("hf", "--backend"),
    temperature: float = typer.Option(0.6, "--temperature"),
    max_tokens: int = typer.Option(8000, "--max-tokens"),
    dedup_against: Optional[str] = typer.Option("aime24,aime25,beyondaime,imo-answerbench", "--dedup-against",
                                                help="Benchmarks to check for overlaps ('' to skip)."),
    drop_overlaps: bool = typer.Option(False, "--drop-overlaps", help="Remove overlapping problems."),
    limit: Optional[int] = typer.Option(None, "--limit"),
):
    """An e1-verifiable-style set from HARP: AIME problems, AoPS solutions as `Solution N:` blocks."""
    from dail_harness.expert_data import build_harp_aime
    from dail_harness.jsonio import atomic_write_jsonl

    records = build_harp_aime(first_year, last_year)[:limit] if limit else build_harp_aime(first_year, last_year)
    from dail_harness.dail_prompts import count_solutions

    typer.echo(f"HARP AIME {first_year}-{last_year}: {len(records)} problems, "
               f"{sum(count_solutions(r.solution) for r in records)} expert solutions")
    if filter_model:
        records = _filter_unsolved(records, filter_model, n, filter_dir or out.with_suffix(".filter"), backend,
                                   temperature, max_tokens)
        typer.echo(f"kept {len(records)} problems that {filter_model} never solved in {n} samples")
    if dedup_against:
        records = _report_overlaps(records, dedup_against, drop_overlaps)
    atomic_write_jsonl(out, [r.to_dict() for r in records])
    typer.echo(f"wrote {len(records)} rows to {out}")


def _filter_unsolved(records, model, n, run_dir, backend, temperature, max_tokens):
    from dail_harness.evaluate import EvalConfig, run_eval
    from dail_harness.jsonio import atomic_write_jsonl
    from dail_harness.sampling import SamplingParams
    from dail_harness.store import RunStore

    run_dir.mkdir(parents=True, exist_ok=True)
    data = run_dir / "problems.jsonl"
    if not data.exists():
        atomic_write_jsonl(data, [{"id": r.problem_id, "problem": r.problem, "answer": r.answer} for r in records])
    run_eval(EvalConfig(tasks=["file"], model=model, out=str(run_dir / "eval"), ks=[1],
                        params=SamplingParams(n=n, temperature=temperature, max_tokens=max_tokens),
                        backend=backend, task_options={"data": str(data), "answer_type": "integer"}))
    solved = {r["problem_id"] for r in RunStore(run_dir / "eval").load_samples() if r["correct"]}
    return [r for r in records if r.problem_id not in solved]


def _report_overlaps(records, against: str, drop: bool):
    from dail_harness.expert_data import find_overlaps
    from dail_harness.task import make_task

    bench = {f"{name}/{p.id}": p.problem for name in against.split(",") if name.strip()
             for p in make_task(name.strip()).load()}
    hits = find_overlaps(records, bench)
    for h in hits:
        typer.echo(f"overlap: {h['problem_id']} ~ {h['benchmark_id']} (similarity {h['similarity']})")
    typer.echo(f"{len(hits)} overlap(s) with {against}" + (" removed" if drop and hits else ""))
    if drop:
        flagged = {h["problem_id"] for h in hits}
        records = [r for r in records if r.problem_id not in flagged]
    return records


@data_app.command("dedup")
def data_dedup_cmd(
    data: Path = typer.Option(..., "--data", help="Expert data file."),
    against: str = typer.Option("aime24,aime25,beyondaime,imo-answerbench", "--against"),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the data without overlapping problems here."),
):
    """Report training problems that overlap benchmark problems (normalised text similarity >= 0.7)."""
    from dail_harness.expert_data import load_expert_data
    from dail_harness.jsonio import atomic_write_jsonl

    records = _report_overlaps(load_expert_data(data), against, drop=out is not None)
    if out is not None:
        atomic_write_jsonl(out, [r.to_dict() for r in records])
        typer.echo(f"wrote {len(records)} rows to {out}")


def main() -> None:
    try:
        app(standalone_mode=False)
    except HarnessError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted: finished samples are saved; rerun the same command to resume", err=True)
        sys.exit(130)
    except Exception as e:  # click usage errors and friends
        import click

        if isinstance(e, click.exceptions.Exit):
            sys.exit(e.exit_code)
        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Abort):
            sys.exit(130)
        raise
