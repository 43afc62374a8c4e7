"""`pg`: the vanilla policy-gradient loss -sum_t w_t log pi(y_t), with per-token weights from the method.

An online method sets each sampled token's weight (e.g. its advantage divided by the step's token
count); the gradient is then the REINFORCE estimator. The weights are normalised over the whole
step, so the engine sums the micro-batches ("sum" reduction).
"""

from __future__ import annotations

from dail_harness import registry
from dail_harness.training.losses import LossOutput, TokenLoss


@registry.register("losses", "pg")
class PolicyGradient(TokenLoss):
    """Policy gradient: -sum of weight x log-probability over sampled tokens (weights from the method)."""

    name = "pg"
    extras = ("weight",)
    terms = ("pg",)
    reduction = "sum"

    def terms_fn(self, logp_s, refs, targets, extras):
        return {"pg": -(extras["weight"] * logp_s.gather(1, targets[:, None])[:, 0]).sum()}

    def combine(self, sums, n_tokens):
        return LossOutput(sums["pg"], {})
