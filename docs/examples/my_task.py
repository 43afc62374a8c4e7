"""A task: problems with gold answers and the prompt that wraps them (see CONTRIBUTING.md).

dail-harness eval --plugin-dir docs/examples --task toy-sums --model tiny-random --n 4 --out runs/toy
"""

from __future__ import annotations

from dail_harness import registry
from dail_harness.eval.task import Task
from dail_harness.records import Problem


@registry.register("tasks", "toy-sums", aliases=("sums",))
class ToySums(Task):
    """Eight two-digit additions (a toy task defined in code)."""

    name = "toy-sums"
    answer_type = "integer"  # the verifier that grades it
    expected_count = 8  # checked on load
    prompt_template = "What is {problem}? Put the final answer in \\boxed{}."

    def load_problems(self) -> list[Problem]:
        pairs = [(12, 30), (25, 17), (40, 41), (9, 90), (33, 33), (71, 18), (56, 4), (23, 65)]
        return [
            Problem(id=f"sum-{a}-{b}", problem=f"{a} + {b}", answer=str(a + b), answer_type="integer") for a, b in pairs
        ]
