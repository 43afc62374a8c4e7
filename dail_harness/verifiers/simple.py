"""The authors' simpler grader, for comparison: normalised string equality of the last \\boxed{}.

The released DAIL code grades by a MATH-style normaliser applied to the last box and to the gold.
The harness grades with anchored extraction and symbolic equivalence instead, and records this
grader's verdict beside its own (`simple_correct`) so reports can state the agreement and the score
the simpler grader would have given.
"""

from __future__ import annotations

import re

from dail_harness.verifiers.extract import last_boxed, strip_math_delimiters


def normalize_simple(s: str) -> str:
    """MATH's `strip_string` steps (Hendrycks et al.): spaces, \\left/\\right, dfrac, degrees, percent,
    dollars, \\text{}, and a short `x =` prefix. No numeric equivalence: `033` is not `33` here."""
    s = strip_math_delimiters(s)
    s = re.sub(r"\\text\{\s*([^{}]*)\}", r"\1", s)
    for old, new in (
        ("\\left", ""),
        ("\\right", ""),
        ("\\!", ""),
        ("\\,", ""),
        ("\\;", ""),
        ("dfrac", "frac"),
        ("tfrac", "frac"),
        ("^\\circ", ""),
        ("^{\\circ}", ""),
        ("\\%", ""),
        ("%", ""),
        ("\\$", ""),
    ):
        s = s.replace(old, new)
    s = re.sub(r"\s+", "", s)
    if "=" in s and len(s.split("=")[0]) <= 2:
        s = s.split("=", 1)[1]
    return s


def simple_correct(completion: str, gold: str) -> bool:
    box = last_boxed(completion)
    return box is not None and normalize_simple(box) == normalize_simple(gold)
