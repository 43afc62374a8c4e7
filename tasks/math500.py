"""MATH-500 (MIT): 500 competition problems with LaTeX answers, for quick checks."""

from __future__ import annotations

from typing import ClassVar

from dail_harness import registry
from dail_harness.eval.task import VendoredTask


@registry.register("tasks", "math500", aliases=("math-500",))
class Math500(VendoredTask):
    """MATH-500: 500 problems, LaTeX answers graded by symbolic equivalence."""

    name = "math500"
    answer_type = "math"
    expected_count = 500
    filename = "math500.jsonl"
    columns: ClassVar[dict[str, str | None]] = {
        "id": "unique_id",
        "problem": "Question",
        "answer": "Answer",
        "solution": "solution",
    }
    metadata_columns: ClassVar[tuple[str, ...]] = ("subject", "level")
