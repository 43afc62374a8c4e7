"""`dail-harness generate`: build D_syn = {(x, r)} from expert data, by direct sampling or mixed rollouts.

Output: one JSONL row per (problem, sample): problem_id, problem, solution, answer, waypoints, trace,
mode, tau, draft_tokens, student_tokens, privileged_tokens, acceptance_rate, num_tokens,
finish_reason and the sampling settings. Rows are appended as they finish (resumable; a partial last
line is cut on the next run); the settings live beside the file (`OUT.settings.json`) and a rerun
with different settings is refused.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from dail_harness.dsyn.prompts import (Templates, extract_waypoints, final_answer_of, fit_solution,
                                       privileged_prompt, student_prompt)
from dail_harness.errors import HarnessError
from dail_harness.dsyn.expert_data import ExpertRecord, load_expert_data
from dail_harness.files import append_jsonl, atomic_write_json, iter_jsonl, repair_partial_tail


@dataclass
class GenerateConfig:
    """Settings of one `dail-harness generate` run."""

    data: str
    """Expert data file (problem_id, problem, solution[, answer])."""
    model: str
    out: str
    """D_syn JSONL to write (appended; resumable)."""
    mode: str = "mixed"
    """`direct`: r ~ M_PS; `mixed`: mixed-policy rollouts."""
    tau: float = 0.8
    draft_tokens: int | None = None
    """1: lockstep (student and privileged rows share each forward); K > 1: drafting; 0: adaptive K.
    Default: 1 on the hf engine; 8 on vLLM, where each verify re-reads the whole privileged context, so long
    drafts pay (measured: benchmarks/RESULTS.md)."""
    samples_per_problem: int = 1
    max_tokens: int = 2048
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    backend: str = "hf"
    """hf: the batched PyTorch engine (mixed) or hf sampling (direct); vllm: vLLM for either mode."""
    thinking: bool = False
    """Thinking model: enable_thinking in the chat template; `</think>` suppressed in mixed rollouts."""
    templates: str | None = None
    """JSON file overriding the student / privileged / negative templates."""
    max_prompt_tokens: int | None = None
    """Privileged prompts longer than this drop trailing `Solution N:` blocks (default: context - max_tokens)."""
    batch_size: int = 16
    static_cache: bool | None = None
    """Mixed mode, hf engine: fixed-shape static KV caches (default: on for CUDA)."""
    compile: bool = False
    """With static caches on CUDA: torch.compile the forward (CUDA graphs)."""
    limit: int | None = None
    shard: tuple[int, int] | None = None
    device: str | None = None
    dtype: str | None = None
    progress: bool = True
    backend_options: dict = field(default_factory=dict)

    def settings(self) -> dict:
        s = asdict(self)
        for k in ("out", "progress", "batch_size", "device", "backend_options", "limit", "static_cache", "compile"):
            s.pop(k)
        s["shard"] = list(self.shard) if self.shard else None
        return s


def settings_path(out: str | Path) -> Path:
    return Path(str(out) + ".settings.json")


def _check_settings(cfg: GenerateConfig) -> None:
    import json

    from dail_harness.eval.store import settings_changes

    path = settings_path(cfg.out)
    if path.exists():
        details = settings_changes(json.loads(path.read_text()), cfg.settings())
        if details:
            raise HarnessError(f"{cfg.out} was generated with different settings ({details}); use another --out")
        repair_partial_tail(cfg.out)


def _done(out: str | Path) -> set[tuple[str, int]]:
    if not Path(out).exists():
        return set()
    return {(str(r["problem_id"]), int(r["sample_index"])) for _, r in iter_jsonl(out, allow_partial_tail=True)}


def waypoints_for(rec: ExpertRecord) -> tuple[list[str], str | None]:
    """s~ of a record: numbers only for answer-verifiable problems (the paper), all categories otherwise."""
    answer = final_answer_of(rec.solution, rec.answer)
    return extract_waypoints(rec.solution, answer=answer, numbers_only=rec.answer is not None), answer


def run_generate(cfg: GenerateConfig) -> dict:
    if cfg.mode not in ("direct", "mixed"):
        raise HarnessError(f"--mode must be 'direct' or 'mixed', got '{cfg.mode}'")
    if cfg.draft_tokens is None:
        cfg = replace(cfg, draft_tokens=1 if cfg.backend == "hf" else 8)
    if cfg.draft_tokens < 0:
        raise HarnessError(f"--draft-tokens must be >= 0 (0: adaptive), got {cfg.draft_tokens}")
    records = load_expert_data(cfg.data)
    if cfg.limit:
        records = records[:cfg.limit]
    if cfg.shard:
        records = records[cfg.shard[0]::cfg.shard[1]]
    templates = Templates.from_file(cfg.templates) if cfg.templates else Templates()
    _check_settings(cfg)
    done = _done(cfg.out)
    todo = [(r, i) for r in records for i in range(cfg.samples_per_problem) if (r.problem_id, i) not in done]
    stats = {"rows": len(done), "new_rows": 0, "tokens": 0, "student_tokens": 0, "privileged_tokens": 0}
    if not todo:
        return stats
    from dail_harness.models.loading import eos_token_ids, load_causal_lm, load_tokenizer, resolve_model
    from dail_harness.backends.prompting import render_prompt_ids
    from tqdm import tqdm

    path = resolve_model(cfg.model)
    tokenizer = load_tokenizer(path)
    kwargs = {"enable_thinking": cfg.thinking}
    render = lambda text: render_prompt_ids(tokenizer, text, chat_template_kwargs=kwargs)  # noqa: E731
    model = None
    if cfg.backend == "hf":
        model = load_causal_lm(path, device=cfg.device, dtype=cfg.dtype)
    if model is not None:
        context = getattr(model.config, "max_position_embeddings", None) or 32768
    else:
        from transformers import AutoConfig

        context = getattr(AutoConfig.from_pretrained(path), "max_position_embeddings", None) or 32768
    limit = cfg.max_prompt_tokens or max(256, context - cfg.max_tokens)
    prompts = {}
    for rec in {r.problem_id: r for r, _ in todo}.values():
        solution = fit_solution(rec.solution, lambda s: len(render(privileged_prompt(rec.problem, s, templates))) <= limit)
        prompts[rec.problem_id] = (render(student_prompt(rec.problem, templates)),
                                   render(privileged_prompt(rec.problem, solution, templates)), solution)
    settings_path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(settings_path(cfg.out), cfg.settings())
    by_id = {r.problem_id: r for r in records}
    bar = tqdm(total=len(todo), desc=f"generate ({cfg.mode})", unit="trace", disable=not cfg.progress,
               dynamic_ncols=True)
    start = time.monotonic()

    def store(results):
        rows = []
        for pid, index, ids, n_student, n_priv, reason in results:
            rec = by_id[pid]
            waypoints, answer = waypoints_for(rec)
            trace = tokenizer.decode([t for t in ids if t not in eos_ids], skip_special_tokens=False)
            rows.append({
                "problem_id": pid, "sample_index": index, "problem": rec.problem, "solution": rec.solution,
                "privileged_solution": prompts[pid][2], "answer": answer, "waypoints": waypoints, "trace": trace,
                "mode": cfg.mode, "tau": cfg.tau if cfg.mode == "mixed" else None,
                "draft_tokens": cfg.draft_tokens if cfg.mode == "mixed" else None,
                "student_tokens": n_student, "privileged_tokens": n_priv,
                "acceptance_rate": n_student / len(ids) if ids and cfg.mode == "mixed" else None,
                "num_tokens": len(ids), "finish_reason": reason, "temperature": cfg.temperature,
                "top_p": cfg.top_p, "seed": cfg.seed, "model": cfg.model,
            })
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

    if model is not None:
        gen_config = model.generation_config
    else:
        from transformers import GenerationConfig

        try:
            gen_config = GenerationConfig.from_pretrained(path)
        except OSError:
            gen_config = None
    eos_ids = set(eos_token_ids(tokenizer, gen_config))
    if cfg.mode == "mixed":
        from dail_harness.rollout.hf import MixedPolicyEngine, RolloutConfig, RolloutRequest
        from dail_harness.eval.thinking import think_end_id

        if cfg.backend == "hf":
            engine = MixedPolicyEngine(model, tokenizer, sorted(eos_ids))
        else:
            from dail_harness import registry
            from dail_harness.rollout.vllm import VLLMMixedRollout

            vllm_backend = registry.get("backends", cfg.backend)(cfg.model, seed=cfg.seed, **cfg.backend_options)
            engine = VLLMMixedRollout(vllm_backend.llm, sorted(eos_ids))
        rcfg = RolloutConfig(tau=cfg.tau, draft_tokens=cfg.draft_tokens, max_tokens=cfg.max_tokens,
                             temperature=cfg.temperature, top_p=cfg.top_p, seed=cfg.seed, batch_size=cfg.batch_size,
                             static_cache=(str(getattr(model, "device", "cpu")).startswith("cuda")
                                           if cfg.static_cache is None else cfg.static_cache),
                             compile=cfg.compile,
                             suppress_token_ids=[think_end_id(tokenizer)] if cfg.thinking else [])
        requests = [RolloutRequest(f"{r.problem_id}#{i}", prompts[r.problem_id][0], prompts[r.problem_id][1])
                    for r, i in todo]
        for batch in engine.run(requests, rcfg):
            store([(res.row_id.rsplit("#", 1)[0], int(res.row_id.rsplit("#", 1)[1]), res.token_ids,
                    res.student_tokens, res.privileged_tokens, res.finish_reason) for res in batch])
    else:
        from dail_harness import registry
        from dail_harness.backends.base import GenerationRequest
        from dail_harness.sampling import SamplingParams

        backend_cls = registry.get("backends", cfg.backend)
        opts = dict(cfg.backend_options, chat_template_kwargs=kwargs, seed=cfg.seed)
        backend = backend_cls((model, tokenizer), device=cfg.device, batch_size=cfg.batch_size, **opts) \
            if cfg.backend == "hf" else backend_cls(cfg.model, **opts)
        grouped: dict[str, list[int]] = {}
        for r, i in todo:
            grouped.setdefault(r.problem_id, []).append(i)
        requests = [GenerationRequest(pid, privileged_prompt(by_id[pid].problem, prompts[pid][2], templates), idx)
                    for pid, idx in grouped.items()]
        params = SamplingParams(n=cfg.samples_per_problem, temperature=cfg.temperature, top_p=cfg.top_p,
                                presence_penalty=0.0, max_tokens=cfg.max_tokens, seed=cfg.seed)
        for batch in backend.generate(requests, params):
            store([(c.request_id, c.sample_index, c.token_ids, 0, c.num_tokens, c.finish_reason) for c in batch])
    bar.close()
    stats["rows"] += stats["new_rows"]
    stats["acceptance_rate"] = stats["student_tokens"] / stats["tokens"] if stats["tokens"] and cfg.mode == "mixed" else None
    return stats
