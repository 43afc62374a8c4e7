"""The task interface: a named benchmark that loads Problem records and renders their prompts; and the files of
problem ids that leave some of them out."""

from __future__ import annotations

import inspect
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

from dail_harness import registry
from dail_harness.errors import HarnessError, did_you_mean
from dail_harness.files import iter_rows, require_field
from dail_harness.records import Problem

BOXED_PROMPT = "{problem}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}."
"""Default math prompt (the Qwen2.5-Math evaluation wording): the answer goes in a final \\boxed{}."""


class Task:
    """Base class for tasks. Subclasses set the class attributes and implement `load_problems`."""

    name: ClassVar[str] = ""
    answer_type: ClassVar[str] = "math"
    expected_count: ClassVar[int | None] = None
    """Exact number of problems the task must load (checked on load; None for user data)."""
    prompt_template: ClassVar[str] = BOXED_PROMPT
    description: ClassVar[str] = ""
    options_used: ClassVar[frozenset[str] | None] = None
    """The options this task reads from `self.options` beyond `prompt_template` (e.g. `data`, `shuffle_seed`):
    an option no task of a run reads is refused instead of being dropped. None (a task written before tasks
    declared them) accepts any option."""

    def __init__(self, **options: Any):
        self.options = options

    def load_problems(self) -> list[Problem]:
        raise NotImplementedError

    def load(self) -> list[Problem]:
        problems = self.load_problems()
        if not problems:
            raise HarnessError(f"task '{self.name}' has no problems (empty data set)")
        ids = [p.id for p in problems]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise HarnessError(f"task '{self.name}': duplicate problem id '{dup}'")
        if self.expected_count is not None and len(problems) != self.expected_count:
            raise HarnessError(f"task '{self.name}': expected {self.expected_count} problems, loaded {len(problems)}")
        verifiers = registry.names("verifiers")
        for p in problems:
            if p.answer_type not in verifiers:
                raise HarnessError(
                    f"task '{self.name}', problem '{p.id}': no verifier for answer type "
                    f"'{p.answer_type}' (known: {', '.join(verifiers)})"
                )
        return problems

    def render_prompt(self, problem: Problem) -> str:
        """The user-turn text for `problem` (the model's chat template wraps it)."""
        template = self.options.get("prompt_template") or self.prompt_template
        return template.replace("{{}}", "{}").replace("{problem}", problem.problem)


COMMON_OPTIONS = frozenset({"prompt_template"})
OPTION_FLAGS = {"data": "--data", "fields": "--fields", "answer_type": "--answer-type"}


def refuse_unused_options(tasks: list[Task], options: dict) -> None:
    """One error for an option (a --task-opt KEY, --data, --fields, --answer-type) that no task of the run reads,
    naming the ones they do."""
    if any(type(t).options_used is None for t in tasks):
        return
    used = COMMON_OPTIONS.union(*(type(t).options_used or () for t in tasks))
    for key in options:
        if key not in used:
            flag = OPTION_FLAGS.get(key, f"--task-opt {key}")
            known = sorted(used - COMMON_OPTIONS)
            hint = did_you_mean(key, known)
            names = ", ".join(t.name for t in tasks)
            raise HarnessError(
                f"{flag}: not an option of task {names}"
                + (f" ({hint})" if hint else "")
                + f"; its options: {', '.join(f'--task-opt {k}' for k in known) or 'none'}"
            )


def data_path(filename: str) -> Path:
    """Path of a file vendored in tasks/data (works installed or editable)."""
    return Path(str(resources.files("dail_harness.tasks").joinpath("data", filename)))


def make_task(name: str, **options: Any) -> Task:
    """Instantiate a registered task; a path to a data file means the generic `file` task."""
    suffix = Path(name).suffix.lower()
    if suffix in (".jsonl", ".csv", ".parquet", ".json") and name not in registry.names("tasks"):
        options = {**options, "data": name}
        name = "file"
    cls = registry.get("tasks", name)
    return cls(**options)


class VendoredTask(Task):
    """A task that is a data file plus a column map: no code beyond the class attributes. `filename` is looked up
    beside the module that defines the task (or in its `data/`), so a plugin ships its own data, then in tasks/data.

    `columns` maps the roles `id`, `problem`, `answer` and optionally `solution` to the file's columns;
    `metadata_columns` are copied into each problem's metadata.
    """

    answer_type = "integer"
    options_used: ClassVar[frozenset[str] | None] = frozenset()  # a data file: it reads no option
    filename: ClassVar[str] = ""
    columns: ClassVar[dict[str, str | None]] = {"id": "id", "problem": "problem", "answer": "answer"}
    metadata_columns: ClassVar[tuple[str, ...]] = ()

    def load_problems(self) -> list[Problem]:
        path = self.data_file()
        return [self.make_problem(row, path, line, self.columns) for line, row in iter_rows(path)]

    def data_file(self) -> Path:
        """The first of: `filename` beside the task's module, in its `data/`, in the installed tasks/data."""
        here = Path(inspect.getfile(type(self))).parent
        candidates = [here / self.filename, here / "data" / self.filename, data_path(self.filename)]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            looked = ", ".join(str(p.parent) for p in dict.fromkeys(candidates))
            raise HarnessError(f"task '{self.name}': data file '{self.filename}' not found (looked in {looked})")
        return found

    def make_problem(self, row: dict, path: str | Path, line: int, columns: dict[str, str | None]) -> Problem:
        """One Problem from a data row, by the column map (errors name file, line and column)."""
        solution_col, id_col = columns.get("solution"), columns.get("id")
        metadata = {"source": self.name, **{c: row.get(c, "") for c in self.metadata_columns}}
        return Problem(
            id=require_field(row, id_col, path, line, kind="id") if id_col else f"row-{line}",
            problem=require_field(row, columns["problem"] or "problem", path, line),
            answer=require_field(row, columns["answer"] or "answer", path, line, kind="answer"),
            answer_type=self.answer_type,
            solution=str(row[solution_col]) if solution_col and row.get(solution_col) else None,
            metadata=metadata,
        )


def read_id_file(path: str | Path) -> set[str]:
    """A file of problem ids (one per line: `id` for that id in every task, `task/id` for one task's problem), as
    `data dedup --ids-out` writes them and `eval --exclude` and `report --exclude` read them (the paper's Figure
    14)."""
    path = Path(path)
    if not path.exists():
        raise HarnessError("problem id file not found", path=str(path))
    return {line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}


def is_listed(ids: set[str], task: str, problem_id: object) -> bool:
    return str(problem_id) in ids or f"{task}/{problem_id}" in ids
