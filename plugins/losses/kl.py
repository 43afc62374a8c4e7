"""`kl`: full-vocabulary KL between the student and one reference, per response token.

Against the privileged student (the default) it is DAIL's loss without its contrastive term; against
the negative reference it is the third row of the paper's Table 4 (minimising KL to the shortcut-laden
reference, which degrades the model).
"""

from __future__ import annotations

from dataclasses import dataclass

from dail_harness import registry
from dail_harness.options import option
from dail_harness.training.losses import KLOptions, LossOutput, TokenLoss, kl_direction_terms


@dataclass
class KLReferenceOptions(KLOptions):
    kl_reference: str = option(
        "privileged",
        choices=("privileged", "negative"),
        help="privileged: KL to the privileged student (x, s); negative: KL to the negative "
        "reference (x, s~), the paper's Table 4 ablation.",
    )


@registry.register("losses", "kl")
class KL(TokenLoss):
    """KL to the privileged student (or, --kl-reference negative, the negative reference); reverse by default."""

    name = "kl"
    uses_targets = False
    Options = KLReferenceOptions

    def __init__(self, options=None):
        super().__init__(options)
        self.contexts = (self.options.kl_reference,)
        self.term = "kl_ps" if self.options.kl_reference == "privileged" else "kl_nr"
        self.terms = (self.term,)

    def terms_fn(self, logp_s, refs, targets, extras):
        return {self.term: kl_direction_terms(logp_s, refs[self.options.kl_reference], self.options.kl_direction)}

    def combine(self, sums, n_tokens):
        loss = sums[self.term] / n_tokens
        return LossOutput(loss, {self.term: float(loss.detach())})
