"""A verifier: grade a completion against the gold answer (see CONTRIBUTING.md).

`digit-share` gives partial credit, the share of the completion's characters that are digits, so a
reward that rises smoothly as a policy learns to write numbers (the online-method example trains on
it). A verifier returns a Verdict; `score` is the reward when it is not simply correct / incorrect,
and `canonical` is the form in which equal answers vote together in maj@k.
"""

from __future__ import annotations

from dail_harness import registry
from dail_harness.verifiers.base import Verdict, Verifier


@registry.register("verifiers", "digit-share")
class DigitShare(Verifier):
    """Partial credit: the share of digits among the completion's non-space characters."""

    def verify(self, completion: str, gold: str, finish_reason: str | None = None) -> Verdict:
        chars = [c for c in completion if not c.isspace()]
        if not chars:
            return Verdict(False, None, True, score=0.0)
        share = sum(c.isdigit() for c in chars) / len(chars)
        return Verdict(share >= 0.5, "".join(c for c in chars if c.isdigit()) or None, False, score=share)

    def canonical(self, extracted: str) -> str | None:
        return extracted.lstrip("0") or "0"
