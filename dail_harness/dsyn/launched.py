"""`generate` and `data hints` under torchrun, accelerate launch or srun: each process draws its shard, the last
one done merges (scale/merge.py).

Rank r of W writes shard r/W (blocks of --sample-block traces, see scale/plan.py) to OUT.shards/r-of-W.jsonl
(with its own .traces.jsonl and .settings.json, resumable on its own). The rank that finds every trace of
every problem stored (the last to finish) writes OUT.traces.jsonl (problem order), OUT.settings.json and the
selection OUT, exactly what one process would have written. `data hints` deals whole problems (a hint is drawn
attempt after attempt until one hides the answer) to OUT.shards/r-of-W.jsonl; the merge writes OUT (one row per
problem, in data order), OUT.explanations.jsonl and OUT.settings.json.
"""

from __future__ import annotations

from typing import Any

from dail_harness.dsyn.generate import (
    GenerateConfig,
    load_records,
    resolve_engine,
    run_generate,
    settings_path,
    trace_log,
)
from dail_harness.dsyn.hints import (
    HintsConfig,
    explanation_log,
    explanations_path,
    generate_hints,
    hint_key,
    hint_log,
    hint_records,
    hints_job,
)
from dail_harness.dsyn.select import write_selection
from dail_harness.files import atomic_write_jsonl
from dail_harness.scale.launch import Launch, pin_engine, refuse_manual_shard
from dail_harness.scale.merge import complete, file_parts, own_shard, publish, stored_rows
from dail_harness.scale.plan import shard_file
from dail_harness.worklog import Job, SettingsRecord


def trace_key(row: dict) -> tuple[str, int]:
    return (str(row["problem_id"]), int(row["sample_index"]))


def run_launched_generate(cfg: GenerateConfig, launch: Launch) -> dict[str, Any]:
    """Draw this process's shard, then merge if it was the last; its stats, with `merged` True when OUT was
    written."""
    refuse_manual_shard(cfg.shard, launch)
    records = load_records(cfg)
    record = SettingsRecord(settings_path(cfg.out), cfg.out, "D_syn file")
    resolve_engine(cfg, len(records), record, announce_choice=launch.rank == 0)  # every rank resolves alike
    cfg.device = pin_engine(launch, 1, cfg.backend, cfg.device)  # on the back-end chosen, not `auto`
    top = Job(record, cfg.settings(), trace_log(cfg.out))
    own = own_shard(cfg, launch, top, shard_file)
    known = {trace_key(r) for r in launched_traces(cfg, top)}
    stats = run_generate(own, known=known)  # traces an earlier launch or run into OUT stored are not drawn again
    merged = merge_generated(cfg, records, launch.world, top)
    stats["merged"] = merged is not None
    if merged is not None:
        stats.update(rows=merged["rows"], selection=merged["selection"])
    return stats


def launched_traces(cfg: GenerateConfig, top: Job) -> list[dict]:
    """Every stored trace of this D_syn: OUT's own and those of every shard file with this run's settings."""
    return stored_rows(top, file_parts(cfg.out, trace_log))


def merge_generated(cfg: GenerateConfig, records, world: int, top: Job) -> dict | None:
    """Write OUT's traces and selection when every trace of the run is stored somewhere; else say which shards
    still owe traces. Every stored trace is kept; the selection takes this run's problems (as a one-process run
    does)."""
    expected = [(p, i, (r.problem_id, i)) for p, r in enumerate(records) for i in range(cfg.n)]
    rows = launched_traces(cfg, top)
    by_key = complete(f"generate {cfg.out}", rows, trace_key, expected, world, cfg.sample_block, len(records))
    if by_key is None:
        return None
    position = {r.problem_id: p for p, r in enumerate(records)}
    last = len(position)  # traces of problems past a smaller --limit go after the run's own
    publish(top, sorted(by_key.values(), key=lambda r: (position.get(trace_key(r)[0], last), *trace_key(r))))
    top.finish()
    selection = write_selection(cfg.out, str(cfg.select), cfg.select_by, cfg.seed, set(position))
    return {"rows": len(by_key), "selection": selection}


def run_launched_hints(cfg: HintsConfig, launch: Launch) -> dict[str, Any]:
    """Draw the hints of this process's problems, then merge if it was the last; its counts, with `merged`."""
    refuse_manual_shard(cfg.shard, launch)
    records, _ = hint_records(cfg)
    cfg.device = pin_engine(launch, 1, cfg.backend, cfg.device)
    top = hints_job(cfg)
    own = own_shard(cfg, launch, top, shard_file)
    known = {hint_key(r) for r in stored_rows(top, file_parts(cfg.out, hint_log))}
    stats = generate_hints(own, known=known)
    merged = merge_hints(cfg, records, launch.world, top)
    stats["merged"] = merged is not None
    if merged is not None:  # the counts of the whole file, not of this rank's shard
        stats.update(problems=len(merged), new=len(merged), without_hint=sum(r["hint"] is None for r in merged))
        stats["rejected"] = sum(int(r.get("rejected", 0)) for r in merged)
    return stats


def merge_hints(cfg: HintsConfig, records, world: int, top: Job) -> list[dict] | None:
    """Write OUT (one row per problem, data order) and its explanations when every problem has its row somewhere;
    else say which shards still owe problems."""
    expected = [(p, 0, r.problem_id) for p, r in enumerate(records)]
    rows = stored_rows(top, file_parts(cfg.out, hint_log))
    by_id = complete(f"data hints {cfg.out}", rows, hint_key, expected, world, None, len(records))
    if by_id is None:
        return None
    position = {r.problem_id: p for p, r in enumerate(records)}
    explained = Job(top.record, top.settings, explanation_log(cfg.out))
    steps: dict[tuple[str, int], dict] = {}
    for r in stored_rows(explained, file_parts(cfg.out, explanation_log)):
        steps.setdefault((hint_key(r), int(r["attempt"])), r)  # the first stored wins, as for every merged row
    order = sorted(steps, key=lambda k: (position.get(k[0], len(position)), k[0], k[1]))
    atomic_write_jsonl(explanations_path(cfg.out), [steps[k] for k in order])
    merged = sorted(by_id.values(), key=lambda r: (position.get(hint_key(r), len(position)), hint_key(r)))
    publish(top, merged)
    top.finish()
    return merged
