"""The evaluation pipeline: tasks -> prompts -> back-end -> verifier -> store -> metrics.

Resumable per sample: only the (problem, sample index) pairs missing from `samples.jsonl` are
generated, and each finished batch is graded and appended before the next one starts.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from dail_harness import registry
from dail_harness.backends.base import Completion, GenerationRequest
from dail_harness.errors import HarnessError
from dail_harness.grading import DEFAULT_TIMEOUT_S, GradeJob, GradingPool
from dail_harness.records import Problem
from dail_harness.results import summarize
from dail_harness.sampling import SamplingParams
from dail_harness.store import RunStore, sample_id
from dail_harness.task import Task, make_task


@dataclass
class EvalConfig:
    """Everything one `dail-harness eval` needs."""

    tasks: list[str]
    """Task names (several are evaluated together and also reported as one combined set)."""
    model: str
    """Model path, hub id, adapter directory, or `tiny-random`."""
    out: str
    """Run directory (samples.jsonl, summary.json, run.json)."""
    ks: list[int]
    """The k values to report pass@k at (all <= params.n)."""
    params: SamplingParams = field(default_factory=SamplingParams)
    backend: str = "hf"
    limit: int | None = None
    """Evaluate only the first L problems of each task."""
    task_options: dict = field(default_factory=dict)
    """Passed to every task (data path, field map, answer type, prompt template, ...)."""
    backend_options: dict = field(default_factory=dict)
    """Passed to the back-end (batch size, device, dtype, system prompt, ...)."""
    grade_workers: int | None = None
    grade_timeout: float = DEFAULT_TIMEOUT_S
    progress: bool = True


def load_tasks(cfg: EvalConfig) -> list[tuple[Task, list[Problem]]]:
    loaded = []
    for name in cfg.tasks:
        task = make_task(name, **cfg.task_options)
        problems = task.load()
        if cfg.limit is not None:
            problems = problems[:cfg.limit]
        loaded.append((task, problems))
    return loaded


def run_settings(cfg: EvalConfig, tasks: list[tuple[Task, list[Problem]]]) -> dict:
    """The settings that determine the samples; a resume must match them exactly."""
    return {
        "tasks": [t.name for t, _ in tasks],
        "model": cfg.model,
        "backend": cfg.backend,
        "sampling": cfg.params.to_dict(),
        "prompt_templates": {t.name: t.options.get("prompt_template") or t.prompt_template for t, _ in tasks},
        "task_options": {k: str(v) for k, v in sorted(cfg.task_options.items()) if k != "prompt_template"},
        "system_prompt": cfg.backend_options.get("system_prompt"),
        "chat_template_kwargs": cfg.backend_options.get("chat_template_kwargs") or {},
    }


def _sample_row(task: Task, problem: Problem, c: Completion, verdict, params: SamplingParams) -> dict:
    return {
        "task": task.name, "problem_id": problem.id, "sample_index": c.sample_index,
        "completion": c.text, "extracted": verdict.extracted, "correct": verdict.correct,
        "no_answer": verdict.no_answer, "gold": problem.answer, "answer_type": problem.answer_type,
        "num_tokens": c.num_tokens, "prompt_tokens": c.prompt_tokens, "finish_reason": c.finish_reason,
        "grading_timed_out": verdict.timed_out, "grading_error": verdict.error,
        "temperature": params.temperature, "top_p": params.top_p,
        "presence_penalty": params.presence_penalty, "max_tokens": params.max_tokens, "seed": params.seed,
    }


def run_eval(cfg: EvalConfig) -> dict:
    if not cfg.ks or max(cfg.ks) > cfg.params.n:
        raise HarnessError(f"k={max(cfg.ks) if cfg.ks else None} is larger than n={cfg.params.n}; "
                           "pass@k needs k <= n (raise --n or lower --k)")
    tasks = load_tasks(cfg)
    store = RunStore(cfg.out)
    settings = run_settings(cfg, tasks)
    store.check(settings)
    done = {sample_id(r) for r in store.load_samples()}

    by_request: dict[str, tuple[Task, Problem]] = {}
    requests: list[GenerationRequest] = []
    for task, problems in tasks:
        for p in problems:
            rid = f"{task.name}/{p.id}"
            missing = [i for i in range(cfg.params.n) if (task.name, p.id, i) not in done]
            by_request[rid] = (task, p)
            if missing:
                requests.append(GenerationRequest(rid, task.render_prompt(p), missing))

    todo = sum(len(r.sample_indices) for r in requests)
    if todo:
        _generate_and_grade(cfg, requests, by_request, store, settings, todo)

    selected = {(t.name, p.id) for t, ps in tasks for p in ps}
    rows = [r for r in store.load_samples() if (r["task"], str(r["problem_id"])) in selected
            and int(r["sample_index"]) < cfg.params.n]
    summary = summarize(rows, cfg.ks, cfg.params.n)
    summary = {
        "task": "+".join(t.name for t, _ in tasks),
        "model": cfg.model,
        "backend": cfg.backend,
        "n": cfg.params.n,
        "ks": cfg.ks,
        **{k: v for k, v in summary.items() if k != "per_problem"},
        "settings": {**settings, "limit": cfg.limit, "ks": cfg.ks},
        "per_problem": summary["per_problem"],
    }
    store.write_summary(summary)
    return summary


def _generate_and_grade(cfg, requests, by_request, store, settings, todo) -> None:
    from tqdm import tqdm

    backend_cls = registry.get("backends", cfg.backend)
    # Load the model before creating the run directory: a bad model leaves nothing behind.
    with backend_cls(cfg.model, **cfg.backend_options) as backend, \
            GradingPool(cfg.grade_workers, cfg.grade_timeout) as pool:
        store.create(settings)
        bar = tqdm(total=todo, desc="eval", unit="sample", disable=not cfg.progress, dynamic_ncols=True)
        tokens, start = 0, time.monotonic()
        for completions in backend.generate(requests, cfg.params):
            jobs = [GradeJob(c.text, by_request[c.request_id][1].answer, by_request[c.request_id][1].answer_type,
                             c.finish_reason) for c in completions]
            verdicts = pool.grade(jobs)
            rows = [_sample_row(*by_request[c.request_id], c, v, cfg.params) for c, v in zip(completions, verdicts)]
            store.append(rows)
            tokens += sum(c.num_tokens for c in completions)
            bar.update(len(rows))
            bar.set_postfix(tok_s=f"{tokens / max(time.monotonic() - start, 1e-9):.0f}",
                            acc=f"{sum(r['correct'] for r in rows) / len(rows):.2f}")
        bar.close()
