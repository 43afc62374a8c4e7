"""The evaluation pipeline: tasks -> prompts -> back-end -> verifier -> store -> metrics.

The settings are three dataclasses whose fields are the CLI's flags: TaskSelection (which problems),
Sampling (how to sample; the paper's evaluation protocol by default) and EvalConfig (the rest).
A run covers one or more conditions: temperatures (`--temperatures`, the paper's sweep) times thinking
budgets (`--budgets`). Resumable per sample: only the (problem, condition, sample index) rows missing
from `samples.jsonl` are generated, and each finished group is graded and appended before the next.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, ClassVar

from dail_harness.backends.base import GenerationRequest, SamplingBackend, open_backend
from dail_harness.errors import HarnessError
from dail_harness.eval.grading import DEFAULT_TIMEOUT_S, GradeJob, GradingPool
from dail_harness.eval.metrics import condition_of, parse_k, power_of_two_grid, summarize_conditions
from dail_harness.eval.store import RunStore, sample_id
from dail_harness.eval.task import Task, is_listed, make_task, read_id_file, refuse_unused_options
from dail_harness.eval.thinking import (
    DEFAULT_ANSWER_TOKENS,
    FORCE_ANSWER_TOKENS,
    THINK_END,
    Sampled,
    generate_budgeted,
    plain,
    think_end_id,
)
from dail_harness.models.cpu import threads_option
from dail_harness.models.loading import device_option, dtype_option
from dail_harness.options import (
    PATH,
    PATH_OR_NAME,
    missing_placeholder,
    on_off,
    option,
    parse_shard,
    read_template,
)
from dail_harness.records import Problem
from dail_harness.sampling import SAMPLING_SETTINGS, SamplingParams, SamplingSettings, sampling_option
from dail_harness.scale.launch import current as current_launch
from dail_harness.scale.plan import DEFAULT_SAMPLE_BLOCK, JobProgress, Shard, Work, as_shard, refuse_old_sharding
from dail_harness.verifiers.base import Verdict
from dail_harness.verifiers.simple import simple_correct
from dail_harness.worklog import Job, pending

SAMPLING, TASK, THINKING, ENGINE, RUN = "Sampling", "Task", "Thinking models", "Back-end", "Run"


@dataclass(kw_only=True)
class TaskSelection:
    """Which problems: task names (or a data file), their options, and a subset."""

    task: list[str] = option(
        path=PATH_OR_NAME,
        help="Task name(s), comma-separated (e.g. aime24,aime25; several are also reported "
        "as one combined set), or a data file (the `file` task).",
        panel=TASK,
    )
    limit: int | None = option(None, ge=1, help="Only the first L problems of each task.", panel=TASK)
    exclude: str | None = option(
        None,
        path=PATH,
        help="File of problem ids to leave out, one per line (`id` or `task/id`, "
        "e.g. from `data dedup --ids-out`; the paper's Figure 14).",
        panel=TASK,
    )
    data: str | None = option(None, path=PATH, help="Data file for the `file` task or gpqa-diamond.", panel=TASK)
    fields: str | None = option(None, help="Field map for --data, e.g. problem=question,answer=final.", panel=TASK)
    answer_type: str | None = option(None, help="Verifier for --data: integer, math, choice or a plugin's.", panel=TASK)
    prompt_template: str | None = option(
        None, path=PATH, help="File with a prompt template containing {problem}.", panel=TASK
    )
    task_opt: dict[str, str] = option(
        default_factory=dict, help="Extra task option KEY=VALUE (repeatable), e.g. shuffle_seed=1 for GPQA.", panel=TASK
    )
    plugin_dir: list[str] = option(
        default_factory=list,
        repeat=True,
        path=PATH,
        help="Directory of extra plugin modules (*.py) to load (repeatable).",
        panel=RUN,
    )

    def excluded(self) -> set[str]:
        """The ids of --exclude (a line `task/id` excludes that task's problem; `id` excludes it in every task)."""
        return set() if self.exclude is None else read_id_file(self.exclude)

    def task_options(self) -> dict:
        options: dict = dict(self.task_opt)
        text = options.get("prompt_template")
        if text is not None and missing_placeholder(str(text), ("problem",)):
            raise HarnessError(
                f"--task-opt prompt_template: the template must contain {{problem}}, got {str(text)!r} (it is the "
                "template's text; --prompt-template FILE reads one from a file)"
            )
        for key in ("data", "fields", "answer_type"):
            if getattr(self, key) is not None:
                options[key] = getattr(self, key)
        if self.prompt_template is not None:
            options["prompt_template"] = read_template(self.prompt_template, ("problem",))
        return options


@dataclass(kw_only=True)
class Sampling(SamplingSettings):
    """How many samples per problem, at which k, with which decoding settings (the paper's by default)."""

    n: int | None = option(
        None,
        ge=1,
        flag="--n --samples-per-problem",
        help="Samples per problem (default: the largest k). Under torchrun write --samples-per-problem: torchrun's "
        "own parser reads --n as an abbreviation of its options.",
        panel=SAMPLING,
    )
    k: str | None = option(
        None, help="'128': pass@k at 1,2,4,...,128 (and n = 128); '1,8,64': exactly those k.", panel=SAMPLING
    )
    temperature: float = sampling_option("temperature", 0.6, panel=SAMPLING)
    top_p: float = sampling_option("top_p", 0.95, panel=SAMPLING)
    top_k: int = sampling_option("top_k", 0, panel=SAMPLING)
    presence_penalty: float = sampling_option(
        "presence_penalty",
        1.5,
        help="Subtracted once from every token already in the output (vLLM semantics; the paper used 1.5).",
        panel=SAMPLING,
    )
    max_tokens: int = sampling_option("max_tokens", 8000, panel=SAMPLING)
    stop: list[str] = option(
        default_factory=list,
        repeat=True,
        help="Stop string (repeatable); the completion ends before it.",
        panel=SAMPLING,
    )
    seed: int = sampling_option(
        "seed", 0, help="Base seed; samples are keyed by (seed, problem, sample index).", panel=SAMPLING
    )

    def check(self) -> None:
        self.ks  # noqa: B018 (parses --k and compares it with --n)
        if any(not s for s in self.stop):
            raise HarnessError("--stop: an empty stop string would end every completion at once")

    @property
    def ks(self) -> list[int]:
        return self._k_and_n()[0]

    @property
    def num_samples(self) -> int:
        return self._k_and_n()[1]

    def _k_and_n(self) -> tuple[list[int], int]:
        if self.k is not None:
            ks, n = parse_k(self.k)
        elif self.n is not None:
            ks, n = power_of_two_grid(self.n), self.n
        else:
            ks, n = [1], 1
        n = self.n if self.n is not None else n
        if max(ks) > n:
            raise HarnessError(f"--k {max(ks)} is larger than --n {n}; pass@k needs k <= n")
        return ks, n

    def params(self, temperature: float | None = None) -> SamplingParams:
        """The back-end parameters of one condition (a temperature of the sweep, or --temperature)."""
        return self.sampling_params(self.num_samples, **({} if temperature is None else {"temperature": temperature}))


@dataclass(kw_only=True)
class EvalConfig(TaskSelection, Sampling):
    """Everything one `dail-harness eval` needs (the CLI's flags are these fields)."""

    SECTIONS: ClassVar[dict[str, str | tuple[str, ...]]] = {
        "sampling": SAMPLING_SETTINGS + ("n", "k", "stop", "temperatures"),
    }
    """A --config file may hold the sampling settings in a `sampling:` section (flat keys work too)."""

    model: str = option(
        path=PATH_OR_NAME, help="Local model or LoRA adapter directory, hub id, or 'tiny-random'.", panel=RUN
    )
    out: str = option(path=PATH, help="Run directory; rerunning the same command resumes.", panel=RUN)
    backend: str = option("hf", help="Sampling back-end (`dail-harness list backends`).", panel=ENGINE)
    temperatures: list[float] | None = option(
        None, ge=0, help="Temperature sweep, e.g. 0.6,0.8,1.0,1.2 (one condition each).", panel=SAMPLING
    )
    shard: tuple[int, int] | None = option(
        None,
        parse=parse_shard,
        metavar="i/N",
        help="Only shard i of N: sample s of the problem at position p of P is in shard (p + (s // B) * P) % N, "
        "B = --sample-block (report merges shards). Under torchrun, accelerate launch or srun the shards are the "
        "processes: leave it out.",
        panel=TASK,
    )
    sample_block: int = option(
        DEFAULT_SAMPLE_BLOCK,
        ge=1,
        help="Samples of one problem that stay in one shard (small benchmarks at large k spread over more "
        "processes than they have problems).",
        panel=TASK,
    )
    dry_run: bool = option(
        False,
        help="Print the plan (samples, token bound, shards, devices) and exit without loading a model.",
        panel=RUN,
    )
    system_prompt: str | None = option(None, help="System prompt (default: the chat template's own).", panel=TASK)
    thinking: bool | None = option(
        None,
        parse=on_off,
        flag="--thinking",
        metavar="on|off",
        help="on: thinking model (enable_thinking, </think> phases); off (the default without --budgets): plain.",
        panel=THINKING,
    )
    budgets: list[int] | None = option(
        None,
        ge=1,
        help="Thinking budgets for budget forcing, e.g. 512,1024,2048,4096 (implies --thinking on).",
        panel=THINKING,
    )
    answer_tokens: int | None = option(
        None,
        ge=1,
        help="Answer tokens after the thinking phase (default: 2048, the paper's; 100 with --force-answer).",
        panel=THINKING,
    )
    force_answer: bool = option(
        False,
        help="The authors' eval.py protocol (their default). Thinking: after the thinking, append ' \\n The final "
        "answer (in \\boxed{}):' and allow 100 tokens. Not thinking: stop at </think>, and give every sample "
        "without a \\boxed{ a second pass of 100 tokens after '\\n The final answer (in \\boxed{}):'.",
        panel=THINKING,
    )
    budget_mode: str = option(
        "shared",
        choices=("shared", "independent"),
        help="shared: branch the answers from one trace per sample; independent: sample each budget from scratch.",
        panel=THINKING,
    )
    batch_size: int | None = option(
        None, ge=1, help="Rows per generate call (hf; default 8 CPU, 32 GPU).", panel=ENGINE
    )
    tensor_parallel_size: int = option(1, ge=1, help="GPUs per vLLM engine (vllm).", panel=ENGINE)
    gpu_memory_utilization: float | None = option(
        None,
        gt=0,
        le=1,
        help="vLLM memory share (default 0.9 on GPU; on CPU the KV cache is sized from the model and context).",
        panel=ENGINE,
    )
    enforce_eager: bool = option(
        False,
        help="vLLM: skip torch.compile and CUDA-graph capture: the engine starts in seconds instead of minutes "
        "and decodes slower (for short runs).",
        panel=ENGINE,
    )
    max_model_len: int | None = option(None, ge=1, help="vLLM context length (default: the model's).", panel=ENGINE)
    device: str | None = device_option(ENGINE)
    threads: int | None = threads_option(ENGINE)
    dtype: str | None = dtype_option(
        ENGINE, "bf16 on GPU; on CPU fp32 for hf, and for vllm bf16 where the CPU has native bf16, else fp32"
    )
    grade_workers: int | None = option(
        None, ge=0, help="Grading processes (0: in-process; default min(4, cores)).", panel="Grading"
    )
    grade_timeout: float = option(
        DEFAULT_TIMEOUT_S, gt=0, help="Seconds per sample before grading gives up.", panel="Grading"
    )
    progress: bool = option(True, help="Show a progress bar.", panel=RUN)

    def check(self) -> None:
        """Cross-field checks (single values were checked against their ranges already)."""
        super().check()
        if self.budgets and self.thinking is False:
            raise HarnessError("--budgets forces thinking budgets, so it needs --thinking on (or leave --thinking out)")
        self.thinking = bool(self.budgets) or bool(self.thinking)
        if self.answer_tokens is None:
            self.answer_tokens = FORCE_ANSWER_TOKENS if self.force_answer else DEFAULT_ANSWER_TOKENS

    def params(self, temperature: float | None = None) -> SamplingParams:
        params = super().params(temperature)
        if self.force_answer and not self.thinking and THINK_END not in params.stop:
            params.stop.append(THINK_END)  # the authors' first pass stops there
        return params

    def ignored(self) -> dict[str, str]:
        """The settings this run would not use, each with who would (the command refuses them when given)."""
        out = {}
        if not self.thinking and not self.force_answer:
            out["answer_tokens"] = "--thinking on, --budgets or --force-answer uses it"
        if not self.budgets:
            out["budget_mode"] = "--budgets uses it"
        else:  # a condition thinks up to its budget, then answers in --answer-tokens
            out["max_tokens"] = "a run without --budgets uses it (each budget is its condition's thinking limit)"
        if self.temperatures:
            out["temperature"] = "--temperatures replaces it (one condition per temperature)"
        if self.shard is None and not current_launch().launched:
            out["sample_block"] = "--shard or a launcher (torchrun, accelerate launch, srun) uses it"
        return out

    def conditions(self) -> list[tuple[float, int | None]]:
        temps = self.temperatures or [self.temperature]
        return [(t, b) for t in temps for b in self.budget_list()]

    def budget_list(self) -> list[int | None]:
        """The thinking budgets of the run; [None] when there is no budget forcing."""
        return list(self.budgets) if self.budgets else [None]

    def backend_options(self) -> dict:
        options = {
            key: getattr(self, key)
            for key in ("batch_size", "device", "dtype", "system_prompt", "max_model_len", "gpu_memory_utilization")
            if getattr(self, key) is not None
        }
        if self.tensor_parallel_size != 1:
            options["tensor_parallel_size"] = self.tensor_parallel_size
        if self.enforce_eager:
            options["enforce_eager"] = True
        return options


def load_tasks(cfg: TaskSelection) -> list[tuple[Task, list[Problem]]]:
    """The selected problems of each task: --limit, then --exclude; a task option no task uses is refused."""
    loaded = []
    options = cfg.task_options()
    excluded = cfg.excluded()
    made = [make_task(name, **options) for name in cfg.task]
    refuse_unused_options(made, options)
    for task in made:
        problems = task.load()
        if cfg.limit is not None:
            problems = problems[: cfg.limit]
        loaded.append((task, [p for p in problems if not is_listed(excluded, task.name, p.id)]))
    if not any(ps for _, ps in loaded):
        raise HarnessError("no problems selected (check --limit and --exclude)")
    return loaded


def shard_of(cfg: EvalConfig, tasks) -> Shard | None:
    """This run's shard; problems are positioned across the run's tasks in order."""
    return as_shard(cfg.shard, cfg.sample_block, sum(len(ps) for _, ps in tasks))


def positioned(tasks) -> Iterator[tuple[int, Task, Problem]]:
    """(position in the whole run, task, problem) of every problem: what the sharding rule deals out."""
    position = 0
    for task, problems in tasks:
        for p in problems:
            yield position, task, p
            position += 1


def sample_bound(cfg: EvalConfig, budget: int | None) -> int:
    """At most how many new tokens one sample of a condition takes (thinking budget or max tokens, plus answer)."""
    answer = int(cfg.answer_tokens or 0) if cfg.thinking or cfg.force_answer else 0
    return (budget if budget is not None else cfg.max_tokens) + answer


def plan_work(cfg: EvalConfig, tasks) -> list[Work]:
    """Each problem's samples per condition with a bound on the new tokens of one (for the cost estimate)."""
    work = []
    for _, budget in cfg.conditions():
        work += [Work(position, cfg.num_samples, sample_bound(cfg, budget)) for position, _, _ in positioned(tasks)]
    return work


@dataclass(frozen=True)
class ConditionWork:
    """What one temperature of the run still needs: a request per problem with the sample indices it lacks, and
    how many rows they make (one per thinking budget)."""

    temperature: float
    requests: list[GenerationRequest]
    rows: int


def run_settings(cfg: EvalConfig, tasks: list[tuple[Task, list[Problem]]], fingerprint: str | None) -> dict:
    """The settings that determine the samples and select the problems; a resume must match them, except the
    amounts of `store.GROWABLE` (more samples or problems extend the run)."""
    return {
        "tasks": [t.name for t, _ in tasks],
        "model": cfg.model,
        "model_fingerprint": fingerprint,
        "backend": cfg.backend,
        "dtype": cfg.dtype,  # None: the back-end's choice for the device
        "sampling": cfg.params().to_dict(),
        "temperatures": cfg.temperatures,
        "thinking": bool(cfg.thinking),
        "budgets": cfg.budgets,
        "answer_tokens": cfg.answer_tokens if cfg.thinking or cfg.force_answer else None,
        "force_answer": cfg.force_answer,
        "budget_mode": cfg.budget_mode if cfg.budgets else None,
        "shard": list(cfg.shard) if cfg.shard else None,
        "sample_block": cfg.sample_block if cfg.shard else None,
        "limit": cfg.limit,
        "ks": cfg.ks,
        "prompt_templates": {t.name: t.options.get("prompt_template") or t.prompt_template for t, _ in tasks},
        "task_options": {k: str(v) for k, v in sorted(cfg.task_options().items()) if k != "prompt_template"},
        "excluded": sorted(cfg.excluded()),
        "system_prompt": cfg.system_prompt,
        "chat_template_kwargs": {"enable_thinking": bool(cfg.thinking)},
    }


def _sample_row(task: Task, problem: Problem, s: Sampled, verdict: Verdict, params: SamplingParams) -> dict:
    return {
        "task": task.name,
        "problem_id": problem.id,
        "sample_index": s.sample_index,
        "temperature": params.temperature,
        "budget": s.budget,
        "completion": s.text,
        "extracted": verdict.extracted,
        "answer_key": verdict.answer_key,
        "correct": verdict.correct,
        "no_answer": verdict.no_answer,
        "gold": problem.answer,
        "answer_type": problem.answer_type,
        "num_tokens": s.num_tokens,
        "thinking_tokens": s.thinking_tokens,
        "answer_tokens": s.answer_tokens,
        "forced_close": s.forced_close,
        "forced_answer": s.forced_answer,
        "prompt_tokens": s.prompt_tokens,
        "finish_reason": s.finish_reason,
        "simple_correct": simple_correct(s.text, problem.answer),
        "grading_timed_out": verdict.timed_out,
        "grading_error": verdict.error,
        "top_p": params.top_p,
        "top_k": params.top_k,
        "presence_penalty": params.presence_penalty,
        "max_tokens": params.max_tokens,
        "seed": params.seed,
    }


def run_eval(
    cfg: EvalConfig,
    backend: SamplingBackend | None = None,
    fingerprint: str | None = None,
    known: AbstractSet = frozenset(),
) -> dict:
    """Sample, grade and store what the run directory lacks; return the summary (also summary.json). A
    `backend` already loaded (e.g. the model being trained) is used instead of loading `cfg.model`; its
    `fingerprint` then names the weights (the run's identity in run.json). A shard's summary covers the
    problems whose n samples are all in it (none when its blocks split them): `report` merges shards. `known`:
    ids of samples stored elsewhere (a launched run's other directories), not drawn again."""
    from dail_harness.models.loading import model_fingerprint

    tasks = load_tasks(cfg)
    store = RunStore(cfg.out)
    refuse_old_sharding(store.record)
    job = store.job(run_settings(cfg, tasks, model_fingerprint(cfg.model) if backend is None else fingerprint))
    job.resume()
    if store.exists():  # a resumed or extended run: record its (possibly grown) settings and this invocation
        job.start()
    rows = store.load_samples()
    done = {sample_id(r) for r in rows} | set(known)
    by_request, work = _missing_work(cfg, tasks, done)
    if work:
        rows += _generate_and_grade(cfg, work, by_request, job, done, backend)
    elif not store.exists():  # a shard that owns no sample of this run
        job.start()
    summary = summarize_run(cfg, tasks, rows, job.settings)
    summary["provenance"] = job.finish()
    store.write_summary(summary)
    return summary


def _missing_work(cfg: EvalConfig, tasks, done: AbstractSet) -> tuple[dict[str, tuple[Task, Problem]], list]:
    """The requests for the (problem, condition, sample index) rows this run or shard owns and lacks, per
    temperature, and each request's (task, problem)."""
    n, budgets, shard = cfg.num_samples, cfg.budget_list(), shard_of(cfg, tasks)
    problems = [(task, p) for _, task, p in positioned(tasks)]
    by_request = {f"{task.name}/{p.id}": (task, p) for task, p in problems}
    work = []
    for temperature in dict.fromkeys(t for t, _ in cfg.conditions()):

        def stored(problem: tuple[Task, Problem], i: int, temperature=temperature) -> bool:
            return all((problem[0].name, problem[1].id, temperature, b, i) in done for b in budgets)

        todo = pending(problems, n, shard, stored)
        if todo:
            requests = [
                GenerationRequest(f"{t.name}/{p.id}", t.render_prompt(p), w.indices) for w in todo for t, p in [w.item]
            ]
            work.append(ConditionWork(temperature, requests, sum(len(w.indices) for w in todo) * len(budgets)))
    return by_request, work


def summarize_run(cfg: EvalConfig, tasks, rows: list[dict], settings: dict) -> dict:
    """summary.json of a run (or a shard): pass@k over the selected problems that have all n samples."""
    n = cfg.num_samples
    selected = {(t.name, p.id) for t, ps in tasks for p in ps}
    rows = [r for r in rows if (r["task"], str(r["problem_id"])) in selected and int(r["sample_index"]) < n]
    head = {"task": "+".join(t.name for t, _ in tasks), "model": cfg.model, "backend": cfg.backend, "n": n}
    if cfg.shard is not None:
        conditions = [(float(t), b) for t, b in cfg.conditions()]
        counts: dict = {}
        for r in rows:
            key = (r["task"], str(r["problem_id"]), condition_of(r))
            counts[key] = counts.get(key, 0) + 1
        full = {key for key, c in counts.items() if c >= n}
        complete = {(t, p) for t, p, _ in full if all((t, p, c) in full for c in conditions)}
        rows = [r for r in rows if (r["task"], str(r["problem_id"])) in complete]
        head["shard"] = {"shard": list(cfg.shard), "samples": sum(counts.values()), "complete_problems": len(complete)}
        if not rows:
            return {**head, "ks": cfg.ks, "settings": settings, "per_problem": []}
    metrics = summarize_conditions(rows, cfg.ks, n, cfg.conditions())
    return {
        **head,
        "ks": cfg.ks,
        **{k: v for k, v in metrics.items() if k != "per_problem"},
        "settings": settings,
        "per_problem": metrics["per_problem"],
    }


def _with_final_answers(stream, backend, requests, params, answer_tokens: int):
    from dail_harness.eval.force_answer import force_final_answers

    by_id = {r.request_id: r for r in requests}
    for batch in stream:
        yield force_final_answers(backend, by_id, batch, params, answer_tokens)


def _generate_and_grade(
    cfg: EvalConfig, work: list[ConditionWork], by_request, job: Job, done: AbstractSet, loaded=None
) -> list[dict]:
    """Generate and grade the missing samples, storing each graded group as it finishes; returns the new rows."""
    if loaded is not None:
        opened: Any = contextlib.nullcontext(loaded)
    else:
        thinking = {"enable_thinking": bool(cfg.thinking)}
        opened = open_backend(cfg.backend, cfg.model, cfg.seed, **cfg.backend_options(), chat_template_kwargs=thinking)
    # Load the model before creating the run directory: a bad model leaves nothing behind.
    with opened as backend, GradingPool(cfg.grade_workers, cfg.grade_timeout) as pool:
        per_sample = sum(sample_bound(cfg, b) for b in cfg.budget_list())
        bound = sum(len(r.sample_indices) * per_sample for w in work for r in w.requests)
        bar = JobProgress("eval", "sample", sum(w.rows for w in work), bound, cfg.progress, current_launch())

        def graded(w: ConditionWork) -> Iterator[list[dict]]:
            params = cfg.params(w.temperature)
            for results in _samples(cfg, backend, w.requests, params):
                results = [s for s in results if _identity(by_request, s, w.temperature) not in done]
                yield _graded(by_request, results, params, pool)

        def stored(rows: list[dict]) -> None:
            accuracy = sum(r["correct"] for r in rows) / max(1, len(rows))
            tokens = sum(r["num_tokens"] for r in rows)
            bar.update(len(rows), tokens, T=rows[0]["temperature"] if rows else "", acc=f"{accuracy:.2f}")

        new_rows = job.run((rows for w in work for rows in graded(w)), stored)
        bar.close()
    return new_rows


def _samples(cfg: EvalConfig, backend: SamplingBackend, requests, params: SamplingParams) -> Iterator[list[Sampled]]:
    """One condition's samples in groups as they finish: budget-forced for thinking runs (which need a </think>
    token: `generate_budgeted` fails before sampling without one), plain otherwise (with the authors'
    final-answer pass under --force-answer)."""
    if cfg.thinking:
        yield from generate_budgeted(
            backend,
            requests,
            params,
            cfg.budget_list(),
            answer_tokens=int(cfg.answer_tokens or DEFAULT_ANSWER_TOKENS),
            mode=cfg.budget_mode,
            force_answer=cfg.force_answer,
        )
        return
    try:  # plain runs use </think> only to count thinking tokens
        end_id: int | None = think_end_id(backend.tokenizer)
    except HarnessError:
        end_id = None
    stream = ([plain(c, end_id) for c in batch] for batch in backend.generate(requests, params))
    if cfg.force_answer:
        stream = _with_final_answers(stream, backend, requests, params, int(cfg.answer_tokens or 0))
    yield from stream


def _identity(by_request, s: Sampled, temperature: float) -> tuple:
    """A sample's identity as the store keys it (`store.sample_id`)."""
    task, problem = by_request[s.request_id][0], by_request[s.request_id][1]
    return (task.name, problem.id, temperature, s.budget, s.sample_index)


def _graded(by_request, results: list[Sampled], params: SamplingParams, pool: GradingPool) -> list[dict]:
    """The stored rows of a group of samples, graded against their problems' answers in the pool."""
    problems = [by_request[s.request_id][1] for s in results]
    jobs = [GradeJob(s.text, p.answer, p.answer_type, s.finish_reason) for s, p in zip(results, problems)]
    verdicts = pool.grade(jobs)
    return [_sample_row(*by_request[s.request_id], s, v, params) for s, v in zip(results, verdicts)]  # type: ignore[call-arg]
