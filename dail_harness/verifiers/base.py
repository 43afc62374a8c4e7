"""The verifier interface: a completion and a gold answer in, a Verdict out.

A verifier extracts the final answer (anchored: the last box or an explicit final-answer statement),
compares it with the gold answer, and names the answer's canonical form (`answer_key`), so equal
answers vote together in maj@k however they were written (`033` and `33`, `(C)` and `C`). A plugin
verifier may be a `Verifier` subclass or a plain function `(completion, gold, finish_reason) ->
Verdict`; plain functions get the normalised answer text as their canonical form.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from dail_harness.verifiers.extract import normalize_text


@dataclass
class Verdict:
    correct: bool
    """The extracted answer is equivalent to the gold answer."""
    extracted: str | None
    """The answer text the verifier extracted (None if it found no answer)."""
    no_answer: bool
    """No answer could be extracted (e.g. a truncated trace); such samples are never correct."""
    timed_out: bool = False
    """Grading exceeded its time limit (counted as incorrect and reported)."""
    error: str | None = None
    """An exception raised while grading, if any (counted as incorrect)."""
    answer_key: str | None = None
    """Canonical form of the extracted answer, for majority voting (set by the verifier)."""
    score: float | None = None
    """A graded reward in [0, 1] where the verifier gives partial credit; None means float(correct)."""

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def reward(self) -> float:
        return float(self.correct) if self.score is None else float(self.score)


class Verifier:
    """Base class; subclasses register with `@registry.register("verifiers", NAME)`."""

    def verify(self, completion: str, gold: str, finish_reason: str | None = None) -> Verdict:
        raise NotImplementedError

    def canonical(self, extracted: str) -> str | None:
        """The voting form of an extracted answer (default: normalised text)."""
        return normalize_text(extracted)

    def __call__(self, completion: str, gold: str, finish_reason: str | None = None) -> Verdict:
        verdict = self.verify(completion, gold, finish_reason)
        if verdict.extracted is not None and verdict.answer_key is None:
            verdict.answer_key = self.canonical(verdict.extracted)
        return verdict


class FunctionVerifier(Verifier):
    """A plain function registered as a verifier."""

    def __init__(self, fn: Callable[..., Verdict]):
        self.fn = fn

    def verify(self, completion: str, gold: str, finish_reason: str | None = None) -> Verdict:
        return self.fn(completion, gold, finish_reason)


def as_verifier(obj: Any) -> Verifier:
    """A registered verifier (a Verifier subclass, instance, or plain function) as a Verifier."""
    if isinstance(obj, Verifier):
        return obj
    if isinstance(obj, type) and issubclass(obj, Verifier):
        return obj()
    return FunctionVerifier(obj)


def get_verifier(answer_type: str) -> Verifier:
    from dail_harness import registry

    return as_verifier(registry.get("verifiers", answer_type))
