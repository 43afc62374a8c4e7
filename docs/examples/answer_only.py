"""An offline method: a fixed file of rows, each turned into a response and prompts (see CONTRIBUTING.md).

`answer-only` trains on expert rows with the response "The final answer is \\boxed{ANSWER}." (teaching
the answer format without the solution). `FileMethod` reads and checks the rows; the loss (here the
method's default, `nll`) decides which contexts are built.
"""

from __future__ import annotations

from dail_harness import registry
from dail_harness.training.recipes import FileMethod


@registry.register("methods", "answer-only")
class AnswerOnly(FileMethod):
    """NLL on 'The final answer is \\boxed{answer}.' for each expert row (an example offline method)."""

    name = "answer-only"
    default_loss = "nll"
    required_fields = ("problem_id", "problem", "answer")

    def response(self, row: dict) -> str:
        return f"The final answer is \\boxed{{{row['answer']}}}."
