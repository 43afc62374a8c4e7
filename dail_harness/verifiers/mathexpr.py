"""The `math` verifier: math-verify symbolic equivalence on the anchored answer.

math-verify's own extraction is never run on the raw completion (it would pick a number out of an
unfinished text): we extract the last box or final-answer statement ourselves and give math-verify
only that, wrapped in `$...$` (bare text like `(x+1)^2` is otherwise not parsed). Answers that are not
mathematics (text answers in IMO-AnswerBench) fall back to normalised string equality.
"""

from __future__ import annotations

from dail_harness import registry
from dail_harness.verifiers.base import Verdict, Verifier
from dail_harness.verifiers.extract import extract_answer, normalize_text, strip_math_delimiters

PARSE_TIMEOUT_S = 5
VERIFY_TIMEOUT_S = 5


def _parse(expr: str):
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    return parse(
        f"${strip_math_delimiters(expr)}$",
        extraction_config=[LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()],
        parsing_timeout=PARSE_TIMEOUT_S,
    )


def symbolic_equal(gold: str, predicted: str) -> bool:
    """True if `predicted` equals `gold` symbolically (math-verify) or as normalised text."""
    if normalize_text(gold) == normalize_text(predicted):
        return True
    from math_verify import verify

    gold_parsed, pred_parsed = _parse(gold), _parse(predicted)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=VERIFY_TIMEOUT_S))


@registry.register("verifiers", "math")
class MathVerifier(Verifier):
    """Math answers: symbolic equivalence (math-verify) of the anchored answer."""

    def verify(self, completion: str, gold: str, finish_reason: str | None = None) -> Verdict:
        extracted = extract_answer(completion, finish_reason=finish_reason)
        if extracted is None:
            return Verdict(False, None, True)
        return Verdict(symbolic_equal(gold, extracted), extracted, False)
