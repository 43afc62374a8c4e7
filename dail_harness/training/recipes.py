"""The method interface: which data a method trains on, its response text, and its contexts."""

from __future__ import annotations

from pathlib import Path

from dail_harness.dsyn.prompts import Templates, negative_prompt, privileged_prompt, student_prompt
from dail_harness.files import iter_rows, require_field
from dail_harness.errors import HarnessError


class Method:
    """Base class; subclasses register with `@registry.register("methods", NAME)`."""

    name = ""
    default_loss = "nll"
    data_kind = "d_syn"
    """`d_syn` rows (problem_id, problem, trace, solution, waypoints, answer) or `expert` rows."""
    required_fields: tuple[str, ...] = ("problem_id", "problem", "trace")

    def load_rows(self, path: str | Path) -> list[dict]:
        rows = []
        for line, row in iter_rows(path):
            for f in self.required_fields:
                require_field(row, f, path, line)
            if "waypoints" in row and not isinstance(row["waypoints"], list):
                raise HarnessError("must be a list", path=str(path), line=line, field="waypoints")
            rows.append({**row, "_line": line})
        if not rows:
            raise HarnessError("no training rows (empty data set)", path=str(path))
        return rows

    def response(self, row: dict) -> str:
        return row["trace"]

    def prompts(self, row: dict, contexts: tuple[str, ...], templates: Templates) -> dict[str, str]:
        """The user-turn text of the student context and of each reference context the loss needs."""
        out = {"student": student_prompt(row["problem"], templates)}
        if "privileged" in contexts:
            solution = row.get("privileged_solution") or row.get("solution")
            if not solution:
                raise HarnessError(f"row '{row['problem_id']}' (line {row['_line']}) has no solution for the "
                                   "privileged context", field="solution")
            out["privileged"] = privileged_prompt(row["problem"], solution, templates)
        if "negative" in contexts:
            if "waypoints" not in row:
                raise HarnessError(f"row '{row['problem_id']}' (line {row['_line']}) has no waypoints for the "
                                   "negative reference", field="waypoints")
            out["negative"] = negative_prompt(row["problem"], row["waypoints"], row.get("answer"), templates)
        return out
