"""`train()`: one run of any method, dispatched by where its examples come from (recipes.py): a fixed
file (the offline loop), a generation phase before training (STaR's iterations) or the live policy at every
step (online methods). Kept apart from the engine so the generate-then-train loop can build on the engine
without the engine importing it back."""

from __future__ import annotations

from dail_harness.backends.auto import AUTO
from dail_harness.errors import HarnessError
from dail_harness.options import Where, as_settings
from dail_harness.options import refuse_unused as refuse
from dail_harness.training.config import TrainConfig
from dail_harness.training.engine import FileSource, Trainer, refuse_accelerate_fsdp, resolve
from dail_harness.training.plan import StepSource
from dail_harness.training.recipes import FileMethod, GenerateMethod, OnlineMethod


def train(
    cfg: TrainConfig,
    given: dict | None = None,
    wheres: dict[str, Where] | None = None,
    *,
    chosen: dict[str, Where] | None = None,
) -> dict:
    """Train with the method's examples (a file, a generation phase, or the live policy every step) and save
    the adapter (or, with --lora-r 0, the model). `chosen`: the settings the user set, where each came from; one
    this run would ignore is refused."""
    method, loss, loss_name, settings = prepare(cfg, given, wheres, chosen)
    desc = f"train ({cfg.method}, {loss_name})"
    if method.source == "generate":
        from dail_harness.training.iterate import generate_then_train

        assert isinstance(method, GenerateMethod)
        return {**generate_then_train(cfg, method, loss, settings), "loss": loss_name}
    if method.source not in ("file", "online"):
        raise HarnessError(
            f"method '{cfg.method}' makes its examples by '{method.source}', which the engine does "
            "not run (file, generate, online)"
        )
    if method.source == "online":
        from dail_harness.training.online import OnlineSource

        assert isinstance(method, OnlineMethod)
        source: StepSource = OnlineSource(method)
    else:
        assert isinstance(method, FileMethod)
        source = FileSource(method)
    trainer = Trainer(cfg, method, loss, settings)
    try:
        return {**trainer.fit(source, desc), "loss": loss_name}
    finally:
        trainer.close()  # an interrupted run releases its sampling engine too


def prepare(cfg: TrainConfig, given: dict | None, wheres: dict[str, Where] | None, chosen: dict[str, Where] | None):
    """The method and loss of a run, its back-end settled and its settings checked: (method, loss, loss name,
    the settings a resume must match)."""
    refuse_unsupported_launch()
    method, loss = resolve(cfg, given, {**(chosen or {}), **(wheres or {})})  # chosen: where --method-opt came from
    choice = auto_backend(cfg, method, chosen or {}) if cfg.backend == AUTO else None
    if choice is not None:
        cfg.backend = choice[0]
    refuse_unused(cfg, method, chosen or {})
    if method.needs_sampled_groups and cfg.temperature == 0:
        raise HarnessError(
            f"--temperature 0 is greedy decoding: the {method.options.group_size} samples of a prompt would be "
            f"identical, every advantage 0, and method '{cfg.method}' would learn nothing; sample above 0"
        )
    if cfg.fsdp:
        refuse_unsharded_launch(cfg)
    if choice is not None and choice[1]:
        from dail_harness.backends.auto import announce

        announce("train", *choice)
    loss_name = cfg.loss or method.default_loss
    settings = {
        **cfg.settings(),
        "loss": loss_name,
        "method_options": as_settings(method.options),
        "loss_options": as_settings(loss.options),
    }
    return method, loss, loss_name, settings


def refuse_unsupported_launch() -> None:
    """Before anything runs (STaR's generation included): accelerate's FSDP (ours is --fsdp), and srun alone, whose
    tasks training would not see as one run (accelerate reads torchrun's variables)."""
    from dail_harness.scale.launch import current

    refuse_accelerate_fsdp()
    launch = current()
    if launch.launcher == "srun":
        raise HarnessError(
            f"train under srun alone ({launch.world} tasks): training reads torchrun's variables, so each task "
            "would train on its own into one --out; start one torchrun per node under srun (docs/SCALE.md, (d))"
        )


def refuse_unsharded_launch(cfg: TrainConfig) -> None:
    """--fsdp needs processes to shard over, and an optimizer that works on shards."""
    from dail_harness.scale.launch import current

    if current().launcher == "none":
        raise HarnessError(
            "--fsdp shards the model over a launch's processes: start the run with torchrun --nproc_per_node N or "
            "accelerate launch (docs/SCALE.md)"
        )
    if cfg.optimizer != "adamw":
        raise HarnessError(
            f"--optimizer {cfg.optimizer} works on whole tensors, not FSDP shards: use --optimizer adamw"
        )


def plan_text(
    cfg: TrainConfig, given: dict | None, wheres: dict[str, Where] | None, chosen: dict[str, Where] | None
) -> str:
    """`train --dry-run`: the run's steps and what one step takes, and every rank's device and sampling engine,
    checked as the run would check them, without loading a model."""
    import math
    from pathlib import Path

    from dail_harness import registry
    from dail_harness.scale.launch import colocated_engine_args, current
    from dail_harness.scale.plan import format_training_plan
    from dail_harness.training.online import check_prompts_per_step

    method, _, loss_name, _ = prepare(cfg, given, wheres, chosen)
    if cfg.eval_task or method.source != "file":  # what the run checks before step 1
        registry.get("backends", cfg.backend).check_policy(cfg)
    if not Path(cfg.data).is_file():
        raise HarnessError("no such file", path=cfg.data)
    launch, rows, o = current(), len(method.load_rows(cfg.data)), method.options  # read and checked as the run does
    world = launch.world
    if method.source == "online":
        per_step, unit = int(getattr(o, "prompts_per_step", 1)), "prompts"
        check_prompts_per_step(per_step, rows, world, cfg.data)
        step = f"one optimizer step: {per_step} prompts x {getattr(o, 'group_size', 1)} samples, "
        step += f"at most {math.ceil(per_step / world)} prompt(s) per process"
    else:
        per_step, unit = cfg.batch_size * cfg.grad_accum * world, "examples"
        step = f"one optimizer step: {per_step} sequences (batch {cfg.batch_size} x grad-accum {cfg.grad_accum} x "
        step += f"{world} processes)"
    every = "per iteration" if method.source == "generate" else "in all"
    epochs = cfg.epochs or 1  # resolved from the method's default by now
    steps = (
        f"{cfg.max_steps} step{'s' * (cfg.max_steps != 1)} (--max-steps)"
        if cfg.max_steps
        else f"about {epochs * math.ceil(rows / per_step)} steps ({epochs} epoch(s) of {rows} {unit})"
    )
    head = f"train ({cfg.method}, loss {loss_name}): {rows:,} data rows; {steps} {every}"
    if method.source == "file":
        engine = f"sampling only for --eval-task, {cfg.backend} on the policy"
    elif cfg.backend == "vllm":
        colocated = colocated_engine_args(world, cfg.tensor_parallel_size)
        engine = "sampling: one vLLM engine in each process" + (
            " on its device (external launcher)" if colocated else ""
        )
    else:
        engine = f"sampling: {cfg.backend} on the policy in each process"
    return format_training_plan(head, step, launch, engine, cfg.device, sharded=cfg.fsdp)


def data_rows(path: str) -> int:
    """The rows of a data file in any format the run reads (0 if it cannot be read: an estimate's input)."""
    from dail_harness.files import iter_rows

    try:
        return sum(1 for _ in iter_rows(path))
    except (OSError, ValueError, HarnessError):
        return 0


def refuse_unused(cfg: TrainConfig, method, chosen: dict[str, Where]) -> None:
    """A setting the user chose that method `cfg.method` would not use, naming who would: an error for a flag, a
    warning for a config key (see `options.refuse_unused`)."""
    from dail_harness import registry

    if not chosen:
        return
    samplers = ", ".join(e.name for e in registry.entries("methods") if getattr(e.obj, "source", "file") != "file")
    refuse(cfg.unused(method.source, samplers, method.uses_templates), chosen, f" (method '{cfg.method}')")


def auto_backend(cfg: TrainConfig, method, chosen: dict[str, Where]) -> tuple[str, str]:
    """`--backend auto`: (back-end, reason to print or ""): the back-end a resumed run started with; hf for a method
    that trains on a file (its evaluations are small next to the training); else by the tokens the method will
    sample (backends/auto.py)."""
    from pathlib import Path

    from dail_harness import registry
    from dail_harness.backends.auto import choose_backend
    from dail_harness.worklog import SettingsRecord

    record = SettingsRecord(Path(cfg.out) / "train_config.json", cfg.out, "training run")
    started = record.read().get("backend") if record.exists() else None
    if started in ("hf", "vllm"):
        return started, "" if method.source == "file" else "the back-end this run started with"
    if method.source == "file":
        return "hf", ""
    try:
        registry.get("backends", "vllm").check_policy(cfg)
        why_not = None
    except (HarnessError, KeyError) as e:
        why_not = str(e)
    return choose_backend(sampled_tokens(cfg, method), cfg.model, hf_flags(chosen), why_not)


def hf_flags(chosen: dict[str, Where]) -> list[str]:
    return ["--sample-batch-size"] if "sample_batch_size" in chosen else []


def sampled_tokens(cfg: TrainConfig, method) -> int:
    """An upper bound of the tokens a run's method samples: online, steps x prompts x samples per prompt; STaR-like
    generation, problems x iterations x two passes (direct and hinted)."""
    import math

    o, rows = method.options, data_rows(cfg.data)
    if method.source == "online":
        per_step = getattr(o, "prompts_per_step", 1)
        steps = cfg.max_steps or int((cfg.epochs or 1) * math.ceil(rows / per_step))
        return steps * per_step * getattr(o, "group_size", 1) * cfg.max_tokens
    return rows * getattr(o, "iterations", 1) * 2 * cfg.max_tokens
