"""A loss: per-token terms summed over response positions in chunks, then combined (see CONTRIBUTING.md).

`smoothed-nll` is NLL with label smoothing: (1 - eps) * -log p(target) + eps * mean over the vocabulary
of -log p(v). Its option `eps` is a dataclass field, so `--loss-opt eps=0.2` is checked (a wrong name
or a value out of range is one clear error).
"""

from __future__ import annotations

from dataclasses import dataclass

from dail_harness import registry
from dail_harness.options import option
from dail_harness.training.losses import LossOutput, TokenLoss


@dataclass
class SmoothingOptions:
    eps: float = option(0.1, ge=0, le=1, help="Label-smoothing mass spread over the vocabulary.")


@registry.register("losses", "smoothed-nll")
class SmoothedNLL(TokenLoss):
    """NLL with label smoothing eps (--loss-opt eps=...)."""

    name = "smoothed-nll"
    terms = ("nll", "uniform")
    Options = SmoothingOptions

    def terms_fn(self, logp_s, refs, targets, extras):
        # logp_s: [n, vocab] log-probabilities of the n response positions of this chunk
        return {"nll": -logp_s.gather(1, targets[:, None]).sum(), "uniform": -logp_s.mean(dim=1).sum()}

    def combine(self, sums, n_tokens):
        eps = self.options.eps
        loss = ((1 - eps) * sums["nll"] + eps * sums["uniform"]) / n_tokens
        return LossOutput(loss, {"nll": float(sums["nll"].detach()) / n_tokens})
