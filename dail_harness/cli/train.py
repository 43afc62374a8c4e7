"""The `train` command: DAIL and its baselines on one training engine."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from dail_harness.cli import PluginDir, _load_plugins, app


@app.command("train")
def train_cmd(
    method: str = typer.Option(..., "--method", help="dail, nll, sft, ... (`dail-harness list methods`)."),
    model: str = typer.Option(..., "--model", help="The student: model directory, hub id or 'tiny-random'."),
    data: Path = typer.Option(..., "--data", help="D_syn JSONL (dail, nll) or expert data (sft)."),
    out: Path = typer.Option(..., "--out", help="Run directory: adapter, checkpoints, train_log.jsonl; rerunning resumes."),
    loss: Optional[str] = typer.Option(None, "--loss", help="Override the method's loss (`dail-harness list losses`)."),
    gamma: float = typer.Option(0.1, "--gamma", help="Weight of KL(student || negative reference) in the dail loss."),
    kl_direction: str = typer.Option("reverse", "--kl-direction", help="reverse: KL(student||ref) (the paper's); forward."),
    epochs: int = typer.Option(3, "--epochs", help="3 for reasoning traces, 5 for non-reasoning (the paper)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Cap on optimizer steps."),
    lr: float = typer.Option(2e-4, "--lr"),
    warmup_ratio: float = typer.Option(0.03, "--warmup-ratio"),
    batch_size: int = typer.Option(1, "--batch-size", help="Sequences per micro-batch (per device)."),
    grad_accum: int = typer.Option(4, "--grad-accum", help="Micro-batches per optimizer step."),
    max_length: int = typer.Option(2048, "--max-length", help="Student sequence length (12288 for non-reasoning data)."),
    lora_r: int = typer.Option(32, "--lora-r"),
    lora_alpha: int = typer.Option(32, "--lora-alpha"),
    chunk_tokens: int = typer.Option(1024, "--chunk-tokens", help="Positions per loss chunk (memory vs. speed)."),
    no_gradient_checkpointing: bool = typer.Option(False, "--no-gradient-checkpointing"),
    seed: int = typer.Option(0, "--seed"),
    save_every: int = typer.Option(50, "--save-every", help="Checkpoint every N optimizer steps."),
    thinking: str = typer.Option("off", "--thinking", help="on: thinking-model chat template (enable_thinking)."),
    templates: Optional[Path] = typer.Option(None, "--templates", help="JSON with student/privileged/negative templates."),
    merge: bool = typer.Option(False, "--merge", help="Also write OUT/merged, a full model for transformers and vLLM."),
    report_to: Optional[str] = typer.Option(None, "--report-to", help="accelerate tracker: tensorboard, wandb, ..."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu to force the CPU."),
    no_progress: bool = typer.Option(False, "--no-progress"),
    plugin_dir: Optional[List[Path]] = PluginDir,
):
    """Train a LoRA adapter with a method's loss; `dail-harness eval --model OUT` evaluates the result.

    Multi-GPU (DDP): `torchrun --nproc_per_node N -m dail_harness train ...` or `accelerate launch -m dail_harness train ...`."""
    from dail_harness.errors import HarnessError
    from dail_harness.training.engine import TrainConfig, train

    _load_plugins(plugin_dir)
    if thinking not in ("on", "off"):
        raise HarnessError(f"--thinking must be 'on' or 'off', got '{thinking}'")
    cfg = TrainConfig(method=method, model=model, data=str(data), out=str(out), loss=loss, gamma=gamma,
                      kl_direction=kl_direction, epochs=epochs, max_steps=max_steps, lr=lr, warmup_ratio=warmup_ratio,
                      batch_size=batch_size, grad_accum=grad_accum, max_length=max_length, lora_r=lora_r,
                      lora_alpha=lora_alpha, chunk_tokens=chunk_tokens,
                      gradient_checkpointing=not no_gradient_checkpointing, seed=seed, save_every=save_every,
                      thinking=thinking == "on", templates=str(templates) if templates else None, merge=merge,
                      report_to=report_to, device=device, progress=not no_progress)
    result = train(cfg)
    last = result["last"]
    typer.echo(f"trained {result['steps']} steps on {result['examples']} examples ({method}, loss {result['loss']}); "
               f"final loss {last.get('loss', float('nan')):.4f}; adapter in {out}"
               + (f", merged model in {out / 'merged'}" if merge else ""))
