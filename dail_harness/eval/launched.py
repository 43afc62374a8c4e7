"""`eval` under torchrun, accelerate launch or srun: each process draws its shard, the last one done merges.

Rank r of W evaluates shard r/W (blocks of --sample-block samples, see scale/shards.py) into
OUT/shards/r-of-W, an ordinary run directory that resumes on its own. When a rank has stored its shard it
checks whether every shard's samples are present; the one that finds them all (the last to finish) writes
OUT/run.json, OUT/samples.jsonl (every sample, in problem order) and OUT/summary.json, so OUT is a plain run
directory for `report`. Until then `report OUT` reports the finished shards and names the missing ones.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from dail_harness.eval.pipeline import EvalConfig, load_tasks, positioned, run_eval, run_settings, summarize_run
from dail_harness.eval.store import GROWABLE, RunStore, sample_id
from dail_harness.files import atomic_write_jsonl
from dail_harness.scale.launch import Launch, refuse_manual_shard
from dail_harness.scale.shards import lacking_per_shard, shard_dir, waiting_message
from dail_harness.settings import settings_changes


def run_launched(cfg: EvalConfig, launch: Launch) -> dict | None:
    """Evaluate this process's shard, then merge if it was the last; the merged summary, or None if shards
    are still running."""
    from dail_harness.models.fingerprint import model_fingerprint

    refuse_manual_shard(cfg.shard, launch)
    tasks = load_tasks(cfg)
    settings = run_settings(cfg, tasks, model_fingerprint(cfg.model))
    RunStore(cfg.out).check(settings)  # another run in OUT is refused before any sampling
    own = replace(
        cfg,
        shard=(launch.rank, launch.world),
        out=str(shard_dir(cfg.out, launch.rank, launch.world)),
        progress=cfg.progress and launch.rank == 0,
    )
    known = {sample_id(r) for r in launched_rows(cfg, settings)}  # drawn by an earlier launch or run into OUT
    run_eval(own, known=known)
    return merge_shards(cfg, launch.world, tasks, settings)


def launched_rows(cfg: EvalConfig, settings: dict) -> list[dict]:
    """Every stored sample of this run: OUT's own (its settings were checked) and those of every shard directory
    under OUT/shards whose settings are this run's, whatever the number of processes that drew them."""
    top = RunStore(cfg.out)
    rows = top.load_samples() if top.exists() else []
    root = Path(cfg.out) / "shards"
    for d in sorted(root.glob("*-of-*")) if root.is_dir() else []:
        store = RunStore(d)
        if not store.exists():
            continue
        theirs = store.read_settings()
        ours = {**settings, "shard": theirs.get("shard"), "sample_block": theirs.get("sample_block")}
        if settings_changes(theirs, ours, GROWABLE) is None:
            rows += store.load_samples()
    return rows


def merge_shards(cfg: EvalConfig, world: int, tasks, settings: dict) -> dict | None:
    """Write OUT as one run when every sample of the run is stored somewhere; else say which shards still owe
    samples. Every stored sample is kept (a smaller --n or --limit reports fewer, as a one-process run does);
    the samples go first and run.json last, so a merge cut short leaves OUT to the shards."""
    top = RunStore(cfg.out)
    by_id = {sample_id(r): r for r in reversed(launched_rows(cfg, settings))}  # one row per sample
    n, order = cfg.num_samples, dict[tuple[str, str], int]()
    absent = []  # (position, sample index) of every sample not stored yet
    for t, b in cfg.conditions():
        for position, task, p in positioned(tasks):
            order.setdefault((task.name, p.id), position)
            absent += [(position, i) for i in range(n) if (task.name, p.id, float(t), b, i) not in by_id]
    lacking = lacking_per_shard(absent, world, cfg.sample_block, len(order))
    if lacking:
        print(waiting_message(f"eval {Path(cfg.out)}", lacking, world), file=sys.stderr)
        return None
    merged = sorted(by_id.values(), key=lambda r: _row_order(r, order))
    atomic_write_jsonl(top.samples_path, merged)
    top.create(settings)
    summary = summarize_run(cfg, tasks, merged, settings)
    summary["shards_merged"] = world
    summary["provenance"] = top.finish()
    top.write_summary(summary)
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
