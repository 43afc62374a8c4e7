"""GSM8K test excerpt (first 200 rows, MIT): grade-school word problems with integer answers."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from dail_harness import registry
from dail_harness.errors import HarnessError
from dail_harness.eval.task import VendoredTask
from dail_harness.files import require_field
from dail_harness.records import Problem


@registry.register("tasks", "gsm8k", aliases=("gsm8k-200",))
class Gsm8k(VendoredTask):
    """GSM8K test, first 200 problems (vendored excerpt); the gold is the number after `####`."""

    name = "gsm8k"
    expected_count = 200
    filename = "gsm8k_test_200.jsonl"
    columns: ClassVar[dict[str, str | None]] = {"id": None, "problem": "question", "answer": "answer"}

    def make_problem(self, row: dict, path: str | Path, line: int, columns: dict) -> Problem:
        solution = require_field(row, "answer", path, line)
        if "####" not in solution:
            raise HarnessError("no '#### N' final answer", path=str(path), line=line, field="answer")
        rationale, gold = solution.rsplit("####", 1)
        return Problem(
            id=f"gsm8k-test-{line - 1:04d}",
            problem=require_field(row, "question", path, line),
            answer=gold.strip().replace(",", ""),
            answer_type="integer",
            solution=rationale.strip(),
        )
