"""`eval` under torchrun, accelerate launch or srun: each process draws its shard, the last one done merges.

Rank r of W evaluates shard r/W (blocks of --sample-block samples, see scale/plan.py) into
OUT/shards/r-of-W, an ordinary run directory that resumes on its own. When a rank has stored its shard it
checks whether every shard's samples are present; the one that finds them all (the last to finish) writes
OUT/run.json, OUT/samples.jsonl (every sample, in problem order) and OUT/summary.json, so OUT is a plain run
directory for `report`. Until then `report OUT` reports the finished shards and names the missing ones.
"""

from __future__ import annotations

from pathlib import Path

from dail_harness.eval.pipeline import EvalConfig, load_tasks, positioned, run_eval, run_settings, summarize_run
from dail_harness.eval.store import RunStore, sample_id
from dail_harness.scale.launch import Launch, pin_engine, refuse_manual_shard
from dail_harness.scale.merge import Part, complete, own_shard, publish, stored_rows
from dail_harness.scale.plan import shard_dir
from dail_harness.worklog import Job


def run_launched(cfg: EvalConfig, launch: Launch) -> dict | None:
    """Evaluate this process's shard, then merge if it was the last; the merged summary, or None if shards
    are still running."""
    from dail_harness.models.loading import model_fingerprint

    refuse_manual_shard(cfg.shard, launch)
    cfg.device = pin_engine(launch, cfg.tensor_parallel_size, cfg.backend, cfg.device)
    tasks = load_tasks(cfg)
    top = RunStore(cfg.out).job(run_settings(cfg, tasks, model_fingerprint(cfg.model)))
    own = own_shard(cfg, launch, top, shard_dir)
    known = {sample_id(r) for r in launched_rows(cfg, top)}  # drawn by an earlier launch or run into OUT
    run_eval(own, known=known)
    return merge_shards(cfg, launch.world, tasks, top)


def shard_parts(out: str | Path) -> list[Part]:
    """Every shard directory under OUT/shards (of any number of processes), as a settings record and a log."""
    root = Path(out) / "shards"
    stores = [RunStore(d) for d in sorted(root.glob("*-of-*"))] if root.is_dir() else []
    return [(store.record, store.samples) for store in stores]


def launched_rows(cfg: EvalConfig, top: Job) -> list[dict]:
    """Every stored sample of this run: OUT's own and those of every shard directory with this run's settings."""
    return stored_rows(top, shard_parts(cfg.out))


def merge_shards(cfg: EvalConfig, world: int, tasks, top: Job) -> dict | None:
    """Write OUT as one run when every sample of the run is stored somewhere; else say which shards still owe
    samples. Every stored sample is kept (a smaller --n or --limit reports fewer, as a one-process run does)."""
    order = {(task.name, p.id): position for position, task, p in positioned(tasks)}
    expected = [
        (position, i, (task.name, p.id, float(t), b, i))
        for t, b in cfg.conditions()
        for position, task, p in positioned(tasks)
        for i in range(cfg.num_samples)
    ]
    rows = launched_rows(cfg, top)
    by_id = complete(f"eval {Path(cfg.out)}", rows, sample_id, expected, world, cfg.sample_block, len(order))
    if by_id is None:
        return None
    merged = sorted(by_id.values(), key=lambda r: _row_order(r, order))
    publish(top, merged)
    summary = summarize_run(cfg, tasks, merged, top.settings)
    summary["shards_merged"] = world
    summary["provenance"] = top.finish()
    RunStore(cfg.out).write_summary(summary)
    return summary


def _row_order(row: dict, order: dict) -> tuple:
    """Problems in the run's order (others after), then condition and sample index."""
    t = row.get("temperature")
    return (
        order.get((row["task"], str(row["problem_id"])), len(order)),
        row["task"],
        str(row["problem_id"]),
        -1.0 if t is None else float(t),
        row.get("budget") or 0,
        int(row["sample_index"]),
    )
