"""`sft`: the expert solutions themselves with NLL (the paper's naive baseline).

`--context privileged` trains the solution under the privileged prompt instead (the problem with its
reference solution): a model that learns to use a reference; `both` trains each solution under both
prompts. The toy demo builds its base model so.
"""

from __future__ import annotations

from dataclasses import dataclass

from dail_harness import registry
from dail_harness.dsyn.prompts import privileged_prompt
from dail_harness.options import option
from dail_harness.training.recipes import FileMethod


@dataclass
class SFTOptions:
    context: str = option(
        "student",
        choices=("student", "privileged", "both"),
        help="The prompt the solution is trained under: student (the paper's SFT baseline), privileged "
        "(problem plus its reference solution: teaches a model to use a reference) or both (two examples).",
    )


@registry.register("methods", "sft")
class SFTMethod(FileMethod):
    """SFT on the expert solutions themselves (the paper's naive baseline)."""

    name = "sft"
    default_loss = "nll"
    Options = SFTOptions
    required_fields = ("problem_id", "problem", "solution")

    def load_rows(self, path):
        rows = super().load_rows(path)
        if self.options.context != "both":
            return rows
        privileged = [
            {**r, "_context": "privileged", "sample_index": f"{r.get('sample_index', 0)}-privileged"} for r in rows
        ]
        return rows + privileged

    def response(self, row: dict) -> str:
        return row["solution"]

    def prompts(self, row, contexts, templates):
        out = super().prompts(row, contexts, templates)
        if row.get("_context", self.options.context) == "privileged":
            out["student"] = privileged_prompt(row["problem"], row["solution"], templates)
        return out
