"""`nll`: negative log-likelihood of the response tokens (behaviour cloning)."""

from __future__ import annotations

from dail_harness import registry
from dail_harness.training.losses import LossOutput, TokenLoss


@registry.register("losses", "nll")
class NLL(TokenLoss):
    """Negative log-likelihood of the response tokens, mean over tokens."""

    name = "nll"
    terms = ("nll",)

    def terms_fn(self, logp_s, refs, targets, extras):
        return {"nll": -logp_s.gather(1, targets[:, None]).sum()}

    def combine(self, sums, n_tokens):
        loss = sums["nll"] / n_tokens
        return LossOutput(loss, {"nll": float(loss.detach())})
