"""MATH-500 (MIT): 500 competition problems with LaTeX answers, for quick checks."""

from __future__ import annotations

from dail_harness import registry
from dail_harness.files import iter_rows, require_field
from dail_harness.records import Problem
from dail_harness.eval.task import Task, data_path


@registry.register("tasks", "math500", aliases=("math-500",))
class Math500(Task):
    """MATH-500: 500 problems, LaTeX answers graded by symbolic equivalence."""

    name = "math500"
    answer_type = "math"
    expected_count = 500

    def load_problems(self) -> list[Problem]:
        path = data_path("math500.jsonl")
        out = []
        for line, row in iter_rows(path):
            out.append(Problem(
                id=require_field(row, "unique_id", path, line),
                problem=require_field(row, "Question", path, line),
                answer=require_field(row, "Answer", path, line),
                answer_type="math",
                solution=row.get("solution"),
                metadata={"subject": row.get("subject"), "level": row.get("level")},
            ))
        return out
