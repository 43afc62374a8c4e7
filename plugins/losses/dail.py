"""`dail`: the contrastive objective KL(student || PS) - gamma * KL(student || NR) (paper section 2.2)."""

from __future__ import annotations

from dataclasses import dataclass

from dail_harness import registry
from dail_harness.options import option
from dail_harness.training.losses import KLOptions, LossOutput, TokenLoss, kl_direction_terms


@dataclass
class DAILOptions(KLOptions):
    gamma: float = option(0.1, ge=0, help="Weight of KL(student || negative reference) (the paper: 0.1).")


@registry.register("losses", "dail")
class DAIL(TokenLoss):
    """KL(student||privileged) - gamma KL(student||negative reference), gamma 0.1 by default."""

    name = "dail"
    uses_targets = False
    contexts = ("privileged", "negative")
    terms = ("kl_ps", "kl_nr")
    Options = DAILOptions

    def terms_fn(self, logp_s, refs, targets, extras):
        d = self.options.kl_direction
        return {
            "kl_ps": kl_direction_terms(logp_s, refs["privileged"], d),
            "kl_nr": kl_direction_terms(logp_s, refs["negative"], d),
        }

    def combine(self, sums, n_tokens):
        kl_ps, kl_nr = sums["kl_ps"] / n_tokens, sums["kl_nr"] / n_tokens
        loss = kl_ps - self.options.gamma * kl_nr
        return LossOutput(
            loss, {"kl_ps": float(kl_ps.detach()), "kl_nr": float(kl_nr.detach()), "loss": float(loss.detach())}
        )
