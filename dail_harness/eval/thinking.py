"""Thinking models and budget forcing, over any sampling back-end.

Phase 1 samples the thinking, stopping at the `</think>` token or at the budget b. Phase 2 answers:
a trace that closed its thinking by itself continues from there; one that hit the budget gets the
authors' `\\n</think>` appended (budget forcing, Muennighoff et al. 2025, as in the paper's Figure 4) and
in both cases up to `answer_tokens` (2048) more tokens are sampled for the answer (the paper's text).
With `force_answer` (the default of the authors' scripts) every trace then also gets
` \\n The final answer (in \\boxed{}):` and 100 answer tokens. The authors strip a natural `</think>`
and append `\\n</think>`; here a trace that closed by itself keeps its own `</think>` (the model's exact
continuation), which differs from theirs by one newline before it.

Budget forcing leaves everything before the budget unchanged, so in `shared` mode each trace is
sampled once to the largest budget and its answer phase is branched at every smaller budget from that
common prefix (prefix caching makes the branches cheap; a trace that closed before a budget shares
one answer among all larger budgets). `independent` mode samples each budget from scratch. Answer
requests are keyed by (sample, cut point), so with keyed sampling the two modes draw from the same
distribution and a test compares them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from dail_harness.backends.base import Completion, GenerationRequest, SamplingBackend
from dail_harness.errors import HarnessError
from dail_harness.sampling import SamplingParams

THINK_END = "</think>"
FORCE_CLOSE = "\n</think>"
"""Appended when the thinking is cut at its budget: the authors' string."""
FORCE_ANSWER = " \n The final answer (in \\boxed{}):"
"""The authors' default second pass (`--force-answer`): appended after the thinking closes, with 100 tokens."""
FORCE_ANSWER_TOKENS = 100
DEFAULT_ANSWER_TOKENS = 2048
PROBLEMS_PER_ROUND = 32  # phase 1 + phase 2 per group of prompts, so results are stored as they finish


@dataclass
class Sampled(Completion):
    """One finished sample of one condition, ready to grade and store. Its `token_ids` are all the
    generated ids: thinking, a forced close if any, answer."""

    budget: int | None = None
    """Thinking budget (None: no budget forcing)."""
    thinking_tokens: int = 0
    """Generated tokens of the thinking phase (the model's own `</think>` included)."""
    answer_tokens: int = 0
    """Generated tokens after the thinking (the forced `</think>` not counted)."""
    forced_close: bool = False
    """The thinking was cut and `</think>` appended."""
    forced_answer: bool = False
    """The authors' final-answer pass was appended (`--force-answer`)."""


def think_end_id(tokenizer) -> int:
    """The id of the single `</think>` token; thinking mode needs one."""
    ids = tokenizer(THINK_END, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise HarnessError(
            f"thinking mode needs a model whose tokenizer has a single '{THINK_END}' token "
            f"(this one splits it into {len(ids)}); use --thinking off"
        )
    return ids[0]


def split_counts(token_ids: list[int], end_id: int | None) -> tuple[int, int]:
    """(thinking, answer) token counts of a plain completion: thinking ends at the first `</think>`."""
    if end_id is not None and end_id in token_ids:
        k = token_ids.index(end_id) + 1
        return k, len(token_ids) - k
    return 0, len(token_ids)


def plain(c: Completion, end_id: int | None) -> Sampled:
    thinking, answer = split_counts(c.token_ids, end_id)
    return Sampled(**vars(c), thinking_tokens=thinking, answer_tokens=answer)


def generate_budgeted(
    backend: SamplingBackend,
    requests: list[GenerationRequest],
    params: SamplingParams,
    budgets: list[int | None],
    *,
    answer_tokens: int = DEFAULT_ANSWER_TOKENS,
    mode: str = "shared",
    stats: dict | None = None,
    force_answer: bool = False,
) -> Iterator[list[Sampled]]:
    """Thinking + answer for every request and budget (None = no budget beyond params.max_tokens).

    Yields the samples of each group of prompts once both phases are done. If given, `stats` gets
    the tokens generated per phase (`thinking_generated`, `answer_generated`), for benchmarks.
    """
    stats = stats if stats is not None else {}
    stats.setdefault("thinking_generated", 0)
    stats.setdefault("answer_generated", 0)
    if mode not in ("shared", "independent"):
        raise HarnessError(f"--budget-mode must be 'shared' or 'independent', got '{mode}'")
    tok = backend.tokenizer
    end_id = think_end_id(tok)
    close_ids = tok(FORCE_CLOSE, add_special_tokens=False)["input_ids"]
    answer_ids = tok(FORCE_ANSWER, add_special_tokens=False)["input_ids"] if force_answer else []
    limits = {b: (b if b is not None else params.max_tokens) for b in budgets}
    for start in range(0, len(requests), PROBLEMS_PER_ROUND):
        group = requests[start : start + PROBLEMS_PER_ROUND]
        traces = _think(backend, group, params, limits, budgets, mode, end_id, stats)
        # phase 2: one answer per distinct (trace, cut point)
        plans, answer_reqs = [], {}
        for r in group:
            for i in r.sample_indices:
                for b in budgets:
                    trace_id = r.request_id if mode == "shared" else f"{r.request_id}#budget={b}"
                    t = traces[(trace_id, i)].token_ids
                    closed = bool(t) and t[-1] == end_id
                    if closed and len(t) <= limits[b]:
                        cut, prefix, forced = len(t), t + answer_ids, False
                    else:
                        cut = min(limits[b], len(t))
                        prefix, forced = t[:cut] + close_ids + answer_ids, True
                    aid = f"{trace_id}#answer@{cut}{'f' if forced else ''}"
                    if (aid, i) not in answer_reqs:
                        answer_reqs[(aid, i)] = GenerationRequest(aid, r.prompt, [i], prefix_ids=prefix)
                    plans.append((r, i, b, aid, cut, prefix, forced))
        answers: dict[tuple, Completion] = {}
        answer_params = replace(params, max_tokens=answer_tokens, stop_token_ids=[])
        for batch in backend.generate(list(answer_reqs.values()), answer_params):
            for c in batch:
                answers[(c.request_id, c.sample_index)] = c
                stats["answer_generated"] += c.num_tokens
        yield [
            _joined(tok, r, i, b, cut, prefix, forced, answers[(aid, i)], force_answer)
            for r, i, b, aid, cut, prefix, forced in plans
        ]


def _think(backend, group, params, limits, budgets, mode, end_id, stats) -> dict[tuple, Completion]:
    """Phase 1: one trace per sample (shared) or per sample and budget (independent), stopped at </think>."""
    runs = [(None, max(limits.values()))] if mode == "shared" else [(b, limits[b]) for b in budgets]
    traces: dict[tuple, Completion] = {}
    for tag, limit in runs:
        reqs = [replace(r, request_id=r.request_id if tag is None else f"{r.request_id}#budget={tag}") for r in group]
        think_params = replace(params, max_tokens=limit, stop_token_ids=[end_id], stop=[])
        for batch in backend.generate(reqs, think_params):
            for c in batch:
                traces[(c.request_id, c.sample_index)] = c
                stats["thinking_generated"] += c.num_tokens
    return traces


def _joined(tok, r, i, b, cut, prefix, forced, a: Completion, force_answer: bool) -> Sampled:
    """One sample at one budget: its (cut and closed) thinking, then its answer."""
    return Sampled(
        r.request_id,
        i,
        tok.decode(prefix, skip_special_tokens=False) + a.text,
        len(prefix) + a.num_tokens,
        a.prompt_tokens - len(prefix),
        a.finish_reason,
        budget=b,
        thinking_tokens=cut,
        answer_tokens=a.num_tokens,
        forced_close=forced,
        forced_answer=force_answer,
        token_ids=list(prefix) + list(a.token_ids),
    )
