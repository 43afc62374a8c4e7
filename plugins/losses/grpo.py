"""`grpo`: the clipped policy-gradient surrogate of GRPO/PPO with an optional k3 KL to the reference.

Per sampled token: ratio = exp(logp - old_logp) (old_logp is the policy's log-probability when the batch
was sampled, stored for mu > 1; with mu = 1 it is logp itself, detached, so the ratio is 1 and only
its gradient acts), surrogate = -min(ratio * A, clip(ratio, 1 - epsilon, 1 + epsilon_high) * A), plus
beta * (exp(ref - logp) - (ref - logp) - 1) with the reference being the same weights with the adapter
off. Each token's `weight` (set by the method from the loss type) normalises the sum over the step,
exactly as TRL's GRPOTrainer normalises it; `share` (1 / active tokens) turns the logged statistics
into token means.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dail_harness import registry
from dail_harness.options import option
from dail_harness.training.losses import LossOutput, TokenLoss


@dataclass
class GRPOLossOptions:
    epsilon: float = option(0.2, ge=0, help="Lower clip range of the ratio (TRL's epsilon).")
    epsilon_high: float | None = option(None, ge=0, help="Upper clip range (default: --epsilon; DAPO uses 0.28).")
    beta: float = option(
        0.0, ge=0, help="Weight of the k3 KL to the reference policy (the adapter off); 0: none (TRL's default)."
    )
    kl_bias_correction: bool = option(
        False,
        help="Multiply the KL term by the ratio (TRL >= 1.16's default); off: "
        "the plain k3 estimator (DeepSeekMath, verl, TRL <= 1.15).",
    )


@registry.register("losses", "grpo")
class GRPOLoss(TokenLoss):
    """Clipped surrogate with group-relative advantages; k3 KL to the reference when beta > 0."""

    name = "grpo"
    extras = ("advantage", "weight", "share")
    optional_extras = ("old_logp",)
    terms = ("loss", "clip_low", "clip_high", "clip_region", "kl", "ratio")
    reduction = "sum"
    Options = GRPOLossOptions

    def __init__(self, options=None):
        super().__init__(options)
        self.contexts = ("reference",) if self.options.beta > 0 else ()

    def terms_fn(self, logp_s, refs, targets, extras):
        o = self.options
        low_eps, high_eps = o.epsilon, o.epsilon if o.epsilon_high is None else o.epsilon_high
        logp = logp_s.gather(1, targets[:, None])[:, 0]
        old = extras["old_logp"] if "old_logp" in extras else logp.detach()
        ratio = torch.exp(logp - old)
        adv = extras["advantage"]
        clipped = torch.clamp(ratio, 1 - low_eps, 1 + high_eps)
        per_token = -torch.min(ratio * adv, clipped * adv)
        kl = torch.zeros_like(per_token)
        if o.beta > 0:
            delta = refs["reference"].gather(1, targets[:, None])[:, 0] - logp
            kl = torch.exp(delta) - delta - 1
            if o.kl_bias_correction:
                kl = kl * ratio
            per_token = per_token + o.beta * kl
        share = extras["share"]
        low = ((ratio < 1 - low_eps) & (adv < 0)).to(share.dtype)
        high = ((ratio > 1 + high_eps) & (adv > 0)).to(share.dtype)
        return {
            "loss": (extras["weight"] * per_token).sum(),
            "clip_low": (share * low).sum(),
            "clip_high": (share * high).sum(),
            "clip_region": (share * torch.clamp(low + high, max=1)).sum(),
            "kl": (share * kl.detach()).sum(),
            "ratio": (share * ratio.detach()).sum(),
        }

    def combine(self, sums, n_tokens):
        stats = {
            "clip_ratio_low": float(sums["clip_low"]),
            "clip_ratio_high": float(sums["clip_high"]),
            "clip_ratio": float(sums["clip_region"]),
            "ratio_mean": float(sums["ratio"]),
        }
        if self.options.beta > 0:
            stats["kl"] = float(sums["kl"])
        return LossOutput(sums["loss"], stats)
