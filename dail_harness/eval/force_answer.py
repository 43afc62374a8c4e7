"""The authors' final-answer pass for models that do not think (`eval --force-answer` without --thinking).

The authors' `eval/eval.py` (on unless `--no_force_answer`) stops the first pass at `</think>` and gives
every sample whose text has no `\\boxed{` a second pass: the assistant message is continued with
`FINAL_ANSWER_SUFFIX` for 100 new tokens at the run's temperature, top-p and presence penalty, and the
graded text is the first pass, `\\n</think>\\n`, then the continuation (when it is not empty). Here the
continuation is one more keyed request `(problem#final-answer, sample index)`, so it is the same on a
rerun and a resumed run holds exactly what an uninterrupted one does. Its prompt is the chat template's
prompt (through the assistant prefix), then the first pass and the suffix, tokenized as text.
"""

from __future__ import annotations

from dataclasses import replace

from dail_harness.backends.base import Completion, GenerationRequest, SamplingBackend, text_ids
from dail_harness.eval.thinking import Sampled
from dail_harness.sampling import SamplingParams

FINAL_ANSWER_SUFFIX = "\n The final answer (in \\boxed{}):"
"""Appended to a non-thinking sample without a box (the authors' string)."""
JOINER = "\n</think>\n"
"""Between the first pass and the continuation in the graded text (the authors' concatenation)."""
NEEDS_ANSWER = "\\boxed{"


def needs_final_answer(text: str) -> bool:
    return NEEDS_ANSWER not in text


def continuation_request(request: GenerationRequest, first: Completion, tokenizer) -> GenerationRequest:
    """The second-pass request of one sample: its prompt, then the first pass and the suffix as text."""
    return GenerationRequest(
        f"{request.request_id}#final-answer",
        request.prompt,
        [first.sample_index],
        prefix_ids=text_ids(tokenizer, first.text + FINAL_ANSWER_SUFFIX),
    )


def force_final_answers(
    backend: SamplingBackend,
    requests: dict[str, GenerationRequest],
    batch: list[Sampled],
    params: SamplingParams,
    answer_tokens: int,
) -> list[Sampled]:
    """`batch` with every sample that lacks a box completed by the final-answer pass (`forced_answer`)."""
    todo = [s for s in batch if needs_final_answer(s.text)]
    if not todo:
        return batch
    second = {
        (c.request_id.removesuffix("#final-answer"), c.sample_index): c
        for group in backend.generate(
            [continuation_request(requests[s.request_id], s, backend.tokenizer) for s in todo],
            replace(params, max_tokens=answer_tokens, stop=[], stop_token_ids=[]),
        )
        for c in group
    }
    out = []
    for s in batch:
        c = second.get((s.request_id, s.sample_index))
        if c is None or not c.text:  # boxed already, or an empty continuation (kept as the first pass)
            out.append(replace(s, forced_answer=c is not None))
            continue
        out.append(
            replace(
                s,
                text=s.text + JOINER + c.text,
                num_tokens=s.num_tokens + c.num_tokens,
                answer_tokens=s.answer_tokens + c.num_tokens,
                finish_reason=c.finish_reason,
                token_ids=list(s.token_ids) + list(c.token_ids),
                forced_answer=True,
            )
        )
    return out
