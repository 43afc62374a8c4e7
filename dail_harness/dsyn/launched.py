"""`generate` under torchrun, accelerate launch or srun: each process draws its shard, the last one done merges.

Rank r of W writes shard r/W (blocks of --sample-block traces, see scale/shards.py) to OUT.shards/r-of-W.jsonl
(with its own .traces.jsonl and .settings.json, resumable on its own). The rank that finds every trace of
every problem stored (the last to finish) writes OUT.traces.jsonl (problem order), OUT.settings.json and the
selection OUT, exactly what one process would have written.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Any

from dail_harness.dsyn.generate import (
    GenerateConfig,
    load_records,
    resolve_engine,
    run_generate,
    settings_path,
    trace_log,
)
from dail_harness.dsyn.select import traces_path, write_selection
from dail_harness.errors import HarnessError
from dail_harness.files import atomic_write_jsonl
from dail_harness.scale.launch import Launch
from dail_harness.scale.shards import lacking_per_shard, shard_file, waiting_message
from dail_harness.settings import SettingsRecord, settings_changes
from dail_harness.worklog import resume


def run_launched_generate(cfg: GenerateConfig, launch: Launch) -> dict[str, Any]:
    """Draw this process's shard, then merge if it was the last; its stats, with `merged` True when OUT was
    written."""
    if cfg.shard is not None:
        raise HarnessError(
            f"--shard {cfg.shard[0]}/{cfg.shard[1]} under a launcher of {launch.world} processes: each process "
            "would draw the same shard; leave --shard out (the processes are the shards)"
        )
    records = load_records(cfg)
    top = SettingsRecord(settings_path(cfg.out), cfg.out, "D_syn file")
    resolve_engine(cfg, len(records), top, announce_choice=launch.rank == 0)  # every rank resolves alike
    settings = cfg.settings()
    resume(top, settings, [trace_log(cfg.out)])  # another D_syn in OUT is refused before any sampling
    own = replace(
        cfg,
        shard=(launch.rank, launch.world),
        out=str(shard_file(cfg.out, launch.rank, launch.world)),
        progress=cfg.progress and launch.rank == 0,
    )
    stats = run_generate(own)
    merged = merge_generated(cfg, records, launch.world, settings)
    stats["merged"] = merged is not None
    if merged is not None:
        stats.update(rows=merged["rows"], selection=merged["selection"])
    return stats


def merge_generated(cfg: GenerateConfig, records, world: int, settings: dict) -> dict | None:
    """Write OUT's traces and selection from the W shards when every trace is there; else say what is missing."""
    rows = []
    for i in range(world):
        path = shard_file(cfg.out, i, world)
        shard_record = SettingsRecord(settings_path(path), path, "D_syn file")
        own = {**settings, "shard": [i, world], "sample_block": cfg.sample_block}
        if shard_record.exists() and settings_changes(shard_record.read(), own) is None:
            rows += list(trace_log(path).rows())
    rows += list(trace_log(cfg.out).rows())
    by_key = {
        (str(r["problem_id"]), int(r["sample_index"])): r for r in reversed(rows)
    }  # one row per trace (the first stored wins)
    position = {r.problem_id: p for p, r in enumerate(records)}
    absent = [(p, i) for p, r in enumerate(records) for i in range(cfg.n) if (r.problem_id, i) not in by_key]
    if absent:
        lacking = lacking_per_shard(absent, world, cfg.sample_block, len(records))
        print(waiting_message(f"generate {cfg.out}", lacking, world), file=sys.stderr)
        return None
    top = SettingsRecord(settings_path(cfg.out), cfg.out, "D_syn file")
    top.write(settings)
    merged = sorted(
        (r for (pid, i), r in by_key.items() if pid in position and i < cfg.n),
        key=lambda r: (position[str(r["problem_id"])], int(r["sample_index"])),
    )
    atomic_write_jsonl(traces_path(cfg.out), merged)
    top.finish()
    return {"rows": len(merged), "selection": write_selection(cfg.out, str(cfg.select), cfg.select_by, cfg.seed)}
