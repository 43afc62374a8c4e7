"""`generate` under torchrun, accelerate launch or srun: each process draws its shard, the last one done merges.

Rank r of W writes shard r/W (blocks of --sample-block traces, see scale/shards.py) to OUT.shards/r-of-W.jsonl
(with its own .traces.jsonl and .settings.json, resumable on its own). The rank that finds every trace of
every problem stored (the last to finish) writes OUT.traces.jsonl (problem order), OUT.settings.json and the
selection OUT, exactly what one process would have written.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
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
from dail_harness.files import atomic_write_jsonl
from dail_harness.scale.launch import Launch, pin_engine, refuse_manual_shard
from dail_harness.scale.shards import lacking_per_shard, shard_file, waiting_message
from dail_harness.settings import SettingsRecord, settings_changes
from dail_harness.worklog import resume


def run_launched_generate(cfg: GenerateConfig, launch: Launch) -> dict[str, Any]:
    """Draw this process's shard, then merge if it was the last; its stats, with `merged` True when OUT was
    written."""
    refuse_manual_shard(cfg.shard, launch)
    records = load_records(cfg)
    top = SettingsRecord(settings_path(cfg.out), cfg.out, "D_syn file")
    resolve_engine(cfg, len(records), top, announce_choice=launch.rank == 0)  # every rank resolves alike
    cfg.device = pin_engine(launch, 1, cfg.backend, cfg.device)  # on the back-end chosen, not `auto`
    settings = cfg.settings()
    resume(top, settings, [trace_log(cfg.out)])  # another D_syn in OUT is refused before any sampling
    own = replace(
        cfg,
        shard=(launch.rank, launch.world),
        out=str(shard_file(cfg.out, launch.rank, launch.world)),
        progress=cfg.progress and launch.rank == 0,
    )
    known = {(str(r["problem_id"]), int(r["sample_index"])) for r in launched_traces(cfg, settings)}
    stats = run_generate(own, known=known)  # traces an earlier launch or run into OUT stored are not drawn again
    merged = merge_generated(cfg, records, launch.world, settings)
    stats["merged"] = merged is not None
    if merged is not None:
        stats.update(rows=merged["rows"], selection=merged["selection"])
    return stats


def launched_traces(cfg: GenerateConfig, settings: dict) -> list[dict]:
    """Every stored trace of this D_syn: OUT's own (its settings were checked) and those of every shard file under
    OUT.shards whose settings are this run's, whatever the number of processes that drew them."""
    rows = list(trace_log(cfg.out).rows()) if SettingsRecord(settings_path(cfg.out), cfg.out).exists() else []
    root = shard_file(cfg.out, 0, 1).parent
    for settings_file in sorted(root.glob("*-of-*.settings.json")) if root.is_dir() else []:
        path = Path(str(settings_file)[: -len(".settings.json")])
        theirs = SettingsRecord(settings_file, path, "D_syn file").read()
        ours = {**settings, "shard": theirs.get("shard"), "sample_block": theirs.get("sample_block")}
        if settings_changes(theirs, ours) is None:
            rows += list(trace_log(path).rows())
    return rows


def merge_generated(cfg: GenerateConfig, records, world: int, settings: dict) -> dict | None:
    """Write OUT's traces and selection when every trace of the run is stored somewhere; else say which shards
    still owe traces. Every stored trace is kept (a smaller --limit selects from them all, as a one-process run
    does); the traces go first and the settings last, so a merge cut short is redone by a rerun."""
    # one row per trace (the first stored wins)
    by_key = {(str(r["problem_id"]), int(r["sample_index"])): r for r in reversed(launched_traces(cfg, settings))}
    position = {r.problem_id: p for p, r in enumerate(records)}
    absent = [(p, i) for p, r in enumerate(records) for i in range(cfg.n) if (r.problem_id, i) not in by_key]
    if absent:
        lacking = lacking_per_shard(absent, world, cfg.sample_block, len(records))
        print(waiting_message(f"generate {cfg.out}", lacking, world), file=sys.stderr)
        return None
    last = len(position)  # traces of problems past a smaller --limit go after the run's own
    merged = [by_key[k] for k in sorted(by_key, key=lambda k: (position.get(k[0], last), k[0], k[1]))]
    atomic_write_jsonl(traces_path(cfg.out), merged)
    top = SettingsRecord(settings_path(cfg.out), cfg.out, "D_syn file")
    top.write(settings)
    top.finish()
    return {"rows": len(merged), "selection": write_selection(cfg.out, str(cfg.select), cfg.select_by, cfg.seed)}
