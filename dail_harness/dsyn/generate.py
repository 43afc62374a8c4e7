"""`dail-harness generate`: build D_syn = {(x, r)} from expert data, by direct sampling or mixed rollouts.

Every trace goes to `OUT.traces.jsonl`, one row per (problem, sample): problem_id, problem, solution,
answer, waypoints, trace, mode, tau, draft_tokens, student_tokens, privileged_tokens, acceptance_rate,
num_tokens, finish_reason, the sampling settings, and its grades (`correct`, `extracted`,
`authors_correct`). Rows are appended as they finish (resumable; a partial last line is cut on the next
run); the settings live beside the file (`OUT.settings.json`) and a rerun with different settings is
refused. OUT holds the traces `--select` keeps (`OUT.selection.json`: the counts); a rerun with another
rule re-selects without generating. The sampling back-end and the rollout engine are looked up by
the `--backend` name (`dail-harness list backends`, `list rollouts`).
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from dail_harness import registry
from dail_harness.backends.auto import AUTO
from dail_harness.dsyn.expert_data import ExpertRecord, load_expert_data
from dail_harness.dsyn.prompts import (
    Templates,
    extract_waypoints,
    final_answer_of,
    fit_solution,
    privileged_prompt,
    student_prompt,
)
from dail_harness.dsyn.select import SELECT_RULES, authors_correct, traces_path, write_selection
from dail_harness.errors import HarnessError
from dail_harness.models.cpu import threads_option
from dail_harness.models.loading import device_option, dtype_option
from dail_harness.options import PATH, PATH_OR_NAME, as_settings, on_off, option, parse_shard
from dail_harness.sampling import SAMPLING_SETTINGS, SamplingSettings, sampling_option
from dail_harness.scale.launch import current as current_launch
from dail_harness.scale.plan import DEFAULT_SAMPLE_BLOCK, JobProgress, as_shard, refuse_old_sharding
from dail_harness.worklog import Job, Pending, SettingsRecord, WorkLog, pending

ROLLOUT, SAMPLING, ENGINE, RUN, SELECTION = "Mixed rollouts", "Sampling", "Back-end", "Run", "Selection"


@dataclass(kw_only=True)
class GenerateConfig(SamplingSettings):
    """Settings of one `dail-harness generate` run (the CLI's flags are these fields)."""

    SECTIONS: ClassVar[dict[str, str | tuple[str, ...]]] = {"sampling": SAMPLING_SETTINGS + ("n",)}
    """A --config file may hold the sampling settings in a `sampling:` section (flat keys work too)."""

    data: str = option(
        path=PATH, help="Expert data: JSONL/JSON/CSV/Parquet with problem_id, problem, solution[, answer].", panel=RUN
    )
    model: str = option(
        path=PATH_OR_NAME,
        help="The student (and, with the expert solution in context, the privileged student).",
        panel=RUN,
    )
    out: str = option(path=PATH, help="D_syn JSONL to write; rerunning resumes.", panel=RUN)
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
        help="1 (the default): token by token, student and privileged rows sharing each forward pass (hf) or "
        "paired inside the engine (vllm); K > 1: the student drafts K tokens per verify pass; 0: adaptive K.",
        panel=ROLLOUT,
    )
    n: int = option(
        32, ge=1, flag="--n --samples-per-problem", help="Traces per problem (the authors: 32).", panel=SAMPLING
    )
    max_tokens: int | None = sampling_option(
        "max_tokens",
        None,
        help="Maximum trace tokens (default: the authors' 2048, or 256 with --thinking on).",
        panel=SAMPLING,
    )
    temperature: float = sampling_option(
        "temperature", 1.0, help="Sampling temperature (both distributions); 0: greedy.", panel=SAMPLING
    )
    top_p: float = sampling_option("top_p", 1.0, panel=SAMPLING)
    top_k: int = sampling_option(
        "top_k",
        0,
        help="Keep only the k most likely tokens of each distribution (before top-p, as vLLM does); 0: all. The "
        "authors' direct generation drew from vLLM's top-20 at raw temperature 1: --top-k 20 --temperature 1.",
        panel=SAMPLING,
    )
    presence_penalty: float = sampling_option(
        "presence_penalty",
        0.0,
        help="Presence penalty of direct sampling (vLLM semantics; 0: none, as the authors' generation).",
        panel=SAMPLING,
    )
    seed: int = sampling_option("seed", 0, help="Traces are keyed by (seed, problem, sample index).", panel=SAMPLING)
    proposal: str = option(
        "full",
        choices=("full", "top20x5"),
        help="full: one student draw over its whole "
        "distribution (the paper); top20x5: up to five draws from its top-20 (the authors' code).",
        panel=ROLLOUT,
    )
    waypoints: str = option(
        "auto",
        choices=("auto", "numbers", "all"),
        help="Waypoint patterns of the negative "
        "reference: auto = numbers only when the row has an answer (the paper); all = the five "
        "patterns always (the authors' code).",
        panel=ROLLOUT,
    )
    select: str | None = option(
        None,
        choices=SELECT_RULES,
        help="Which traces OUT keeps (all are in "
        "OUT.traces.jsonl): first-correct (default; the authors' non-reasoning rule), random "
        "(default with --thinking on), all-correct, all.",
        panel=SELECTION,
    )
    select_by: str = option(
        "ours",
        choices=("ours", "authors"),
        help="Correct means our verifier's verdict, or the authors' exact equality of the last boxed answers.",
        panel=SELECTION,
    )
    answer_type: str = option(
        "math",
        help="Verifier that grades traces against the row's answer (or the solution's last box).",
        panel=SELECTION,
    )
    grade_workers: int | None = option(None, ge=0, help="Grading processes (0: in-process).", panel=SELECTION)
    backend: str = option(
        "auto",
        help="Sampling back-end and rollout engine: hf, vllm, or auto (vllm where it is installed and the job "
        "samples at least 50,000 tokens, else hf; the choice and its reason are printed, a resume keeps the run's).",
        panel=ENGINE,
    )
    thinking: bool = option(
        False,
        parse=on_off,
        flag="--thinking",
        metavar="on|off",
        help="on: thinking model (enable_thinking; </think> suppressed in rollouts).",
        panel=RUN,
    )
    templates: str | None = option(
        None, path=PATH, content=True, help="JSON with student/privileged/negative templates.", panel=RUN
    )
    max_prompt_tokens: int | None = option(
        None,
        ge=1,
        help="Privileged prompts longer than this drop trailing `Solution N:` blocks (default: context - max tokens).",
        panel=RUN,
    )
    batch_size: int | None = option(
        None,
        ge=1,
        help="Rollouts per batch (hf: one forward batch; vllm --mode mixed: one engine call, stored when it "
        "returns; vllm --mode direct stores every 256 requests). Default: 16 with hf, 128 with vllm.",
        panel=ENGINE,
    )
    enforce_eager: bool = option(
        False, help="vLLM: skip torch.compile and CUDA-graph capture (starts in seconds; decodes slower).", panel=ENGINE
    )
    static_cache: bool | None = option(
        None,
        flag="--static-cache/--dynamic-cache",
        help="Fixed-shape KV caches for the hf rollout engine (default: static on CUDA).",
        panel=ENGINE,
    )
    compile: bool = option(False, help="With static caches on CUDA: compile the forward (CUDA graphs).", panel=ENGINE)
    limit: int | None = option(None, ge=1, help="Only the first L problems.", panel=RUN)
    shard: tuple[int, int] | None = option(
        None,
        parse=parse_shard,
        metavar="i/N",
        help="Only shard i of N: trace s of the problem at position p of P is in shard (p + (s // B) * P) % N, "
        "B = --sample-block. Under torchrun, accelerate launch or srun the shards are the processes: leave it out.",
        panel=RUN,
    )
    sample_block: int = option(
        DEFAULT_SAMPLE_BLOCK, ge=1, help="Traces of one problem that stay in one shard.", panel=RUN
    )
    dry_run: bool = option(
        False,
        help="Print the plan (traces, token bound, shards, devices) and exit without loading a model.",
        panel=RUN,
    )
    device: str | None = device_option(ENGINE)
    threads: int | None = threads_option(ENGINE)
    dtype: str | None = dtype_option(ENGINE)
    progress: bool = option(True, help="Show a progress bar.", panel=RUN)
    plugin_dir: list[str] = option(
        default_factory=list,
        repeat=True,
        path=PATH,
        help="Directory of extra plugin modules (e.g. a verifier for --answer-type).",
        panel=RUN,
    )

    def check(self) -> None:
        """The authors' defaults per model type: 256-token traces and a random one kept for reasoning models."""
        if self.max_tokens is None:
            self.max_tokens = 256 if self.thinking else 2048
        if self.mode == "mixed" and self.presence_penalty != 0:
            raise HarnessError(
                "--presence-penalty: mixed-policy rollouts draw from the student and privileged distributions as "
                "they are (the paper and the authors' code use no penalty); it applies to --mode direct"
            )
        if self.select is None:
            self.select = "random" if self.thinking else "first-correct"

    def ignored(self) -> dict[str, str]:
        """The settings this run would not use, each with who would (the command refuses them when given)."""
        if self.mode == "direct":
            out = dict.fromkeys(("tau", "draft_tokens", "proposal"), "--mode mixed uses it")
            out.update(dict.fromkeys(("static_cache", "compile"), "the hf engine of --mode mixed uses it"))
            if self.backend == "vllm":  # vLLM takes the requests in its own chunks
                out["batch_size"] = "--backend hf or --mode mixed uses it"
            return {**out, **self._unsharded()}
        out = {}
        if self.backend == "vllm":
            out = dict.fromkeys(("static_cache", "compile"), "the hf engine of --mode mixed uses it")
        return {**out, **self._unsharded()}

    def _unsharded(self) -> dict[str, str]:
        if self.shard is None and not current_launch().launched:
            return {"sample_block": "--shard or a launcher (torchrun, accelerate launch, srun) uses it"}
        return {}

    def settings(self) -> dict:
        """What determines the traces (a resume must match; the selection can change without regenerating)."""
        settings = as_settings(
            self,
            exclude=(
                "out",
                "progress",
                "batch_size",
                "device",
                "limit",
                "static_cache",
                "compile",
                "select",
                "select_by",
                "grade_workers",
                "plugin_dir",
                "threads",
                "dry_run",
            ),
        )
        settings["sample_block"] = self.sample_block if self.shard else None
        return settings


def settings_path(out: str | Path) -> Path:
    return Path(str(out) + ".settings.json")


def trace_log(out: str | Path) -> WorkLog:
    """OUT.traces.jsonl: one row per (problem, sample index)."""
    return WorkLog(traces_path(out), lambda r: (str(r["problem_id"]), int(r["sample_index"])))


def waypoints_for(rec: ExpertRecord, mode: str = "auto") -> tuple[list[str], str | None]:
    """s~ of a record: with `auto`, numbers only for answer-verifiable problems (the paper) and every pattern
    otherwise; `numbers` or `all` force one reading (the authors' code always applies all five patterns)."""
    answer = final_answer_of(rec.solution, rec.answer)
    numbers_only = rec.answer is not None if mode == "auto" else mode == "numbers"
    return extract_waypoints(rec.solution, answer=answer, numbers_only=numbers_only), answer


def load_records(cfg: GenerateConfig) -> list[ExpertRecord]:
    """The expert records of the run (the first --limit), in the order that positions them for sharding."""
    registry.get("verifiers", cfg.answer_type)  # an unknown verifier fails before any model loads
    records = load_expert_data(cfg.data)
    return records[: cfg.limit] if cfg.limit else records


def resolve_engine(cfg: GenerateConfig, problems: int, record: SettingsRecord, announce_choice: bool = True):
    """Settle --backend auto, the engine's draft tokens and batch size; the rollout engine class (None for
    direct sampling)."""
    choice = auto_backend(cfg, problems, record) if cfg.backend == AUTO else None
    if choice is not None:
        cfg.backend = choice[0]
    backend_cls = registry.get("backends", cfg.backend)
    from dail_harness.backends.base import refuse_unused_engine_options

    given = {"device": cfg.device, "enforce_eager": cfg.enforce_eager or None}
    refuse_unused_engine_options(cfg.backend, backend_cls, {k: v for k, v in given.items() if v is not None})
    if choice is not None and announce_choice:
        from dail_harness.backends.auto import announce

        announce("generate", *choice)
    engine_cls = registry.get("rollouts", cfg.backend) if cfg.mode == "mixed" else None
    if engine_cls is not None and cfg.draft_tokens is None:
        cfg.draft_tokens = engine_cls.default_draft_tokens
    if cfg.batch_size is None:
        cfg.batch_size = getattr(engine_cls, "default_batch_size", 16)
    return engine_cls


def run_generate(cfg: GenerateConfig, known: AbstractSet = frozenset()) -> dict:
    """Generate the traces OUT.traces.jsonl lacks (graded as they are stored), then select into OUT. `known`:
    (problem id, sample index) of traces stored elsewhere (a launched run's other files), not drawn again."""
    records = load_records(cfg)
    record = SettingsRecord(settings_path(cfg.out), cfg.out, "D_syn file")
    engine_cls = resolve_engine(cfg, len(records), record)
    templates = Templates.from_file(cfg.templates) if cfg.templates else Templates()
    refuse_old_sharding(record)
    job = Job(record, cfg.settings(), trace_log(cfg.out))
    done = job.resume()
    skip = done | set(known)
    shard = as_shard(cfg.shard, cfg.sample_block, len(records))
    todo = pending(records, cfg.n, shard, lambda r, i: (r.problem_id, i) in skip)
    stats: dict[str, Any] = {"rows": len(done), "new_rows": 0, "tokens": 0, "student_tokens": 0, "privileged_tokens": 0}
    if todo:
        _generate(cfg, engine_cls, records, templates, todo, job, stats)
        job.finish()
    stats["rows"] += stats["new_rows"]
    stats["acceptance_rate"] = (
        stats["student_tokens"] / stats["tokens"] if stats["tokens"] and cfg.mode == "mixed" else None
    )
    ids = {r.problem_id for r in records}
    stats["selection"] = write_selection(cfg.out, str(cfg.select), cfg.select_by, cfg.seed, ids)
    return stats


def auto_backend(cfg: GenerateConfig, problems: int, record: SettingsRecord) -> tuple[str, str]:
    """`--backend auto`: (back-end, reason): the one a resumed run started with, else by the job's size (and
    hf when a flag only hf uses is given; `--enforce-eager` is vLLM's); see backends/auto.py."""
    from dail_harness.backends.auto import choose_backend

    started = record.read().get("backend") if record.exists() else None
    if started in ("hf", "vllm"):
        return started, "the back-end this run started with"
    if cfg.enforce_eager:
        return "vllm", "--enforce-eager is a vLLM setting"
    hf_only = [flag for flag, given in (("--device", cfg.device), ("--static-cache", cfg.static_cache)) if given]
    hf_only += ["--compile"] if cfg.compile else []
    hf_only += ["--batch-size"] if cfg.batch_size is not None and cfg.mode == "direct" else []  # vLLM's are its own
    return choose_backend(problems * cfg.n * int(cfg.max_tokens or 0), cfg.model, hf_only)


@dataclass
class Drawn:
    """One finished trace as an engine returns it, before it is graded and stored."""

    problem_id: str
    sample_index: int
    token_ids: list[int]
    student_tokens: int
    privileged_tokens: int
    finish_reason: str


def _generate(cfg: GenerateConfig, engine_cls, records, templates, todo: list[Pending], job: Job, stats) -> None:
    """Draw the traces `todo` lacks, grade each batch and store it as it finishes."""
    from dail_harness.backends.base import open_backend
    from dail_harness.eval.grading import GradingPool

    backend = open_backend(
        cfg.backend,
        cfg.model,
        cfg.seed,
        device=cfg.device,
        dtype=cfg.dtype,
        batch_size=None if cfg.backend == "vllm" else cfg.batch_size,  # vLLM's is the rollout's pairs per call
        chat_template_kwargs={"enable_thinking": cfg.thinking},
        enforce_eager=cfg.enforce_eager or None,
        **(getattr(engine_cls, "backend_options", {}) if engine_cls is not None else {}),
    )
    prompts = _render_prompts(cfg, backend, todo, templates)
    job.start()
    by_id = {r.problem_id: r for r in records}
    traces = sum(len(w.indices) for w in todo)
    bound = traces * int(cfg.max_tokens or 0)
    bar = JobProgress(f"generate ({cfg.mode})", "trace", traces, bound, cfg.progress, current_launch())

    def stored(rows: list[dict]) -> None:
        tokens = sum(r["num_tokens"] for r in rows)
        for key in ("student_tokens", "privileged_tokens"):
            stats[key] += sum(r[key] for r in rows)
        stats["tokens"] += tokens
        mixed = cfg.mode == "mixed" and stats["tokens"]
        bar.update(
            len(rows), tokens, **({"accept": f"{stats['student_tokens'] / stats['tokens']:.2f}"} if mixed else {})
        )

    with backend, GradingPool(cfg.grade_workers) as pool:
        batches = (
            _mixed(cfg, backend, todo, prompts)
            if engine_cls is not None
            else _direct(cfg, backend, todo, prompts, templates)
        )
        graded = (
            _graded_rows(cfg, [_trace_row(cfg, backend, by_id, prompts, d) for d in drawn], pool) for drawn in batches
        )
        stats["new_rows"] += len(job.run(graded, stored))
    bar.close()


def _render_prompts(cfg: GenerateConfig, backend, todo, templates) -> dict[str, tuple[list[int], list[int], str]]:
    """Each problem's student and privileged prompt ids, and the expert solution the privileged prompt holds
    (trailing `Solution N:` blocks dropped until it fits the context)."""
    from dail_harness.backends.base import render_prompt_ids

    kwargs = {"enable_thinking": cfg.thinking}

    def render(text: str) -> list[int]:
        return render_prompt_ids(backend.tokenizer, text, chat_template_kwargs=kwargs)

    limit = cfg.max_prompt_tokens or max(256, backend.context_length - int(cfg.max_tokens or 0))
    prompts = {}
    for rec in (w.item for w in todo):
        solution = fit_solution(
            rec.solution, lambda s, rec=rec: len(render(privileged_prompt(rec.problem, s, templates))) <= limit
        )
        prompts[rec.problem_id] = (
            render(student_prompt(rec.problem, templates)),
            render(privileged_prompt(rec.problem, solution, templates)),
            solution,
        )
    return prompts


def _mixed(cfg: GenerateConfig, backend, todo: list[Pending], prompts) -> Iterator[list[Drawn]]:
    """Mixed-policy rollouts through the back-end's paired sampling, batch by batch."""
    from dail_harness.eval.thinking import think_end_id
    from dail_harness.rollout.base import RolloutConfig, RolloutRequest

    device = str(getattr(getattr(backend, "model", None), "device", "cpu"))
    rcfg = RolloutConfig(
        tau=cfg.tau,
        draft_tokens=1 if cfg.draft_tokens is None else cfg.draft_tokens,
        max_tokens=int(cfg.max_tokens or 0),
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        top_k=cfg.top_k,
        seed=cfg.seed,
        batch_size=int(cfg.batch_size or 16),
        proposal=cfg.proposal,
        static_cache=device.startswith("cuda") if cfg.static_cache is None else cfg.static_cache,
        compile=cfg.compile,
        suppress_token_ids=[think_end_id(backend.tokenizer)] if cfg.thinking else [],
    )
    requests = [
        RolloutRequest(f"{w.item.problem_id}#{i}", *prompts[w.item.problem_id][:2]) for w in todo for i in w.indices
    ]
    for batch in backend.rollout(requests, rcfg):
        yield [
            Drawn(
                res.row_id.rsplit("#", 1)[0],
                int(res.row_id.rsplit("#", 1)[1]),
                res.token_ids,
                res.student_tokens,
                res.privileged_tokens,
                res.finish_reason,
            )
            for res in batch
        ]


def _direct(cfg: GenerateConfig, backend, todo: list[Pending], prompts, templates) -> Iterator[list[Drawn]]:
    """Direct sampling from the privileged student (every token privileged), group by group."""
    from dail_harness.backends.base import GenerationRequest

    requests = [
        GenerationRequest(
            w.item.problem_id, privileged_prompt(w.item.problem, prompts[w.item.problem_id][2], templates), w.indices
        )
        for w in todo
    ]
    for completions in backend.generate(requests, cfg.sampling_params(cfg.n, max_tokens=int(cfg.max_tokens or 0))):
        yield [Drawn(c.request_id, c.sample_index, c.token_ids, 0, c.num_tokens, c.finish_reason) for c in completions]


def _trace_row(cfg: GenerateConfig, backend, by_id, prompts, d: Drawn) -> dict:
    """The stored row of one trace (D_syn's format, see the module docstring)."""
    rec = by_id[d.problem_id]
    waypoints, answer = waypoints_for(rec, cfg.waypoints)
    eos_ids = set(backend.eos_ids)
    ids = d.token_ids
    return {
        "problem_id": d.problem_id,
        "sample_index": d.sample_index,
        "problem": rec.problem,
        "solution": rec.solution,
        "privileged_solution": prompts[d.problem_id][2],
        "answer": answer,
        "waypoints": waypoints,
        "trace": backend.tokenizer.decode([t for t in ids if t not in eos_ids], skip_special_tokens=False),
        "mode": cfg.mode,
        "tau": cfg.tau if cfg.mode == "mixed" else None,
        "draft_tokens": cfg.draft_tokens if cfg.mode == "mixed" else None,
        "student_tokens": d.student_tokens,
        "privileged_tokens": d.privileged_tokens,
        "acceptance_rate": d.student_tokens / len(ids) if ids and cfg.mode == "mixed" else None,
        "num_tokens": len(ids),
        "finish_reason": d.finish_reason,
        "temperature": cfg.temperature,
        "top_k": cfg.top_k,
        "top_p": cfg.top_p,
        "seed": cfg.seed,
        "model": cfg.model,
    }


def _graded_rows(cfg: GenerateConfig, rows: list[dict], pool) -> list[dict]:
    """Grade the rows that have an answer (ours, and the authors' string equality for every row)."""
    from dail_harness.eval.grading import GradeJob

    gradable = [r for r in rows if r["answer"]]
    jobs = [GradeJob(r["trace"], str(r["answer"]), cfg.answer_type, r["finish_reason"]) for r in gradable]
    for r, v in zip(gradable, pool.grade(jobs)):
        r.update(correct=v.correct, extracted=v.extracted)
    for r in rows:
        r.setdefault("correct", False)
        r.setdefault("extracted", None)
        r["authors_correct"] = authors_correct(r["trace"], r["solution"])
    return rows
