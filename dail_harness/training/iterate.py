"""Generate-then-train runs (STaR): iterations of "generate with the latest model, train from the base".

Iteration r generates with the model of iteration r - 1 (the base model first) and trains on what it kept, in
`OUT/iter-r` (a normal training run directory): a fresh adapter from the base model (STaR's rule), or, with
`train_from: previous`, from where iteration r - 1 ended. With `steps_growth` G, iteration r trains
int(--max-steps x G^r) steps (STaR's `--exponential_grow`: 40 steps, then 20% more each iteration). Each
process generates its share of the problems into its own file (`generated.P-of-N.jsonl`, appended
in rounds, so a killed run resumes where it stopped); the first process merges them into
`generated.jsonl` (every problem, with its `source`: what the method kept or dropped) and `train.jsonl`
(the kept rows). The last iteration's adapter is copied to OUT.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections import Counter
from pathlib import Path

from dail_harness.errors import HarnessError
from dail_harness.files import atomic_write_json, atomic_write_jsonl, iter_jsonl
from dail_harness.scale.merge import complete
from dail_harness.scale.plan import Shard
from dail_harness.training.config import TrainConfig, keep_evaluation, resume_may_change
from dail_harness.training.losses import TokenLoss
from dail_harness.training.recipes import GenerateMethod
from dail_harness.worklog import Job, SettingsRecord, WorkLog, pending

ROUND = 32  # problems per generation round: a kill loses at most one round
FINAL_FILES = (
    "adapter_config.json",
    "adapter_model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "special_tokens_map.json",
)


def generate_then_train(cfg: TrainConfig, method: GenerateMethod, loss: TokenLoss, settings: dict) -> dict:
    from accelerate import PartialState

    from dail_harness.training.engine import FileSource, Trainer

    if getattr(method.options, "steps_growth", None) is not None and cfg.max_steps is None:
        raise HarnessError("--steps-growth needs --max-steps: the steps of the first iteration, which it grows")
    state = PartialState(cpu=cfg.device == "cpu")
    rank, world = state.process_index, state.num_processes
    out = Path(cfg.out)
    record = SettingsRecord(out / "train_config.json", out, "training run")
    old = record.read() if record.exists() else None
    settings = keep_evaluation(old, {**settings, "processes": world})
    record.check(settings, may_change=resume_may_change(cfg, method, old))
    rows = method.load_rows(cfg.data)
    if state.is_main_process:  # before the first row is generated: a rerun with other settings is refused
        record.write(settings)
    state.wait_for_everyone()
    iterations = int(getattr(method.options, "iterations", 1))
    history, last, total, resumed = [], {}, 0, 0
    for r in range(iterations):
        it_dir = out / f"iter-{r}"
        generator = cfg.model if r == 0 else _generation_model(out / f"iter-{r - 1}", cfg)
        mine = it_dir / f"generated.{rank}-of-{world}.jsonl"
        own = dataclasses.replace(cfg, device=cfg.device or str(state.device))  # each engine on its own device
        _generate(own, method, rows, Shard(rank, world, None, len(rows)), generator, mine, r)
        state.wait_for_everyone()
        counts = _merge(it_dir, world, rows) if state.is_main_process else {}
        state.wait_for_everyone()
        counts = counts or json.loads((it_dir / "generated.json").read_text())
        if not counts["kept"]:
            raise HarnessError(
                f"iter-{r}: the method kept nothing to train on ({counts}); see {it_dir / 'generated.jsonl'}"
            )
        it_cfg = iteration_config(cfg, method, r, iterations)
        trainer = Trainer(it_cfg, method, loss, {**settings, "iteration": r, "max_steps": it_cfg.max_steps})
        try:
            result = trainer.fit(FileSource(method), f"train ({cfg.method} iter-{r} of {iterations})")
        finally:
            trainer.close()
        last = result["last"]
        total += result["steps"]
        resumed += result["resumed_from"]
        history.append({"iteration": r, **counts, "steps": result["steps"], "final_loss": last.get("loss")})
    if state.is_main_process:
        _publish_last(out, iterations, cfg.merge, history)
        record.finish()
    return {
        "steps": total,
        "examples": sum(h["kept"] for h in history),
        "last": last,
        "iterations": history,
        "resumed_from": resumed,
    }


def _publish_last(out: Path, iterations: int, merge: bool, history: list[dict]) -> None:
    """OUT holds the last iteration's adapter (and merged model) and every iteration's counts."""
    last = out / f"iter-{iterations - 1}"
    for name in FINAL_FILES:
        if (last / name).exists():
            shutil.copy2(last / name, out / name)
    if merge:
        shutil.rmtree(out / "merged", ignore_errors=True)
        shutil.copytree(last / "merged", out / "merged")
    atomic_write_jsonl(out / "iterations.jsonl", history)


def iteration_config(cfg: TrainConfig, method: GenerateMethod, r: int, iterations: int) -> TrainConfig:
    """Iteration r's training run: its directory and data, its steps (grown by `steps_growth` as STaR's
    `int(start_steps * grow_steps ** (iter - 1))`), and its start: the base model, or the previous iteration's
    adapter (its model, with every weight trained)."""
    it_dir = Path(cfg.out) / f"iter-{r}"
    changes: dict = dict(
        out=str(it_dir),
        data=str(it_dir / "train.jsonl"),
        merge=cfg.merge or (cfg.backend != "hf" and r < iterations - 1),
    )
    growth = getattr(method.options, "steps_growth", None)
    if growth is not None:
        changes["max_steps"] = max(1, int(int(cfg.max_steps or 1) * growth**r))
    if r > 0 and getattr(method.options, "train_from", "base") == "previous":
        previous = str(Path(cfg.out) / f"iter-{r - 1}")
        changes["init" if cfg.lora_r else "model"] = previous
    return dataclasses.replace(cfg, **changes)


def _generation_model(previous: Path, cfg: TrainConfig) -> str:
    """The last iteration's model: its adapter (hf merges it on load), or its merged copy for vLLM."""
    return str(previous if cfg.backend == "hf" else previous / "merged")


def _generate(
    cfg: TrainConfig, method: GenerateMethod, rows: list[dict], shard: Shard, model: str, path: Path, iteration: int
) -> None:
    """This process's shard of the generation, stored in rounds to `path` (skipping what it holds; the run's
    settings record was checked before the first iteration)."""
    import torch.distributed as dist

    from dail_harness.backends.base import open_backend
    from dail_harness.eval.grading import GradingPool
    from dail_harness.scale.launch import colocated_engine_args
    from dail_harness.training.online import OnlineContext

    job = Job(None, {}, WorkLog(path, lambda r: str(r["problem_id"])))
    done = job.resume()
    todo = [w.item for w in pending(rows, 1, shard, lambda r, _: str(r["problem_id"]) in done)]
    world = dist.get_world_size() if dist.is_initialized() else 1
    if not todo and (cfg.backend != "vllm" or world == 1):
        return  # (a launched vLLM engine is built by every rank together, so a rank with nothing to do joins)
    # the engine's own settings: hf's batch and device, vLLM's tensor parallelism (it runs alone: no policy beside
    # it; under a launcher in this process, on its device: scale/launch.py)
    engine: dict = {"batch_size": cfg.sample_batch_size, "device": cfg.device}
    if cfg.backend == "vllm":
        engine = {"tensor_parallel_size": cfg.tensor_parallel_size, "enforce_eager": cfg.enforce_eager or None}
        engine["colocated"] = colocated_engine_args(world, cfg.tensor_parallel_size)
    with (
        open_backend(
            cfg.backend, model, cfg.seed, chat_template_kwargs={"enable_thinking": cfg.thinking}, **engine
        ) as backend,
        GradingPool(cfg.grade_workers) as pool,
    ):
        ctx = OnlineContext(cfg, backend, pool)
        ctx.step = iteration
        job.run(method.generate(ctx, todo[start : start + ROUND]) for start in range(0, len(todo), ROUND))
    if cfg.backend == "vllm":  # the training that follows needs the device's memory
        from dail_harness.backends.vllm import release_engines

        release_engines()


def _merge(it_dir: Path, world: int, rows: list[dict]) -> dict:
    """All processes' rows in data order (`generated.jsonl`), the kept ones (`train.jsonl`), and the counts. Every
    process has finished its share (a barrier came first), so a problem without a row is an error, not a wait."""
    stored = [
        row
        for p in range(world)
        if (part := it_dir / f"generated.{p}-of-{world}.jsonl").exists()  # none: a rank without problems
        for _, row in iter_jsonl(part, allow_partial_tail=True)
    ]
    expected = [(position, 0, str(r["problem_id"])) for position, r in enumerate(rows)]
    by_id = complete(f"STaR {it_dir}", stored, lambda r: str(r["problem_id"]), expected, world, None, len(rows))
    if by_id is None:
        raise HarnessError(f"{it_dir}: the generation files lack the problems named above; rerun to draw them")
    merged = [by_id[str(r["problem_id"])] for r in rows]
    atomic_write_jsonl(it_dir / "generated.jsonl", merged)
    atomic_write_jsonl(it_dir / "train.jsonl", [r for r in merged if r.get("trace")])
    sources = Counter(r.get("source", "kept" if r.get("trace") else "dropped") for r in merged)
    counts = {"problems": len(merged), "kept": sum(1 for r in merged if r.get("trace")), **dict(sources)}
    atomic_write_json(it_dir / "generated.json", counts)
    return counts
