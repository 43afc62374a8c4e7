"""The `choice` verifier: one letter A-D, from a box or an answer statement."""

from __future__ import annotations

import re

from dail_harness import registry
from dail_harness.verifiers.base import Verdict, Verifier
from dail_harness.verifiers.extract import answer_region, final_statement, last_boxed

_LETTER = re.compile(
    r"^\W*(?:\\text\{\s*|\\textbf\{\s*|\\mathrm\{\s*|option\s+|choice\s+)?\(?([A-D])\)?(?![A-Za-z])",
    re.IGNORECASE,
)


def parse_letter(text: str | None) -> str | None:
    """`C`, `(C)`, `C)`, `\\text{C}`, `**C**`, `Option C`, `C. 42 eV` -> `C`; anything else -> None."""
    if text is None:
        return None
    m = _LETTER.match(text.strip().replace("$", ""))
    return m.group(1).upper() if m else None


@registry.register("verifiers", "choice")
class ChoiceVerifier(Verifier):
    """Multiple choice: the extracted letter equals the gold letter."""

    def verify(self, completion: str, gold: str, finish_reason: str | None = None) -> Verdict:
        region = answer_region(completion)
        letter = parse_letter(last_boxed(region))
        if letter is None:
            letter = parse_letter(final_statement(region, truncated=finish_reason == "length"))
        if letter is None:
            return Verdict(False, None, True)
        return Verdict(letter == gold.strip().upper(), letter, False)

    def canonical(self, extracted: str) -> str | None:
        return parse_letter(extracted)
