"""The token-loss interface: each loss is a small plugin registered under "losses".

A loss names the reference contexts it needs (the privileged student, the negative reference, or
"reference": the student's own context with the adapter off), the per-token extras it reads from the
examples (weights, advantages, stored log-probabilities), its per-position terms, and its options
(a dataclass, so `--loss-opt KEY=VALUE` is checked against it). The engine sums the terms over
response positions in chunks (`chunked.chunked_sums`) and the loss combines the sums.

Reduction: "mean" losses return a per-token mean over the micro-batch and the engine averages the
micro-batches of a step; "sum" losses get step-normalised per-token weights from their method (online
methods know the whole batch) and the engine sums the micro-batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from dail_harness.options import NoOptions, option, plugin_options
from dail_harness.training.chunked import kl_terms


@dataclass
class LossOutput:
    loss: torch.Tensor
    """What backward runs on (see the loss's `reduction`)."""
    stats: dict[str, float] = field(default_factory=dict)
    """Per-token means of each term (e.g. kl_ps, kl_nr), for logs."""


class TokenLoss:
    """Base class. Subclasses set `name`, `contexts`, `terms` (and `extras`, `Options`, `reduction`) and
    implement `terms_fn` and `combine`."""

    name = ""
    contexts: tuple[str, ...] = ()
    """Reference contexts needed: "privileged" (x, s), "negative" (x, s~), "reference" (x, adapter off)."""
    extras: ClassVar[tuple[str, ...]] = ()
    """Per-token values the examples must carry (e.g. "weight")."""
    optional_extras: ClassVar[tuple[str, ...]] = ()
    """Per-token values used when every example carries them (e.g. stored "old_logp")."""
    terms: tuple[str, ...] = ()
    reduction: ClassVar[str] = "mean"
    uses_targets: ClassVar[bool] = True
    """False for losses that compare whole distributions (KL): they can score positions with no target."""
    Options: ClassVar[type] = NoOptions

    def __init__(self, options=None):
        self.options = options if options is not None else self.Options()

    def terms_fn(
        self,
        logp_s: torch.Tensor,
        refs: dict[str, torch.Tensor],
        targets: torch.Tensor,
        extras: dict[str, torch.Tensor],
    ) -> dict:
        raise NotImplementedError

    def combine(self, sums: dict[str, torch.Tensor], n_tokens: int) -> LossOutput:
        raise NotImplementedError


def make_loss(name: str, given: dict | None = None, wheres: dict | None = None) -> TokenLoss:
    """The registered loss `name` with its options built (and checked) from `given`."""
    from dail_harness import registry

    cls = registry.get("losses", name)
    return cls(plugin_options(cls.Options, given or {}, kind="loss", name=name, wheres=wheres))


@dataclass
class KLOptions:
    kl_direction: str = option(
        "reverse",
        choices=("reverse", "forward"),
        help="reverse = KL(student || reference) (the paper's); forward = KL(reference || student).",
    )


def kl_direction_terms(logp_s: torch.Tensor, logp_ref: torch.Tensor, direction: str) -> torch.Tensor:
    """reverse = KL(student || ref) (the paper's); forward = KL(ref || student). Summed over positions."""
    return kl_terms(logp_s, logp_ref) if direction == "reverse" else kl_terms(logp_ref, logp_s)
