"""Files of problem ids (one per line: `id` for that id in every task, `task/id` for one task's problem), as
`data dedup --ids-out` writes them and `eval --exclude` and `report --exclude` read them (the paper's Figure 14)."""

from __future__ import annotations

from pathlib import Path

from dail_harness.errors import HarnessError


def read_id_file(path: str | Path) -> set[str]:
    path = Path(path)
    if not path.exists():
        raise HarnessError("problem id file not found", path=str(path))
    return {line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}


def is_listed(ids: set[str], task: str, problem_id: object) -> bool:
    return str(problem_id) in ids or f"{task}/{problem_id}" in ids
