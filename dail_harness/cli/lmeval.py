"""The lm-eval bridge commands: lm-eval-export and lm-eval."""

from __future__ import annotations

import json
from dataclasses import dataclass

import typer

from dail_harness import registry
from dail_harness.cli import app
from dail_harness.cli.options import config_command
from dail_harness.eval.pipeline import Sampling, TaskSelection
from dail_harness.models.loading import device_option
from dail_harness.options import PATH, PATH_OR_NAME, option


@dataclass(kw_only=True)
class ExportConfig(TaskSelection, Sampling):
    out: str = option(path=PATH, help="Directory to write (use it as lm-eval's --include_path).")
    lm_eval_model: str = option(
        "hf",
        choices=("hf", "vllm"),
        help="The lm-eval model that will sample: hf cannot apply a presence penalty (transformers has none), so "
        "an hf export refuses one; vllm takes every setting. --seed is printed into lm-eval's command: its --seed "
        "(python, numpy, torch; what the hf model samples with) and, for vllm, --model_args seed= (the engine's). "
        "Its draws are not ours: compare pass@k within noise, or greedy samples exactly.",
    )


@config_command(app, "lm-eval-export", ExportConfig)
def lm_eval_export_cmd(cfg: ExportConfig) -> None:
    """Write our tasks as an lm-eval task directory that reports our pass@k (cross-check with lm-eval)."""
    from dail_harness.eval.lmeval import export_tasks, generation_kwargs
    from dail_harness.eval.pipeline import load_tasks

    registry.load_plugin_dirs(cfg.plugin_dir)
    gen = generation_kwargs(
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        top_k=cfg.top_k,
        presence_penalty=cfg.presence_penalty,
        stop=cfg.stop,
        max_tokens=cfg.max_tokens,
        lm_eval_model=cfg.lm_eval_model,
    )
    names = export_tasks(load_tasks(cfg), cfg.out, n=cfg.num_samples, ks=cfg.ks, gen=gen)
    tasks = ",".join(names)
    model_args = "pretrained=MODEL" + (f",seed={cfg.seed}" if cfg.lm_eval_model == "vllm" else "")
    typer.echo(
        f"wrote {', '.join(names)} to {cfg.out}\nrun: lm_eval --model {cfg.lm_eval_model} "
        f"--model_args {model_args} --include_path {cfg.out} --tasks {tasks} --apply_chat_template "
        f"--seed {cfg.seed}"
    )
    if cfg.lm_eval_model == "hf":
        typer.echo(
            f" or: dail-harness lm-eval --model MODEL --include-path {cfg.out} --tasks {tasks} --seed {cfg.seed}"
        )


@dataclass(kw_only=True)
class LmEvalConfig:
    model: str = option(path=PATH_OR_NAME, help="Model directory, adapter directory, hub id or 'tiny-random'.")
    tasks: list[str] = option(help="lm-eval task names, comma-separated (e.g. gsm8k,dail_aime24).")
    include_path: str | None = option(None, path=PATH, help="Extra lm-eval task directory (e.g. from lm-eval-export).")
    limit: int | None = option(None, ge=1, help="Only the first L documents of each task.")
    batch_size: int = option(1, ge=1, help="lm-eval batch size.")
    chat_template: bool = option(True, help="Apply the model's chat template.")
    device: str | None = device_option()
    output: str | None = option(None, path=PATH, help="Write lm-eval's results (and samples) as JSON here.")
    log_samples: bool = option(False, help="Keep every sample in --output.")
    seed: int | None = option(None, help="lm-eval's python, numpy and torch seeds (default: lm-eval's own).")
    plugin_dir: list[str] = option(
        default_factory=list, repeat=True, path=PATH, help="Directory of extra plugin modules."
    )


@config_command(app, "lm-eval", LmEvalConfig)
def lm_eval_cmd(cfg: LmEvalConfig) -> None:
    """Run lm-eval tasks on a model or trained checkpoint (lm-eval's hf model)."""
    from dail_harness.eval.lmeval import run_lm_eval
    from dail_harness.files import atomic_write_text

    registry.load_plugin_dirs(cfg.plugin_dir)
    results = run_lm_eval(
        cfg.model,
        cfg.tasks,
        include_path=cfg.include_path,
        limit=cfg.limit,
        batch_size=cfg.batch_size,
        apply_chat_template=cfg.chat_template,
        device=cfg.device,
        log_samples=cfg.log_samples or cfg.output is not None,
        seed=cfg.seed,
    )
    from lm_eval.utils import make_table

    typer.echo(make_table(results))
    if cfg.output is not None:
        atomic_write_text(cfg.output, json.dumps(results, indent=2, default=str) + "\n")
        typer.echo(f"wrote {cfg.output}")
