"""The `integer` verifier (AIME-style): zero padding, thousands separators, degrees, units.

An extracted answer that is not a plain integer after normalisation (e.g. `2^{10}`) falls back to
symbolic equivalence, so `\\boxed{2^{10}}` for 1024 still counts.
"""

from __future__ import annotations

import re

from dail_harness import registry
from dail_harness.verifiers.base import Verdict, Verifier
from dail_harness.verifiers.extract import extract_answer, strip_math_delimiters

_WRAPPERS = re.compile(r"\\(?:text|textbf|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_NOISE = [
    r"\^\s*\{?\s*\\circ\s*\}?",
    r"°",
    r"\\%",
    r"%",
    r"\\\$",
    r"\$",
    r"\\[,;:! ]",
    r"\{,\}",
    r"~",
    r"\\(?:left|right)\b",
    r"\\(?:quad|qquad)\b",
]
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+$")
_INT = re.compile(r"^[+-]?\d+$")
_DECIMAL_ZERO = re.compile(r"^([+-]?\d+)\.0*$")
_UNIT_TAIL = re.compile(r"^([+-]?[\d,]+(?:\.0*)?)\s*[a-zA-Z][a-zA-Z .]*$")


def parse_integer(text: str | None) -> int | None:
    """Parse an answer like `033`, `33,124,147`, `45^\\circ`, `204 minutes`, `x = 12` to an int."""
    if text is None:
        return None
    s = strip_math_delimiters(text)
    for _ in range(3):
        s = _WRAPPERS.sub(r"\1", s)
    for pat in _NOISE:
        s = re.sub(pat, "", s)
    s = s.strip()
    if "=" in s:
        s = s.rsplit("=", 1)[1].strip()
    s = s.rstrip(".").strip()
    m = _UNIT_TAIL.match(s)
    if m:
        s = m.group(1).strip()
    s = s.replace(" ", "")
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    m = _DECIMAL_ZERO.match(s)
    if m:
        s = m.group(1)
    if _INT.match(s):
        return int(s)
    return None


@registry.register("verifiers", "integer")
class IntegerVerifier(Verifier):
    """Integer answers: exact integer equality after normalisation (symbolic fallback)."""

    def verify(self, completion: str, gold: str, finish_reason: str | None = None) -> Verdict:
        extracted = extract_answer(completion, finish_reason=finish_reason)
        if extracted is None:
            return Verdict(False, None, True)
        gold_int = parse_integer(gold)
        pred_int = parse_integer(extracted)
        if gold_int is not None and pred_int is not None:
            return Verdict(pred_int == gold_int, extracted, False)
        from dail_harness.verifiers.mathexpr import symbolic_equal

        return Verdict(symbolic_equal(gold, extracted), extracted, False)

    def canonical(self, extracted: str) -> str | None:
        value = parse_integer(extracted)
        return str(value) if value is not None else super().canonical(extracted)
