"""`nll`: D_syn traces with plain NLL (the paper's ablation of the contrastive loss)."""

from dail_harness import registry
from dail_harness.training.recipes import FileMethod


@registry.register("methods", "nll")
class NLLMethod(FileMethod):
    """NLL on D_syn traces (the paper's ablation)."""

    name = "nll"
    default_loss = "nll"
