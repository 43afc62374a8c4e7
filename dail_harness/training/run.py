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
from dail_harness.training.engine import FileSource, Trainer, resolve
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
    method, loss = resolve(cfg, given, wheres)
    choice = auto_backend(cfg, method, chosen or {}) if cfg.backend == AUTO else None
    if choice is not None:
        cfg.backend = choice[0]
    refuse_unused(cfg, method.source, chosen or {})
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


def refuse_unused(cfg: TrainConfig, source: str, chosen: dict[str, Where]) -> None:
    """A setting the user chose that method `cfg.method` would not use, naming who would: an error for a flag, a
    warning for a config key (see `options.refuse_unused`)."""
    from dail_harness import registry

    if not chosen:
        return
    samplers = ", ".join(e.name for e in registry.entries("methods") if getattr(e.obj, "source", "file") != "file")
    refuse(cfg.unused(source, samplers), chosen, f" (method '{cfg.method}')")


def auto_backend(cfg: TrainConfig, method, chosen: dict[str, Where]) -> tuple[str, str]:
    """`--backend auto`: (back-end, reason to print or ""): the back-end a resumed run started with; hf for a method
    that trains on a file (its evaluations are small next to the training); else by the tokens the method will
    sample (backends/auto.py)."""
    from pathlib import Path

    from dail_harness import registry
    from dail_harness.backends.auto import choose_backend
    from dail_harness.settings import SettingsRecord

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

    o = method.options
    try:
        with open(cfg.data, encoding="utf-8") as f:
            rows = sum(1 for line in f if line.strip())
    except OSError:
        rows = 0
    if method.source == "online":
        per_step = getattr(o, "prompts_per_step", 1)
        steps = cfg.max_steps or int((cfg.epochs or 1) * math.ceil(rows / per_step))
        return steps * per_step * getattr(o, "group_size", 1) * cfg.max_tokens
    return rows * getattr(o, "iterations", 1) * 2 * cfg.max_tokens
