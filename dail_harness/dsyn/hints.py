"""`dail-harness data hints`: one abstract hint per problem, written by the model itself (NuRL's hints).

The model sees the problem, the expert solution and the final answer and is asked for the key idea
without the answer. A hint that reveals the answer (or boxes anything) is rejected and drawn again,
up to `--attempts` times; a problem whose every attempt leaked keeps no hint (recorded, and NuRL does
not hint it). NuRL's exact prompt is not public; ours is `HINT_PROMPT`, overridable with
`--prompt-template`. Rows are appended as problems finish (resumable; settings in OUT.settings.json).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dail_harness.dsyn.expert_data import load_expert_data
from dail_harness.dsyn.prompts import final_answer_of
from dail_harness.errors import HarnessError
from dail_harness.files import append_jsonl, iter_jsonl, repair_partial_tail
from dail_harness.models.cpu import threads_option
from dail_harness.options import PATH, PATH_OR_NAME, as_settings, option, parse_shard
from dail_harness.settings import SettingsRecord
from dail_harness.verifiers.extract import strip_math_delimiters

HINT_PROMPT = """You are helping a student who is stuck on a competition mathematics problem. Below are the problem, an expert solution and its final answer.

## Problem:
{problem}

## Expert solution:
{solution}

## Final answer:
{answer}

Write one short hint (one to three sentences) that states the key idea, technique or first step the student needs, in general terms. The hint must not contain the final answer or any number derived in the solution, and must not solve the problem. Reply with the hint only, after "Hint:"."""  # noqa: E501


@dataclass(kw_only=True)
class HintsConfig:
    """Settings of `dail-harness data hints` (sampling flags named as in `eval`)."""

    data: str = option(
        path=PATH, help="Expert data with problem_id, problem, solution and an answer (field or last box)."
    )
    model: str = option(path=PATH_OR_NAME, help="The model that writes the hints (NuRL: the model being trained).")
    out: str = option(path=PATH, help="Hints JSONL to write; rerunning resumes.")
    attempts: int = option(8, ge=1, help="Draws per problem before giving up on a hint that hides the answer.")
    max_tokens: int = option(256, ge=1, help="Maximum new tokens per hint.")
    temperature: float = option(0.6, ge=0, help="Sampling temperature.")
    top_p: float = option(0.95, gt=0, le=1, help="Nucleus sampling mass.")
    seed: int = option(0, help="Hints are keyed by (seed, problem, attempt).")
    backend: str = option("hf", help="Sampling back-end (hf or vllm).")
    prompt_template: str | None = option(
        None, path=PATH, help="File with the hint prompt ({problem}, {solution}, {answer})."
    )
    batch_size: int | None = option(None, ge=1, help="Rows per generate call (hf).")
    limit: int | None = option(None, ge=1, help="Only the first L problems.")
    shard: tuple[int, int] | None = option(
        None, parse=parse_shard, metavar="i/N", help="Only problems with index % N == i."
    )
    device: str | None = option(None, help="cpu, cuda ... (default: cuda if available).")
    threads: int | None = threads_option()
    dtype: str | None = option(None, help="float32, bfloat16 ... (default: bf16 on GPU, fp32 on CPU).")
    progress: bool = option(True, help="Show a progress bar.")

    def settings(self) -> dict:
        return as_settings(self, exclude=("out", "progress", "batch_size", "device", "limit", "threads"))

    def template(self) -> str:
        if self.prompt_template is None:
            return HINT_PROMPT
        path = Path(self.prompt_template)
        if not path.exists():
            raise HarnessError("prompt template file not found", path=str(path))
        text = path.read_text(encoding="utf-8")
        if "{problem}" not in text:
            raise HarnessError("hint prompt template has no {problem} placeholder", path=str(path))
        return text


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


def generate_hints(cfg: HintsConfig, backend: Any = None) -> dict:
    """Draw hints for the problems the output file lacks; returns counts (problems, new, without a hint,
    rejected draws). `backend` may be a loaded sampling back-end (tests)."""
    from tqdm import tqdm

    from dail_harness import registry
    from dail_harness.backends.base import GenerationRequest
    from dail_harness.sampling import SamplingParams

    records = load_expert_data(cfg.data)
    records = records[: cfg.limit] if cfg.limit else records
    records = records[cfg.shard[0] :: cfg.shard[1]] if cfg.shard else records
    answers = {r.problem_id: final_answer_of(r.solution, r.answer) for r in records}
    missing = next((r for r in records if not answers[r.problem_id]), None)
    if missing is not None:
        raise HarnessError(
            f"problem '{missing.problem_id}' has no answer (no `answer` field and no \\boxed{{}} in its solution)",
            path=cfg.data,
            field="answer",
        )
    template = cfg.template()
    record = SettingsRecord(Path(str(cfg.out) + ".settings.json"), cfg.out, "hints file")
    if record.check(cfg.settings()):
        repair_partial_tail(cfg.out)
    done = (
        {str(r["problem_id"]) for _, r in iter_jsonl(cfg.out, allow_partial_tail=True)}
        if Path(cfg.out).exists()
        else set()
    )
    todo = [r for r in records if r.problem_id not in done]
    stats = {"problems": len(records), "new": 0, "without_hint": 0, "rejected": 0}
    if not todo:
        return stats
    if backend is None:
        backend = registry.get("backends", cfg.backend)(
            cfg.model, device=cfg.device, dtype=cfg.dtype, batch_size=cfg.batch_size, seed=cfg.seed
        )
    record.write(cfg.settings())
    prompts = {
        r.problem_id: template.replace("{problem}", r.problem)
        .replace("{solution}", r.solution)
        .replace("{answer}", str(answers[r.problem_id]))
        for r in todo
    }
    rejected = {r.problem_id: 0 for r in todo}
    params = SamplingParams(
        temperature=cfg.temperature, top_p=cfg.top_p, presence_penalty=0.0, max_tokens=cfg.max_tokens, seed=cfg.seed
    )
    bar = tqdm(total=len(todo), desc="hints", unit="problem", disable=not cfg.progress, dynamic_ncols=True)
    pending = [r.problem_id for r in todo]
    for attempt in range(cfg.attempts):
        requests = [GenerationRequest(f"hint/{pid}", prompts[pid], [attempt]) for pid in pending]
        accepted: list[dict] = []
        for batch in backend.generate(requests, params):
            for c in batch:
                pid = c.request_id.split("/", 1)[1]
                hint = extract_hint(c.text)
                if hint is None or reveals_answer(hint, str(answers[pid])):
                    rejected[pid] += 1
                    continue
                accepted.append(
                    {
                        "problem_id": pid,
                        "hint": hint,
                        "attempts": attempt + 1,
                        "rejected": rejected[pid],
                        "model": cfg.model,
                    }
                )
        append_jsonl(cfg.out, accepted)
        bar.update(len(accepted))
        kept = {row["problem_id"] for row in accepted}
        pending = [pid for pid in pending if pid not in kept]
        stats["new"] += len(accepted)
        if not pending:
            break
    append_jsonl(
        cfg.out,
        [
            {"problem_id": pid, "hint": None, "attempts": cfg.attempts, "rejected": rejected[pid], "model": cfg.model}
            for pid in pending
        ],
    )
    bar.update(len(pending))
    bar.close()
    record.finish()
    stats["new"] += len(pending)
    stats["without_hint"] = len(pending)
    stats["rejected"] = sum(rejected.values())
    return stats
