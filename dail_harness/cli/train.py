"""The `train` command: DAIL and its baselines on one training engine."""

from __future__ import annotations

import dataclasses

import typer

from dail_harness import registry
from dail_harness.cli import app
from dail_harness.cli.options import ExtraOptions, config_command
from dail_harness.errors import HarnessError
from dail_harness.options import fields_of
from dail_harness.training.config import TrainConfig

BUILTIN = "dail_harness.plugins."


def chosen_plugins(argv: list[str]) -> tuple[str | None, str | None]:
    """The method and loss a `train` command line names (flags, else its --config file), with the plugin
    directories it names loaded, so that their options are flags of this command line."""
    from dail_harness.cli.options import config_values, flag_values

    config = flag_values(argv, "--config")
    from_file = config_values(config[-1], ("method", "loss", "plugin_dir")) if config else {}
    registry.load_plugin_dirs(flag_values(argv, "--plugin-dir") or from_file.get("plugin_dir", []))
    methods = flag_values(argv, "--method") or from_file.get("method") or []
    losses = flag_values(argv, "--loss") or from_file.get("loss") or []
    return (methods[-1] if methods else None), (losses[-1] if losses else None)


def plugin_options(argv: list[str] | None) -> list:
    """The method and loss options offered as `train` flags: every built-in method's and loss's, plus those of
    the method and loss the command line chose (a plugin's too)."""
    from dail_harness.training.recipes import OnlineOptions

    seen: dict[str, tuple] = {f.name: (f, tp) for f, tp in fields_of(OnlineOptions)}
    method, loss = chosen_plugins(argv) if argv else (None, None)
    chosen = [("methods", method)] if method and registry.knows("methods", method) else []
    if chosen:
        chosen.append(("losses", loss or registry.get("methods", str(method)).default_loss))
    own = {f.name for f, _ in fields_of(TrainConfig)}
    for kind, name in chosen:
        if name and registry.knows(kind, name):
            for f, tp in fields_of(registry.get(kind, name).Options):
                if f.name in own:  # the flag would set the engine's setting, never the plugin's option
                    where = registry.where_defined(registry.get_entry(kind, name))
                    raise HarnessError(
                        f"{registry.singular(kind)} '{name}' ({where}) has an option named '{f.name}', which is a "
                        "train setting: rename the option"
                    )
                seen.setdefault(f.name, (f, tp))
    for kind in ("methods", "losses"):
        for entry in registry.entries(kind):
            if entry.source.startswith(BUILTIN):
                for f, tp in fields_of(entry.obj.Options):
                    seen.setdefault(f.name, (f, tp))
    return list(seen.values())


def help_scope(argv: list[str]) -> tuple[set[str], str | None]:
    """What `train --method M --help` leaves out: the settings M can never use (e.g. the sampling settings of a
    method that does not sample) and the other methods' and losses' options."""
    method, loss = chosen_plugins(argv)
    if not method or not registry.knows("methods", method):
        return set(), "Pass --method M --help to list only the options method M uses."
    method_cls = registry.get("methods", str(method))
    loss_name = loss or method_cls.default_loss
    if not registry.knows("losses", loss_name):
        return set(), None  # the run's own error names the unknown loss
    loss_cls = registry.get("losses", loss_name)
    mine = {f.name for cls in (method_cls.Options, loss_cls.Options) for f in dataclasses.fields(cls)}
    others = {f.name for f, _ in plugin_options(argv)} - mine
    never = TrainConfig.never_used(method_cls.source, method_cls.uses_templates)
    return others | never, f"Options of method '{method}' and its loss '{loss_name}' (others are left out)."


@config_command(app, "train", TrainConfig, extra=plugin_options, scope=help_scope)
def train_cmd(cfg: TrainConfig, extras: ExtraOptions) -> None:
    """Train a LoRA adapter with a method's loss; `dail-harness eval --model OUT` evaluates the result.

    `train --method M --help` lists the options method M (and its loss) uses; a setting the run would ignore is
    refused. Multi-GPU (DDP): `torchrun --nproc_per_node N -m dail_harness train ...` or `accelerate launch -m
    dail_harness train ...`; add --fsdp to shard the model over the processes (docs/SCALE.md)."""
    from dail_harness.training.run import plan_text, train

    registry.load_plugin_dirs(cfg.plugin_dir)
    if cfg.dry_run:
        typer.echo(plan_text(cfg, extras.values, extras.wheres, extras.chosen))
        return
    result = train(cfg, extras.values, extras.wheres, chosen=extras.chosen)
    from dail_harness.scale.launch import current

    if current().rank != 0:  # one summary for a launched run, not one per process
        return
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
    epochs = round(result.get("epochs") or 0, 2)  # passes over the data, a partial one as a share
    notes = [f"{epochs:g} epoch{'s' * (epochs != 1)}"] if epochs and cfg.max_steps else []  # --max-steps sets them
    notes += [f"resumed after step {done}"] if done else []
    paren = f" ({', '.join(notes)})" if notes else ""
    return (
        f"trained {steps} step{'s' * (steps != 1)}{paren} on {result['examples']} examples ({cfg.method}, "
        f"loss {result['loss']}); {final}; {where}"
    )
