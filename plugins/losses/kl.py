"""`kl`: full-vocabulary KL between the student and the privileged student, per response token."""

from __future__ import annotations

from dail_harness import registry
from dail_harness.training.losses import KLOptions, LossOutput, TokenLoss, kl_direction_terms


@registry.register("losses", "kl")
class KL(TokenLoss):
    """KL to the privileged student: reverse KL(student||PS) (the paper's) or forward."""

    name = "kl"
    uses_targets = False
    contexts = ("privileged",)
    terms = ("kl_ps",)
    Options = KLOptions

    def terms_fn(self, logp_s, refs, targets, extras):
        return {"kl_ps": kl_direction_terms(logp_s, refs["privileged"], self.options.direction)}

    def combine(self, sums, n_tokens):
        loss = sums["kl_ps"] / n_tokens
        return LossOutput(loss, {"kl_ps": float(loss.detach())})
