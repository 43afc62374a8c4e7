"""D_syn commands: generate, prompts, and the `data` group (HARP builder, dedup)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dail_harness.cli import _parse_shard, app
from dail_harness.errors import HarnessError, did_you_mean


@app.command("generate")
def generate_cmd(
    data: Path = typer.Option(..., "--data", help="Expert data: JSONL/CSV/Parquet with problem_id, problem, solution[, answer]."),
    model: str = typer.Option(..., "--model", help="The student (and, with other context, the privileged student)."),
    out: Path = typer.Option(..., "--out", help="D_syn JSONL to write; rerunning resumes."),
    mode: str = typer.Option("mixed", "--mode", help="direct: sample from the privileged student; mixed: mixed-policy rollouts."),
    tau: float = typer.Option(0.8, "--tau", help="Keep a student token when M_PS(token) >= tau (0: pure student; >1: pure privileged)."),
    draft_tokens: Optional[int] = typer.Option(
        None, "--draft-tokens", help="1: token by token, student and privileged rows sharing each forward pass (the hf "
        "default; fastest on GPUs); K > 1: the student drafts K tokens per verify pass (8: the vllm default); 0: adaptive K."),
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
    static_cache: Optional[bool] = typer.Option(None, "--static-cache/--dynamic-cache",
                                                help="Fixed-shape KV caches for the rollout engine (default: static on CUDA)."),
    compile: bool = typer.Option(False, "--compile", help="With static caches on CUDA: compile the forward (CUDA graphs)."),
    limit: Optional[int] = typer.Option(None, "--limit"),
    shard: Optional[str] = typer.Option(None, "--shard", help="i/N: only problems with index % N == i."),
    device: Optional[str] = typer.Option(None, "--device"),
    dtype: Optional[str] = typer.Option(None, "--dtype"),
    no_progress: bool = typer.Option(False, "--no-progress"),
):
    """Build D_syn: in-distribution reasoning traces grounded in expert solutions (DAIL step 1)."""
    from dail_harness.dsyn.generate import GenerateConfig, run_generate

    if thinking not in ("on", "off"):
        raise HarnessError(f"--thinking must be 'on' or 'off', got '{thinking}'")
    cfg = GenerateConfig(data=str(data), model=model, out=str(out), mode=mode, tau=tau, draft_tokens=draft_tokens,
                         samples_per_problem=samples_per_problem, max_tokens=max_tokens, temperature=temperature,
                         top_p=top_p, seed=seed, backend=backend, thinking=thinking == "on",
                         templates=str(templates) if templates else None, max_prompt_tokens=max_prompt_tokens,
                         batch_size=batch_size, static_cache=static_cache, compile=compile, limit=limit,
                         shard=_parse_shard(shard) if shard else None,
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
    from dail_harness.dsyn.prompts import Templates, negative_prompt, privileged_prompt, student_prompt
    from dail_harness.dsyn.generate import waypoints_for
    from dail_harness.dsyn.expert_data import load_expert_data

    records = {r.problem_id: r for r in load_expert_data(data)}
    if problem_id not in records:
        hint = did_you_mean(problem_id, records)
        raise HarnessError(f"no problem_id '{problem_id}'" + (f"; {hint}" if hint else ""), path=str(data))
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
    from dail_harness.dsyn.expert_data import build_harp_aime
    from dail_harness.files import atomic_write_jsonl

    records = build_harp_aime(first_year, last_year)[:limit] if limit else build_harp_aime(first_year, last_year)
    from dail_harness.dsyn.prompts import count_solutions

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
    from dail_harness.eval.pipeline import EvalConfig, run_eval
    from dail_harness.files import atomic_write_jsonl
    from dail_harness.sampling import SamplingParams
    from dail_harness.eval.store import RunStore

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
    from dail_harness.dsyn.expert_data import find_overlaps
    from dail_harness.eval.task import make_task

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
    from dail_harness.dsyn.expert_data import load_expert_data
    from dail_harness.files import atomic_write_jsonl

    records = _report_overlaps(load_expert_data(data), against, drop=out is not None)
    if out is not None:
        atomic_write_jsonl(out, [r.to_dict() for r in records])
        typer.echo(f"wrote {len(records)} rows to {out}")
