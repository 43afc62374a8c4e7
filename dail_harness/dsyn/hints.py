"""`dail-harness data hints`: one abstract hint per problem, written by the model itself (NuRL's hints).

NuRL (Chen et al. 2025, arXiv 2509.25666) makes a hint in two steps, and so does the default `--style nurl`:
given the question and its gold answer, the model first writes a chain of thought that explains how to reach
the answer (`EXPLAIN_PROMPT`); from that explanation it then writes an abstract hint with the core knowledge,
not the answer (`NURL_HINT_PROMPT`). `--style solution` is the one-shot reading: the hint is written from the
problem, the full expert solution and the answer (`HINT_PROMPT`). NuRL's exact prompts are not public; ours
follow the paper's description and are overridable (`--explain-template`, `--prompt-template`).

A hint that reveals the answer (or boxes anything) is rejected and drawn again (in the two-step style from a
new explanation), up to `--attempts` times; a problem whose every attempt leaked keeps no hint (recorded, and
NuRL does not hint it). Both steps are keyed by (seed, problem, attempt); hints are appended to OUT as problems
finish and explanations to OUT.explanations.jsonl as they are drawn, so a rerun resumes without drawing any
again (settings in OUT.settings.json).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dail_harness.dsyn.expert_data import ExpertRecord, load_expert_data
from dail_harness.dsyn.prompts import final_answer_of
from dail_harness.errors import HarnessError
from dail_harness.files import iter_jsonl
from dail_harness.models.cpu import threads_option
from dail_harness.models.loading import device_option, dtype_option
from dail_harness.options import PATH, PATH_OR_NAME, as_settings, option, parse_shard, read_template
from dail_harness.sampling import SamplingSettings, sampling_option
from dail_harness.scale.launch import current as current_launch
from dail_harness.scale.plan import JobProgress, as_shard
from dail_harness.verifiers.extract import strip_math_delimiters
from dail_harness.worklog import Job, SettingsRecord, WorkLog, pending

HINT_PROMPT = """You are helping a student who is stuck on a competition mathematics problem. Below are the problem, an expert solution and its final answer.

## Problem:
{problem}

## Expert solution:
{solution}

## Final answer:
{answer}

Write one short hint (one to three sentences) that states the key idea, technique or first step the student needs, in general terms. The hint must not contain the final answer or any number derived in the solution, and must not solve the problem. Reply with the hint only, after "Hint:"."""  # noqa: E501
"""`--style solution`: the hint from the problem, the expert solution and the answer, in one step."""

EXPLAIN_PROMPT = """Below are a competition mathematics problem and its correct final answer.

## Problem:
{problem}

## Final answer:
{answer}

Explain step by step how to arrive at this answer: the reasoning, and the key facts, theorems or techniques it uses."""
"""NuRL's step 1: a chain of thought that reaches the gold answer (the expert solution is not shown)."""

NURL_HINT_PROMPT = """Below are a competition mathematics problem and an explanation of how to solve it.

## Problem:
{problem}

## Explanation:
{explanation}

From the explanation, write one short hint (one to three sentences) that captures the core knowledge needed to solve the problem: the key idea, theorem or technique, stated abstractly. The hint must not contain the final answer or any number derived in the explanation, and must not solve the problem. Reply with the hint only, after "Hint:"."""  # noqa: E501
"""NuRL's step 2: an abstract hint from the step-1 explanation (no answer, no expert solution shown)."""

STYLES = ("nurl", "solution")


@dataclass(kw_only=True)
class HintsConfig(SamplingSettings):
    """Settings of `dail-harness data hints` (sampling flags named as in `eval`)."""

    data: str = option(
        path=PATH, help="Expert data with problem_id, problem, solution and an answer (field or last box)."
    )
    model: str = option(path=PATH_OR_NAME, help="The model that writes the hints (NuRL: the model being trained).")
    out: str = option(path=PATH, help="Hints JSONL to write; rerunning resumes.")
    style: str = option(
        "nurl",
        choices=STYLES,
        help="nurl: NuRL's two steps (an explanation given the answer, then a hint from it); solution: one step "
        "from the expert solution and the answer.",
    )
    attempts: int = option(8, ge=1, help="Draws per problem before giving up on a hint that hides the answer.")
    max_tokens: int = sampling_option("max_tokens", 256, help="Maximum new tokens per hint.", panel=None)
    explain_max_tokens: int = sampling_option(
        "max_tokens", 2048, help="Maximum new tokens per explanation (--style nurl, step 1).", panel=None
    )
    temperature: float = sampling_option("temperature", 0.6, panel=None)
    top_p: float = sampling_option("top_p", 0.95, panel=None)
    top_k: int = sampling_option("top_k", 0, panel=None)
    presence_penalty: float = sampling_option("presence_penalty", 0.0, panel=None)
    seed: int = sampling_option(
        "seed", 0, help="Hints and explanations are keyed by (seed, problem, attempt).", panel=None
    )
    backend: str = option("hf", help="Sampling back-end (hf or vllm).")
    prompt_template: str | None = option(
        None,
        path=PATH,
        content=True,
        help="File with the hint prompt: {problem} and {explanation} (--style nurl); {problem}, {solution}, "
        "{answer} (--style solution).",
    )
    explain_template: str | None = option(
        None, path=PATH, content=True, help="File with the explanation prompt of --style nurl ({problem}, {answer})."
    )
    batch_size: int | None = option(None, ge=1, help="Rows per generate call (hf).")
    limit: int | None = option(None, ge=1, help="Only the first L problems.")
    shard: tuple[int, int] | None = option(
        None, parse=parse_shard, metavar="i/N", help="Only problems with index % N == i."
    )
    device: str | None = device_option()
    threads: int | None = threads_option()
    dtype: str | None = dtype_option()
    progress: bool = option(True, help="Show a progress bar.")

    def ignored(self) -> dict[str, str]:
        """The settings this run would not use, each with who would (the command refuses them when given)."""
        if self.style == "solution":
            return dict.fromkeys(("explain_max_tokens", "explain_template"), "--style nurl uses it")
        return {}

    def settings(self) -> dict:
        """What a resume must match; `--style solution` records exactly what it did before the two-step style
        existed, so an older hints file resumes under it."""
        exclude = ["out", "progress", "batch_size", "device", "limit", "threads"]
        if self.style == "solution":
            exclude += ["style", "explain_max_tokens", "explain_template"]
        if self.top_k == 0:
            exclude.append("top_k")  # hints files written before --top-k existed resume
        if self.presence_penalty == 0:
            exclude.append("presence_penalty")  # and before --presence-penalty
        return as_settings(self, exclude=exclude)

    def template(self) -> str:
        """The hint prompt (step 2 of --style nurl, the only one of --style solution)."""
        if self.prompt_template is None:
            return NURL_HINT_PROMPT if self.style == "nurl" else HINT_PROMPT
        needs = ("problem", "explanation") if self.style == "nurl" else ("problem",)
        return read_template(self.prompt_template, needs, "hint prompt template")

    def explain(self) -> str | None:
        """The explanation prompt (step 1 of --style nurl); None for --style solution."""
        if self.style != "nurl":
            return None
        if self.explain_template is None:
            return EXPLAIN_PROMPT
        return read_template(self.explain_template, ("problem",), "explanation prompt template")


def _squash(text: str) -> str:
    return re.sub(r"\s+|\\[,;:! ]|\$|\{,\}", "", text).lower()


def reveals_answer(hint: str, answer: str) -> bool:
    """True if the hint states the final answer (whitespace- and delimiter-insensitive; a number only as a
    whole number, so 12 does not leak through 120 or 3.12, but does through 012 and 1,2 is not 12) or boxes
    anything."""
    if "\\boxed" in hint or "\\fbox" in hint:
        return True
    target = _squash(strip_math_delimiters(answer))
    if not target:
        return False
    text = _squash(hint)
    number = target.replace(",", "")
    if re.fullmatch(r"-?\d+", number):
        digits = number.lstrip("-").lstrip("0") or "0"
        text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)  # thousands separators: 1,200 is 1200
        return re.search(rf"(?<![\d.,])0*{digits}(?![\d,]|\.\d)", text) is not None
    if len(target) <= 2:  # a letter or short symbol: only as a word of its own (spaces kept)
        words = re.sub(r"\\[,;:! ]|\$", " ", hint).lower()
        return re.search(rf"(?<![a-z0-9]){re.escape(target)}(?![a-z0-9])", words) is not None
    return target in text


def extract_hint(completion: str) -> str | None:
    """The hint in a completion: the text after the last "Hint:" (else all of it), up to a blank line."""
    text = completion.split("</think>")[-1]
    if "Hint:" in text:
        text = text.rsplit("Hint:", 1)[1]
    text = text.strip().split("\n\n")[0].strip().strip('"').strip()
    return text or None


def load_hints(path: str | Path, rows: list[dict]) -> dict[str, str | None]:
    """problem_id -> hint for every training row (None: no hint could be drawn); a hint that reveals the
    row's answer, or a row without an entry, is one clear error."""
    hints: dict[str, str | None] = {}
    lines: dict[str, int] = {}
    for line, h in iter_jsonl(path):
        if "problem_id" not in h or "hint" not in h:
            raise HarnessError(
                "missing field", path=str(path), line=line, field="problem_id" if "problem_id" not in h else "hint"
            )
        if h["hint"] is not None and not isinstance(h["hint"], str):
            raise HarnessError(
                f"must be text or null, got {type(h['hint']).__name__}", path=str(path), line=line, field="hint"
            )
        hints[str(h["problem_id"])], lines[str(h["problem_id"])] = h["hint"], line
    for row in rows:
        pid = str(row["problem_id"])
        if pid not in hints:
            raise HarnessError(
                f"no hint for problem '{pid}' (rerun `dail-harness data hints` on this data)", path=str(path)
            )
        hint = hints[pid]
        if hint is not None and reveals_answer(hint, str(row["answer"])):
            raise HarnessError(f"the hint of '{pid}' reveals its answer", path=str(path), line=lines[pid], field="hint")
    return hints


def explanations_path(out: str | Path) -> Path:
    """Where --style nurl keeps its step-1 explanations, one row per (problem, attempt)."""
    return Path(str(out) + ".explanations.jsonl")


def explanation_log(out: str | Path) -> WorkLog:
    return WorkLog(explanations_path(out), lambda r: (str(r["problem_id"]), int(r["attempt"])))


def hint_log(out: str | Path) -> WorkLog:
    """OUT: one row per problem (its hint, or none after every attempt)."""
    return WorkLog(out, hint_key)


def fill(template: str, values: dict[str, str]) -> str:
    """The template with each `{name}` of `values` replaced in one pass (inserted text is never re-read)."""
    pattern = "|".join(re.escape("{" + k + "}") for k in values)
    return re.sub(pattern, lambda m: values[m.group(0)[1:-1]], template)


class HintDrawer:
    """Draws one attempt at a time for the problems still without a hint: in the two-step style the explanation
    (reused when an earlier run drew it), then the hint, which is kept only if it hides the answer."""

    def __init__(self, cfg: HintsConfig, backend: Any, records: list[ExpertRecord], answers: dict[str, str]):
        self.cfg, self.backend, self.answers = cfg, backend, answers
        self.records = {r.problem_id: r for r in records}
        self.template, self.explain_template = cfg.template(), cfg.explain()
        self.params = cfg.sampling_params()
        self.explain_params = cfg.sampling_params(max_tokens=cfg.explain_max_tokens)
        self.rejected = dict.fromkeys(self.records, 0)
        self.explanations: dict[tuple[str, int], str] = {}
        self.explanation_log = explanation_log(cfg.out)
        if self.explain_template is not None:
            rows = self.explanation_log.rows()
            self.explanations = {(str(r["problem_id"]), int(r["attempt"])): r["explanation"] for r in rows}

    def generate(self, kind: str, prompts: dict[str, str], attempt: int, params: Any) -> dict[str, str]:
        """problem_id -> text, each request keyed `kind/problem_id` with sample index `attempt`."""
        from dail_harness.backends.base import GenerationRequest

        requests = [GenerationRequest(f"{kind}/{pid}", prompt, [attempt]) for pid, prompt in prompts.items()]
        batches = self.backend.generate(requests, params)
        return {c.request_id.split("/", 1)[1]: c.text for batch in batches for c in batch}

    def explain(self, pids: list[str], attempt: int) -> dict[str, str]:
        """Step 1 for these problems at this attempt: drawn (and appended) unless an earlier run has it."""
        assert self.explain_template is not None
        todo = {
            pid: fill(self.explain_template, {"problem": self.records[pid].problem, "answer": self.answers[pid]})
            for pid in pids
            if (pid, attempt) not in self.explanations
        }
        if todo:
            drawn = {
                pid: text.split("</think>")[-1].strip()
                for pid, text in self.generate("explain", todo, attempt, self.explain_params).items()
            }
            rows = [{"problem_id": pid, "attempt": attempt, "explanation": text} for pid, text in drawn.items()]
            self.explanation_log.append(rows)
            self.explanations.update({(pid, attempt): text for pid, text in drawn.items()})
        return {pid: self.explanations[(pid, attempt)] for pid in pids}

    def hint_prompts(self, pids: list[str], attempt: int) -> dict[str, str]:
        if self.explain_template is None:
            return {
                pid: fill(
                    self.template,
                    {"problem": r.problem, "solution": r.solution, "answer": self.answers[pid]},
                )
                for pid, r in ((pid, self.records[pid]) for pid in pids)
            }
        explained = self.explain(pids, attempt)
        return {
            pid: fill(
                self.template,
                {"problem": self.records[pid].problem, "explanation": explained[pid], "answer": self.answers[pid]},
            )
            for pid in pids
        }

    def draw(self, pids: list[str], attempt: int) -> list[dict]:
        """The rows of the problems whose hint at this attempt hides the answer (the others count a rejection)."""
        accepted = []
        for pid, text in self.generate("hint", self.hint_prompts(pids, attempt), attempt, self.params).items():
            hint = extract_hint(text)
            if hint is None or reveals_answer(hint, self.answers[pid]):
                self.rejected[pid] += 1
                continue
            accepted.append(self.row(pid, hint, attempt))
        return accepted

    def rounds(self, pids: list[str]) -> Iterator[list[dict]]:
        """The accepted rows of each attempt in turn (each attempt draws for the problems still without a hint),
        then a row without a hint for each problem whose every attempt leaked the answer."""
        for attempt in range(self.cfg.attempts):
            accepted = self.draw(pids, attempt)
            yield accepted
            kept = {row["problem_id"] for row in accepted}
            pids = [pid for pid in pids if pid not in kept]
            if not pids:
                return
        yield [self.row(pid, None, self.cfg.attempts - 1) for pid in pids]

    def row(self, pid: str, hint: str | None, attempt: int) -> dict:
        row = {"problem_id": pid, "hint": hint, "attempts": attempt + 1, "rejected": self.rejected[pid]}
        row["model"] = self.cfg.model
        if self.explain_template is not None and hint is not None:
            row["explanation"] = self.explanations[(pid, attempt)]
        return row


def hint_key(row: dict) -> str:
    return str(row["problem_id"])


def hints_job(cfg: HintsConfig) -> Job:
    """The hints file OUT as a resumable job (settings in OUT.settings.json, explanations beside it)."""
    record = SettingsRecord(Path(str(cfg.out) + ".settings.json"), cfg.out, "hints file")
    return Job(record, cfg.settings(), hint_log(cfg.out), side_logs=[explanation_log(cfg.out)])


def hint_records(cfg: HintsConfig) -> tuple[list[ExpertRecord], dict[str, str]]:
    """The problems of this run (limit) and their answers; a problem without one is an error."""
    records = load_expert_data(cfg.data)
    records = records[: cfg.limit] if cfg.limit else records
    answers = {r.problem_id: final_answer_of(r.solution, r.answer) for r in records}
    missing = next((r for r in records if not answers[r.problem_id]), None)
    if missing is not None:
        raise HarnessError(
            f"problem '{missing.problem_id}' has no answer (no `answer` field and no \\boxed{{}} in its solution)",
            path=cfg.data,
            field="answer",
        )
    return records, {pid: str(a) for pid, a in answers.items()}


def generate_hints(cfg: HintsConfig, backend: Any = None, known: AbstractSet = frozenset()) -> dict:
    """Draw hints for the problems the output file lacks (of its shard, with --shard); returns counts (problems,
    new, without a hint, rejected draws). `backend` may be a loaded sampling back-end (tests). `known`: problems
    whose hint is stored elsewhere (a launched run's other files), not drawn again."""

    records, answers = hint_records(cfg)
    cfg.template(), cfg.explain()  # a bad template fails before anything is loaded
    job = hints_job(cfg)
    done = job.resume() | set(known)
    shard = as_shard(cfg.shard, None, len(records))
    todo = pending(records, 1, shard, lambda r, _: r.problem_id in done)
    owned = len(records) if shard is None else sum(shard.owns(p, 0) for p in range(len(records)))
    stats = {"problems": owned, "new": 0, "without_hint": 0, "rejected": 0}
    if not todo:
        return stats
    if backend is None:
        from dail_harness.backends.base import open_backend

        backend = open_backend(
            cfg.backend, cfg.model, cfg.seed, device=cfg.device, dtype=cfg.dtype, batch_size=cfg.batch_size
        )
    job.start()
    drawer = HintDrawer(cfg, backend, [w.item for w in todo], answers)
    per_problem = cfg.attempts * (cfg.max_tokens + (cfg.explain_max_tokens if cfg.explain() else 0))
    bar = JobProgress("hints", "problem", len(todo), len(todo) * per_problem, cfg.progress, current_launch())
    new = job.run(drawer.rounds([w.item.problem_id for w in todo]), lambda rows: bar.update(len(rows)))
    bar.close()
    job.finish()
    stats.update(new=len(new), without_hint=sum(1 for r in new if r["hint"] is None))
    stats["rejected"] = sum(drawer.rejected.values())
    return stats
