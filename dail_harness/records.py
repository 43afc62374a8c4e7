"""The data records that flow through the harness."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

ANSWER_TYPES = ("integer", "math", "choice")


@dataclass
class Problem:
    """One benchmark or training problem."""

    id: str
    """Stable identifier, unique within its task (e.g. `2024-I-1`)."""
    problem: str
    """The problem statement as shown to the model (before the prompt template)."""
    answer: str
    """Gold final answer as text (an integer, a LaTeX expression, or a choice letter)."""
    answer_type: str = "math"
    """How answers are graded: `integer`, `math` or `choice`."""
    solution: str | None = None
    """Optional expert solution (used by training data, not by evaluation)."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Anything else the source carries (year, category, source, shuffled options ...)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
