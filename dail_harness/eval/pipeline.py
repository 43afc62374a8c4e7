"""The evaluation pipeline: tasks -> prompts -> back-end -> verifier -> store -> metrics.

A run covers one or more conditions: temperatures (`--temperatures`, the paper's sweep) times thinking
budgets (`--budgets`). Resumable per sample: only the (problem, condition, sample index) rows missing
from `samples.jsonl` are generated, and each finished group is graded and appended before the next.
"""

from __future__ import annotations

import time

from dail_harness import registry
from dail_harness.backends.base import GenerationRequest
from dail_harness.errors import HarnessError
from dail_harness.eval.grading import DEFAULT_TIMEOUT_S, GradeJob, GradingPool
from dail_harness.records import Problem
from dail_harness.eval.config import EvalConfig
from dail_harness.eval.metrics import summarize_conditions
from dail_harness.sampling import SamplingParams
from dail_harness.eval.store import RunStore, sample_id
from dail_harness.eval.task import Task, make_task
from dail_harness.eval.thinking import (
    Sampled,
    generate_budgeted,
    plain,
    think_end_id,
)
from dail_harness.verifiers.base import Verdict
from dail_harness.verifiers.simple import simple_correct


def load_tasks(cfg: EvalConfig) -> list[tuple[Task, list[Problem]]]:
    loaded = []
    options = cfg.task_options()
    for name in cfg.task:
        task = make_task(name, **options)
        problems = task.load()
        if cfg.limit is not None:
            problems = problems[:cfg.limit]
        if cfg.shard is not None:
            i, n = cfg.shard
            problems = problems[i::n]
        loaded.append((task, problems))
    if not any(ps for _, ps in loaded):
        raise HarnessError("no problems selected (check --limit and --shard)")
    return loaded


def run_settings(cfg: EvalConfig, tasks: list[tuple[Task, list[Problem]]]) -> dict:
    """The settings that determine the samples; a resume must match them exactly."""
    return {
        "tasks": [t.name for t, _ in tasks],
        "model": cfg.model,
        "backend": cfg.backend,
        "sampling": cfg.params().to_dict(),
        "temperatures": cfg.temperatures,
        "thinking": cfg.thinking,
        "budgets": cfg.budgets,
        "answer_tokens": cfg.answer_tokens if cfg.thinking else None,
        "budget_mode": cfg.budget_mode if cfg.budgets else None,
        "shard": list(cfg.shard) if cfg.shard else None,
        "prompt_templates": {t.name: t.options.get("prompt_template") or t.prompt_template for t, _ in tasks},
        "task_options": {k: str(v) for k, v in sorted(cfg.task_options().items()) if k != "prompt_template"},
        "system_prompt": cfg.system_prompt,
        "chat_template_kwargs": {"enable_thinking": cfg.thinking},
    }


def _sample_row(task: Task, problem: Problem, s: Sampled, verdict: Verdict, params: SamplingParams) -> dict:
    return {
        "task": task.name, "problem_id": problem.id, "sample_index": s.sample_index,
        "temperature": params.temperature, "budget": s.budget,
        "completion": s.text, "extracted": verdict.extracted, "answer_key": verdict.answer_key,
        "correct": verdict.correct, "no_answer": verdict.no_answer, "gold": problem.answer,
        "answer_type": problem.answer_type,
        "num_tokens": s.num_tokens, "thinking_tokens": s.thinking_tokens, "answer_tokens": s.answer_tokens,
        "forced_close": s.forced_close, "prompt_tokens": s.prompt_tokens, "finish_reason": s.finish_reason,
        "simple_correct": simple_correct(s.text, problem.answer),
        "grading_timed_out": verdict.timed_out, "grading_error": verdict.error,
        "top_p": params.top_p, "presence_penalty": params.presence_penalty, "max_tokens": params.max_tokens,
        "seed": params.seed,
    }


def run_eval(cfg: EvalConfig) -> dict:
    """Sample, grade and store what the run directory lacks; return the summary (also summary.json)."""
    tasks = load_tasks(cfg)
    store = RunStore(cfg.out)
    settings = run_settings(cfg, tasks)
    store.check(settings)
    rows = store.load_samples()
    done = {sample_id(r) for r in rows}
    n = cfg.num_samples

    by_request: dict[str, tuple[Task, Problem]] = {}
    work = []  # (temperature, requests, rows missing)
    for temperature in dict.fromkeys(t for t, _ in cfg.conditions()):
        budgets = cfg.budgets or [None]
        requests, missing_rows = [], 0
        for task, problems in tasks:
            for p in problems:
                rid = f"{task.name}/{p.id}"
                by_request[rid] = (task, p)
                lacking = [(i, b) for i in range(n) for b in budgets
                           if (task.name, p.id, temperature, b, i) not in done]
                if lacking:
                    indices = sorted({i for i, _ in lacking})
                    requests.append(GenerationRequest(rid, task.render_prompt(p), indices))
                    missing_rows += len(indices) * len(budgets)
        if requests:
            work.append((temperature, requests, missing_rows))
    if work:
        rows += _generate_and_grade(cfg, work, by_request, store, settings, done)

    selected = {(t.name, p.id) for t, ps in tasks for p in ps}
    rows = [r for r in rows if (r["task"], str(r["problem_id"])) in selected and int(r["sample_index"]) < n]
    metrics = summarize_conditions(rows, cfg.ks, n, cfg.conditions())
    summary = {
        "task": "+".join(t.name for t, _ in tasks),
        "model": cfg.model,
        "backend": cfg.backend,
        "n": n,
        "ks": cfg.ks,
        **{k: v for k, v in metrics.items() if k != "per_problem"},
        "settings": {**settings, "limit": cfg.limit, "ks": cfg.ks},
        "per_problem": metrics["per_problem"],
    }
    store.write_summary(summary)
    return summary


def _generate_and_grade(cfg: EvalConfig, work, by_request, store: RunStore, settings: dict, done: set) -> list[dict]:
    """Generate and grade the missing samples, appending each graded group to the store; returns the new rows."""
    from tqdm import tqdm

    backend_cls = registry.get("backends", cfg.backend)
    backend_options = {**cfg.backend_options(), "chat_template_kwargs": {"enable_thinking": cfg.thinking},
                       "seed": cfg.seed}
    new_rows: list[dict] = []
    # Load the model before creating the run directory: a bad model leaves nothing behind.
    with backend_cls(cfg.model, **backend_options) as backend, \
            GradingPool(cfg.grade_workers, cfg.grade_timeout) as pool:
        store.create(settings)
        try:  # thinking mode needs a </think> token; plain runs use it only to count thinking tokens
            end_id = think_end_id(backend.tokenizer)
        except HarnessError:
            if cfg.thinking:
                raise
            end_id = None
        bar = tqdm(total=sum(m for _, _, m in work), desc="eval", unit="sample", disable=not cfg.progress,
                   dynamic_ncols=True)
        tokens, start = 0, time.monotonic()
        for temperature, requests, _ in work:
            params = cfg.params(temperature)
            if cfg.thinking:
                stream = generate_budgeted(backend, requests, params, cfg.budgets or [None],
                                           answer_tokens=cfg.answer_tokens, mode=cfg.budget_mode)
            else:
                stream = ([plain(c, end_id) for c in batch] for batch in backend.generate(requests, params))
            for results in stream:
                results = [s for s in results if (by_request[s.request_id][0].name, by_request[s.request_id][1].id,
                                                  temperature, s.budget, s.sample_index) not in done]
                jobs = [GradeJob(s.text, by_request[s.request_id][1].answer, by_request[s.request_id][1].answer_type,
                                 s.finish_reason) for s in results]
                verdicts = pool.grade(jobs)
                rows = [_sample_row(*by_request[s.request_id], s, v, params) for s, v in zip(results, verdicts)]
                store.append(rows)
                new_rows += rows
                tokens += sum(s.num_tokens for s in results)
                bar.update(len(rows))
                if rows:
                    bar.set_postfix(T=temperature, tok_s=f"{tokens / max(time.monotonic() - start, 1e-9):.0f}",
                                    acc=f"{sum(r['correct'] for r in rows) / len(rows):.2f}")
        bar.close()
    return new_rows
