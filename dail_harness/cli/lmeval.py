"""The lm-eval bridge commands: lm-eval-export and lm-eval."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from dail_harness.cli import PluginDir, _load_plugins, _task_options, app
from dail_harness.errors import HarnessError


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
    from dail_harness.eval.lmeval import export_tasks
    from dail_harness.eval.metrics import parse_k, power_of_two_grid

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
    from dail_harness.files import atomic_write_text
    from dail_harness.eval.lmeval import run_lm_eval

    results = run_lm_eval(model, [t.strip() for t in tasks.split(",") if t.strip()],
                          include_path=str(include_path) if include_path else None, limit=limit,
                          batch_size=batch_size, apply_chat_template=not no_chat_template, device=device,
                          log_samples=log_samples or output is not None)
    from lm_eval.utils import make_table

    typer.echo(make_table(results))
    if output is not None:
        atomic_write_text(output, json.dumps(results, indent=2, default=str) + "\n")
        typer.echo(f"wrote {output}")
