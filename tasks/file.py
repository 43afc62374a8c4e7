"""The generic task: any local JSONL/JSON/CSV/Parquet file, with a field mapping, no code needed.

    dail-harness eval --task file --data my.jsonl --fields problem=question,answer=final \\
        --answer-type integer ...
"""

from __future__ import annotations

from pathlib import Path

from dail_harness import registry
from dail_harness.errors import HarnessError
from dail_harness.eval.task import VendoredTask
from dail_harness.files import iter_rows
from dail_harness.records import Problem

DEFAULT_FIELDS = {"id": None, "problem": "problem", "answer": "answer", "solution": None}
ID_CANDIDATES = ("id", "problem_id", "unique_id")


def parse_field_map(spec: str | dict | None) -> dict[str, str | None]:
    """`problem=question,answer=final` -> {'problem': 'question', 'answer': 'final', ...defaults}."""
    fields = dict(DEFAULT_FIELDS)
    items: list[tuple[str, str | None]] = []
    if isinstance(spec, dict):
        items = list(spec.items())
    else:
        for part in (spec or "").split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise HarnessError(f"--fields: expected ROLE=COLUMN, got '{part}'")
            role, column = part.split("=", 1)
            items.append((role.strip(), column.strip()))
    for role, col in items:
        if role not in DEFAULT_FIELDS:
            raise HarnessError(f"--fields: unknown role '{role}' (roles: {', '.join(DEFAULT_FIELDS)})")
        fields[role] = col
    return fields


@registry.register("tasks", "file", aliases=("jsonl", "csv", "parquet"))
class FileTask(VendoredTask):
    """Your own data: --data PATH [--fields problem=COL,answer=COL,id=COL] [--answer-type T]."""

    name = "file"
    answer_type = "math"  # unless --answer-type says otherwise (what `list tasks` shows)
    options_used = frozenset({"data", "fields", "answer_type"})

    def __init__(self, **options):
        super().__init__(**options)
        self.answer_type = options.get("answer_type") or type(self).answer_type
        known = registry.names("verifiers")
        if self.answer_type not in known:
            raise HarnessError(
                f"--answer-type must be one of {', '.join(known)}, got '{self.answer_type}'"
                + registry.plugin_hint("verifiers")
            )

    def load_problems(self) -> list[Problem]:
        path = self.options.get("data")
        if not path:
            raise HarnessError("task 'file' needs --data PATH (a JSONL, JSON, CSV or Parquet file)")
        fields = parse_field_map(self.options.get("fields"))
        out: list[Problem] = []
        for line, row in iter_rows(Path(path)):
            columns = {**fields, "id": fields["id"] or next((c for c in ID_CANDIDATES if c in row), None)}
            problem = self.make_problem(row, path, line, columns)
            if not columns["id"]:
                problem.id = f"row-{len(out) + 1}"
            problem.metadata = {"source_file": str(path), "line": line}
            out.append(problem)
        return out
