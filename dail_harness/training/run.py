"""`train()`: one run of any method, dispatched by where its examples come from (recipes.py): a fixed
file (the offline loop), a generation phase before training (STaR's iterations) or the live policy at every
step (online methods). Kept apart from the engine so the generate-then-train loop can build on the engine
without the engine importing it back."""

from __future__ import annotations

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
    refuse_unused(cfg, method.source, chosen or {})
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
