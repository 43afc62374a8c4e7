"""The result of grading one completion."""

from __future__ import annotations

from dataclasses import asdict, dataclass


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

    def to_dict(self) -> dict:
        return asdict(self)
