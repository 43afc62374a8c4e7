"""`dail-harness generate`: build D_syn = {(x, r)} from expert data, by direct sampling or mixed rollouts.

Output: one JSONL row per (problem, sample): problem_id, problem, solution, answer, waypoints, trace,
mode, tau, draft_tokens, student_tokens, privileged_tokens, acceptance_rate, num_tokens,
finish_reason and the sampling settings. Rows are appended as they finish (resumable; a partial last
line is cut on the next run); the settings live beside the file (`OUT.settings.json`) and a rerun
with different settings is refused. The sampling back-end and the rollout engine are looked up by
the `--backend` name (`dail-harness list backends`, `list rollouts`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dail_harness import registry
from dail_harness.dsyn.expert_data import ExpertRecord, load_expert_data
from dail_harness.dsyn.prompts import (
    Templates,
    extract_waypoints,
    final_answer_of,
    fit_solution,
    privileged_prompt,
    student_prompt,
)
from dail_harness.files import append_jsonl, iter_jsonl, repair_partial_tail
from dail_harness.options import as_settings, on_off, option, parse_shard
from dail_harness.settings import SettingsRecord

ROLLOUT, SAMPLING, ENGINE, RUN = "Mixed rollouts", "Sampling", "Back-end", "Run"


@dataclass(kw_only=True)
class GenerateConfig:
    """Settings of one `dail-harness generate` run (the CLI's flags are these fields)."""

    data: str = option(
        help="Expert data: JSONL/JSON/CSV/Parquet with problem_id, problem, solution[, answer].", panel=RUN
    )
    model: str = option(
        help="The student (and, with the expert solution in context, the privileged student).", panel=RUN
    )
    out: str = option(help="D_syn JSONL to write; rerunning resumes.", panel=RUN)
    mode: str = option(
        "mixed",
        choices=("direct", "mixed"),
        help="direct: sample from the privileged student; mixed: mixed-policy rollouts.",
        panel=ROLLOUT,
    )
    tau: float = option(
        0.8,
        ge=0,
        help="Keep a student token when M_PS(token) >= tau (0: pure student; > 1: pure privileged student).",
        panel=ROLLOUT,
    )
    draft_tokens: int | None = option(
        None,
        ge=0,
        help="1: token by token, student and privileged rows sharing each "
        "forward pass (the hf default); K > 1: the student drafts K tokens per verify "
        "pass (8: the vllm default); 0: adaptive K.",
        panel=ROLLOUT,
    )
    samples_per_problem: int = option(1, ge=1, help="Traces per problem.", panel=SAMPLING)
    max_tokens: int = option(2048, ge=1, help="Maximum trace tokens.", panel=SAMPLING)
    temperature: float = option(1.0, ge=0, help="Sampling temperature (both distributions); 0: greedy.", panel=SAMPLING)
    top_p: float = option(1.0, gt=0, le=1, help="Nucleus sampling mass.", panel=SAMPLING)
    seed: int = option(0, help="Traces are keyed by (seed, problem, sample index).", panel=SAMPLING)
    backend: str = option("hf", help="Sampling back-end and rollout engine (hf or vllm).", panel=ENGINE)
    thinking: bool = option(
        False,
        parse=on_off,
        flag="--thinking",
        metavar="on|off",
        help="on: thinking model (enable_thinking; </think> suppressed in rollouts).",
        panel=RUN,
    )
    templates: str | None = option(None, help="JSON with student/privileged/negative templates.", panel=RUN)
    max_prompt_tokens: int | None = option(
        None,
        ge=1,
        help="Privileged prompts longer than this drop trailing `Solution N:` blocks (default: context - max tokens).",
        panel=RUN,
    )
    batch_size: int = option(16, ge=1, help="Rollouts per batch.", panel=ENGINE)
    static_cache: bool | None = option(
        None,
        flag="--static-cache/--dynamic-cache",
        help="Fixed-shape KV caches for the hf rollout engine (default: static on CUDA).",
        panel=ENGINE,
    )
    compile: bool = option(False, help="With static caches on CUDA: compile the forward (CUDA graphs).", panel=ENGINE)
    limit: int | None = option(None, ge=1, help="Only the first L problems.", panel=RUN)
    shard: tuple[int, int] | None = option(
        None, parse=parse_shard, metavar="i/N", help="Only problems with index % N == i.", panel=RUN
    )
    device: str | None = option(None, help="cpu, cuda, cuda:1 ... (default: cuda if available).", panel=ENGINE)
    dtype: str | None = option(None, help="float32, bfloat16 ... (default: bf16 on GPU, fp32 on CPU).", panel=ENGINE)
    progress: bool = option(True, help="Show a progress bar.", panel=RUN)

    def settings(self) -> dict:
        """What determines the traces (a resume must match)."""
        return as_settings(
            self, exclude=("out", "progress", "batch_size", "device", "limit", "static_cache", "compile")
        )


def settings_path(out: str | Path) -> Path:
    return Path(str(out) + ".settings.json")


def _done(out: str | Path) -> set[tuple[str, int]]:
    if not Path(out).exists():
        return set()
    return {(str(r["problem_id"]), int(r["sample_index"])) for _, r in iter_jsonl(out, allow_partial_tail=True)}


def waypoints_for(rec: ExpertRecord) -> tuple[list[str], str | None]:
    """s~ of a record: numbers only for answer-verifiable problems (the paper), all categories otherwise."""
    answer = final_answer_of(rec.solution, rec.answer)
    return extract_waypoints(rec.solution, answer=answer, numbers_only=rec.answer is not None), answer


def run_generate(cfg: GenerateConfig) -> dict:
    backend_cls = registry.get("backends", cfg.backend)
    engine_cls = registry.get("rollouts", cfg.backend) if cfg.mode == "mixed" else None
    if engine_cls is not None and cfg.draft_tokens is None:
        cfg.draft_tokens = engine_cls.default_draft_tokens
    records = load_expert_data(cfg.data)
    if cfg.limit:
        records = records[: cfg.limit]
    if cfg.shard:
        records = records[cfg.shard[0] :: cfg.shard[1]]
    templates = Templates.from_file(cfg.templates) if cfg.templates else Templates()
    record = SettingsRecord(settings_path(cfg.out), cfg.out, "D_syn file")
    if record.check(cfg.settings()):
        repair_partial_tail(cfg.out)
    done = _done(cfg.out)
    todo = [(r, i) for r in records for i in range(cfg.samples_per_problem) if (r.problem_id, i) not in done]
    stats: dict[str, Any] = {"rows": len(done), "new_rows": 0, "tokens": 0, "student_tokens": 0, "privileged_tokens": 0}
    if not todo:
        return stats
    from tqdm import tqdm

    from dail_harness.backends.base import GenerationRequest
    from dail_harness.backends.prompting import render_prompt_ids
    from dail_harness.rollout.base import RolloutConfig, RolloutRequest
    from dail_harness.sampling import SamplingParams

    kwargs = {"enable_thinking": cfg.thinking}
    backend = backend_cls(
        cfg.model,
        device=cfg.device,
        dtype=cfg.dtype,
        batch_size=cfg.batch_size,
        chat_template_kwargs=kwargs,
        seed=cfg.seed,
    )
    tokenizer = backend.tokenizer

    def render(text: str) -> list[int]:
        return render_prompt_ids(tokenizer, text, chat_template_kwargs=kwargs)

    limit = cfg.max_prompt_tokens or max(256, backend.context_length - cfg.max_tokens)
    prompts = {}
    for rec in {r.problem_id: r for r, _ in todo}.values():
        solution = fit_solution(
            rec.solution, lambda s, rec=rec: len(render(privileged_prompt(rec.problem, s, templates))) <= limit
        )
        prompts[rec.problem_id] = (
            render(student_prompt(rec.problem, templates)),
            render(privileged_prompt(rec.problem, solution, templates)),
            solution,
        )
    record.write(cfg.settings())
    by_id = {r.problem_id: r for r in records}
    eos_ids = set(backend.eos_ids)
    bar = tqdm(
        total=len(todo), desc=f"generate ({cfg.mode})", unit="trace", disable=not cfg.progress, dynamic_ncols=True
    )
    start = time.monotonic()

    def store(results):
        rows = []
        for pid, index, ids, n_student, n_priv, reason in results:
            rec = by_id[pid]
            waypoints, answer = waypoints_for(rec)
            trace = tokenizer.decode([t for t in ids if t not in eos_ids], skip_special_tokens=False)
            rows.append(
                {
                    "problem_id": pid,
                    "sample_index": index,
                    "problem": rec.problem,
                    "solution": rec.solution,
                    "privileged_solution": prompts[pid][2],
                    "answer": answer,
                    "waypoints": waypoints,
                    "trace": trace,
                    "mode": cfg.mode,
                    "tau": cfg.tau if cfg.mode == "mixed" else None,
                    "draft_tokens": cfg.draft_tokens if cfg.mode == "mixed" else None,
                    "student_tokens": n_student,
                    "privileged_tokens": n_priv,
                    "acceptance_rate": n_student / len(ids) if ids and cfg.mode == "mixed" else None,
                    "num_tokens": len(ids),
                    "finish_reason": reason,
                    "temperature": cfg.temperature,
                    "top_p": cfg.top_p,
                    "seed": cfg.seed,
                    "model": cfg.model,
                }
            )
            stats["tokens"] += len(ids)
            stats["student_tokens"] += n_student
            stats["privileged_tokens"] += n_priv
        append_jsonl(cfg.out, rows)
        stats["new_rows"] += len(rows)
        bar.update(len(rows))
        elapsed = max(time.monotonic() - start, 1e-9)
        post = {"tok_s": f"{stats['tokens'] / elapsed:.0f}"}
        if cfg.mode == "mixed" and stats["tokens"]:
            post["accept"] = f"{stats['student_tokens'] / stats['tokens']:.2f}"
        bar.set_postfix(**post)

    with backend:
        if engine_cls is not None:
            from dail_harness.eval.thinking import think_end_id

            engine = engine_cls.from_backend(backend)
            device = str(getattr(getattr(backend, "model", None), "device", "cpu"))
            rcfg = RolloutConfig(
                tau=cfg.tau,
                draft_tokens=engine_cls.default_draft_tokens if cfg.draft_tokens is None else cfg.draft_tokens,
                max_tokens=cfg.max_tokens,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                seed=cfg.seed,
                batch_size=cfg.batch_size,
                static_cache=device.startswith("cuda") if cfg.static_cache is None else cfg.static_cache,
                compile=cfg.compile,
                suppress_token_ids=[think_end_id(tokenizer)] if cfg.thinking else [],
            )
            requests = [
                RolloutRequest(f"{r.problem_id}#{i}", prompts[r.problem_id][0], prompts[r.problem_id][1])
                for r, i in todo
            ]
            for batch in engine.run(requests, rcfg):
                store(
                    [
                        (
                            res.row_id.rsplit("#", 1)[0],
                            int(res.row_id.rsplit("#", 1)[1]),
                            res.token_ids,
                            res.student_tokens,
                            res.privileged_tokens,
                            res.finish_reason,
                        )
                        for res in batch
                    ]
                )
        else:
            grouped: dict[str, list[int]] = {}
            for r, i in todo:
                grouped.setdefault(r.problem_id, []).append(i)
            gen_requests = [
                GenerationRequest(pid, privileged_prompt(by_id[pid].problem, prompts[pid][2], templates), idx)
                for pid, idx in grouped.items()
            ]
            params = SamplingParams(
                n=cfg.samples_per_problem,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                presence_penalty=0.0,
                max_tokens=cfg.max_tokens,
                seed=cfg.seed,
            )
            for completions in backend.generate(gen_requests, params):
                store(
                    [(c.request_id, c.sample_index, c.token_ids, 0, c.num_tokens, c.finish_reason) for c in completions]
                )
    bar.close()
    stats["rows"] += stats["new_rows"]
    stats["acceptance_rate"] = (
        stats["student_tokens"] / stats["tokens"] if stats["tokens"] and cfg.mode == "mixed" else None
    )
    return stats
