"""DAIL's three prompts (student, privileged student, negative reference) and the waypoints s~.

The templates are the method's data, verbatim from the authors' released code (MIT licence) as
recorded in REFERENCE.md; users can override them from a file. The waypoint patterns are the authors'
regular expressions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from dail_harness.errors import HarnessError
from dail_harness.verifiers.extract import last_boxed

# Source: the DAIL authors' released code (MIT), as recorded in REFERENCE.md.
STUDENT_TEMPLATE = """## Problem:
{problem}

Begin your step-by-step thinking process.
"""

PRIVILEGED_TEMPLATE = """You are an expert mathematician solving the following problem. Your task is to produce a clear, step-by-step thinking process that leads to the correct solution.

## Problem:
{problem}

Hint: To help you, here are reference solution(s).

## Reference Solution(s):
{solution}

Use these only to guide your own thoughts implicitly, but express the reasoning in your own words as if you are solving it for the first time. **You must never explicitly acknowledge these instructions or cite the provided solution(s). Just use the methodology as if it were your own. You are not allowed to take any shortcuts, directly use any intermediate derived number or result as given (you must show everything from scratch), nor directly produce the answer. Do not worry that your solution is too long.**

Now, solve the problem. Begin your step-by-step thinking process.
"""

NEGATIVE_TEMPLATE = """You are an expert mathematician solving the following problem. Your task is to produce a clear, step-by-step thinking process that leads to the correct solution.

## Problem:
{problem}

Hint: {hint}

Begin your step-by-step thinking process.
"""

HINT_WITH_ANSWER = "The final answer is {answer}. Intermediate results used in the solution might include: {waypoints}."
HINT_WITHOUT_ANSWER = "Intermediate results used in the solution might include: {waypoints}."

# The authors' waypoint patterns.
NUMBERS = r"(?<!\w)[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?(?!\w)"
EXPONENTIALS = r"[a-zA-Z0-9\.]+\^\{?[a-zA-Z0-9\+\-\.]+\}?"
COEFFICIENTS = r"(?<!\w)\d+[a-zA-Z](?!\w)"
OFFSETS = (r"(?<!\w)[a-zA-Z][\+\-]\d+(?!\w)", r"(?<!\w)\d+[a-zA-Z][\+\-]\d+(?!\w)")
ALL_PATTERNS = (NUMBERS, EXPONENTIALS, COEFFICIENTS, *OFFSETS)


@dataclass
class Templates:
    """The three user-turn templates ({problem}, {solution}, {hint} placeholders)."""

    student: str = STUDENT_TEMPLATE
    privileged: str = PRIVILEGED_TEMPLATE
    negative: str = NEGATIVE_TEMPLATE

    @classmethod
    def from_file(cls, path: str | Path) -> Templates:
        """A JSON file with any of the keys `student`, `privileged`, `negative`."""
        import json

        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise HarnessError(f"cannot read templates: {e}", path=str(path)) from None
        unknown = set(data) - {"student", "privileged", "negative"}
        if unknown:
            raise HarnessError(f"unknown template keys {sorted(unknown)}", path=str(path))
        t = cls(**data)
        for name, needed in (("student", "{problem}"), ("privileged", "{solution}"), ("negative", "{hint}")):
            if needed not in getattr(t, name) or "{problem}" not in getattr(t, name):
                raise HarnessError(f"template '{name}' must contain {{problem}} and {needed}", path=str(path))
        return t


DEFAULT_TEMPLATES = Templates()


def _squash(text: str) -> str:
    """Whitespace-insensitive form (the final answer is removed whitespace-insensitively)."""
    return re.sub(r"\s+", "", text or "")


def extract_waypoints(solution: str, *, answer: str | None = None, numbers_only: bool = False) -> list[str]:
    """s~: the de-duplicated, sorted intermediate results of a solution, final answer removed.

    numbers_only (answer-verifiable problems, as in the paper) keeps the number pattern alone.
    """
    patterns = (NUMBERS,) if numbers_only else ALL_PATTERNS
    found: set[str] = set()
    for pat in patterns:
        found.update(m.group(0).strip() for m in re.finditer(pat, solution))
    final = answer if answer is not None else last_boxed(solution)
    if final is not None:
        found = {w for w in found if _squash(w) != _squash(final)}
    return sorted(found)


def final_answer_of(solution: str, answer: str | None) -> str | None:
    """The final answer: the given one, else the last \\boxed{} of the solution."""
    if answer:
        return answer.strip().strip("$").strip()
    return last_boxed(solution)


def student_prompt(problem: str, templates: Templates = DEFAULT_TEMPLATES) -> str:
    """The student's user turn. Problem and solution texts are stripped first, as the authors' code does."""
    return templates.student.replace("{problem}", problem.strip())


def privileged_prompt(problem: str, solution: str, templates: Templates = DEFAULT_TEMPLATES) -> str:
    return templates.privileged.replace("{problem}", problem.strip()).replace("{solution}", solution.strip())


def negative_prompt(
    problem: str, waypoints: list[str], answer: str | None, templates: Templates = DEFAULT_TEMPLATES
) -> str:
    listed = ", ".join(waypoints)
    hint = (
        HINT_WITH_ANSWER.format(answer=answer, waypoints=listed)
        if answer
        else HINT_WITHOUT_ANSWER.format(waypoints=listed)
    )
    return templates.negative.replace("{problem}", problem.strip()).replace("{hint}", hint)


_SOLUTION_BLOCK = re.compile(r"(?m)^Solution \d+:")


def fit_solution(solution: str, fits) -> str:
    """Drop trailing `Solution N:` blocks until `fits(solution)`; halve the text if there is one block."""
    current = solution
    while not fits(current):
        starts = [m.start() for m in _SOLUTION_BLOCK.finditer(current)]
        if len(starts) > 1:
            current = current[: starts[-1]].rstrip()
        else:
            if len(current) < 2:
                raise HarnessError("the privileged prompt does not fit the context even without a solution")
            current = current[: len(current) // 2]
    return current


def join_solutions(solutions: list[str]) -> str:
    """Several expert solutions as `Solution 1:\\n...\\n\\nSolution 2:\\n...` (the authors' format)."""
    solutions = [s.strip() for s in solutions if s and s.strip()]
    if len(solutions) == 1:
        return solutions[0]
    return "\n\n".join(f"Solution {i}:\n{s}" for i, s in enumerate(solutions, start=1))


def count_solutions(solution: str) -> int:
    """Number of `Solution N:` blocks (1 for a single unlabelled solution)."""
    return max(1, len(_SOLUTION_BLOCK.findall(solution)))
