"""`dail`: the contrastive objective KL(student || PS) - gamma * KL(student || NR) (paper section 2.2)."""

from __future__ import annotations

from dail_harness import registry
from dail_harness.training.losses import LossOutput, TokenLoss, kl_direction_terms


@registry.register("losses", "dail")
class DAIL(TokenLoss):
    """KL(student||privileged) - gamma KL(student||negative reference), gamma 0.1 by default."""

    name = "dail"
    contexts = ("privileged", "negative")
    terms = ("kl_ps", "kl_nr")

    def terms_fn(self, logp_s, refs, targets):
        d = self.options.get("direction", "reverse")
        return {"kl_ps": kl_direction_terms(logp_s, refs["privileged"], d),
                "kl_nr": kl_direction_terms(logp_s, refs["negative"], d)}

    def combine(self, sums, n_tokens):
        gamma = float(self.options.get("gamma", 0.1))
        kl_ps, kl_nr = sums["kl_ps"] / n_tokens, sums["kl_nr"] / n_tokens
        loss = kl_ps - gamma * kl_nr
        return LossOutput(loss, {"kl_ps": float(kl_ps.detach()), "kl_nr": float(kl_nr.detach()),
                                 "loss": float(loss.detach())})
