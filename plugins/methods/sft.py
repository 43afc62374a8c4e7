"""`sft`: the expert solutions themselves with NLL (the paper's naive baseline)."""

from dail_harness import registry
from dail_harness.training.recipes import FileMethod


@registry.register("methods", "sft")
class SFTMethod(FileMethod):
    """SFT on the expert solutions themselves (the paper's naive baseline)."""

    name = "sft"
    default_loss = "nll"
    required_fields = ("problem_id", "problem", "solution")

    def response(self, row: dict) -> str:
        return row["solution"]
