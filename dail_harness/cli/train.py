"""The `train` command: DAIL and its baselines on one training engine."""

from __future__ import annotations

import typer

from dail_harness import registry
from dail_harness.cli import app, load_plugins
from dail_harness.cli.options import ExtraOptions, config_command
from dail_harness.options import fields_of
from dail_harness.training.config import TrainConfig

BUILTIN = "dail_harness.plugins."


def builtin_plugin_options() -> list:
    """The options of the built-in methods and losses, offered as `train` flags (plugins from elsewhere
    take theirs through --method-opt / --loss-opt)."""
    from dail_harness.training.recipes import OnlineOptions

    seen: dict[str, tuple] = {f.name: (f, tp) for f, tp in fields_of(OnlineOptions)}
    for kind in ("methods", "losses"):
        for entry in registry.entries(kind):
            if entry.source.startswith(BUILTIN):
                for f, tp in fields_of(entry.obj.Options):
                    seen.setdefault(f.name, (f, tp))
    return list(seen.values())


@config_command(app, "train", TrainConfig, extra=builtin_plugin_options)
def train_cmd(cfg: TrainConfig, extras: ExtraOptions) -> None:
    """Train a LoRA adapter with a method's loss; `dail-harness eval --model OUT` evaluates the result.

    Method and loss options (e.g. --gamma) apply to the method or loss that has them; others are refused.
    Multi-GPU (DDP): `torchrun --nproc_per_node N -m dail_harness train ...` or `accelerate launch -m dail_harness
    train ...`."""
    from dail_harness.training.run import train

    load_plugins(cfg.plugin_dir)
    result = train(cfg, extras.values, extras.wheres, chosen=extras.chosen)
    for it in result.get("iterations", []):
        counts = ", ".join(f"{k} {v}" for k, v in it.items() if k not in ("iteration", "steps", "final_loss"))
        typer.echo(f"iter-{it['iteration']}: {counts}; {it['steps']} steps")
    if result.get("dropped_overlong"):
        typer.echo(
            f"dropped {result['dropped_overlong']} examples whose student or privileged sequence reaches "
            f"--max-length {cfg.max_length} (the authors' rule; --overlong truncate keeps them, cut)"
        )
    typer.echo(summary_line(cfg, result))


def summary_line(cfg: TrainConfig, result: dict) -> str:
    """What the run did: trained (or resumed, or found it already finished), and where the result is."""
    steps, done, last = result["steps"], result.get("resumed_from", 0), result["last"]
    final = f"final loss {last.get('loss', float('nan')):.4f}"
    if done >= steps:
        return (
            f"already finished: {steps} steps in {cfg.out} ({final}); pass a larger --max-steps (or --epochs) "
            "to extend it"
        )
    where = (
        f"the full model in {cfg.out} (all weights trained: nothing to merge)"
        if cfg.lora_r == 0
        else f"adapter in {cfg.out}" + (f", merged model in {cfg.out}/merged" if cfg.merge else "")
    )
    epochs = result.get("epochs")
    notes = [f"{epochs} epoch{'s' * (epochs != 1)}"] if epochs and cfg.max_steps else []  # --max-steps sets them
    notes += [f"resumed after step {done}"] if done else []
    paren = f" ({', '.join(notes)})" if notes else ""
    return (
        f"trained {steps} steps{paren} on {result['examples']} examples ({cfg.method}, loss {result['loss']}); "
        f"{final}; {where}"
    )
