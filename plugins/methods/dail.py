"""`dail`: D_syn traces with the contrastive loss KL(student||PS) - gamma KL(student||NR)."""

from typing import ClassVar

from dail_harness import registry
from dail_harness.training.recipes import FileMethod


@registry.register("methods", "dail")
class DAILMethod(FileMethod):
    """DAIL: D_syn traces, contrastive KL against the privileged student and the negative reference."""

    name = "dail"
    default_loss = "dail"
    required_fields: ClassVar[tuple[str, ...]] = ("problem_id", "problem", "trace", "solution", "waypoints")
