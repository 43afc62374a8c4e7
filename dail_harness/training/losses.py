"""The token-loss interface: each loss is a small plugin registered under "losses".

A loss names the reference contexts it needs (none, the privileged student, the negative reference)
and its per-position terms; the engine sums the terms over response positions in chunks
(`chunked.chunked_sums`) and the loss combines the sums into a mean over response tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from dail_harness.errors import HarnessError
from dail_harness.training.chunked import kl_terms


@dataclass
class LossOutput:
    loss: torch.Tensor
    """Mean over response tokens (what backward runs on)."""
    stats: dict[str, float] = field(default_factory=dict)
    """Per-token means of each term (e.g. kl_ps, kl_nr), for logs."""


class TokenLoss:
    """Base class. Subclasses set `name`, `contexts`, `terms` and implement `terms_fn` and `combine`."""

    name = ""
    contexts: tuple[str, ...] = ()
    """Reference contexts needed: "privileged" (x, s) and/or "negative" (x, s~)."""
    terms: tuple[str, ...] = ()

    def __init__(self, **options):
        self.options = options

    def terms_fn(self, logp_s: torch.Tensor, refs: dict[str, torch.Tensor], targets: torch.Tensor) -> dict:
        raise NotImplementedError

    def combine(self, sums: dict[str, torch.Tensor], n_tokens: int) -> LossOutput:
        raise NotImplementedError


def kl_direction_terms(logp_s: torch.Tensor, logp_ref: torch.Tensor, direction: str) -> torch.Tensor:
    """reverse = KL(student || ref) (the paper's); forward = KL(ref || student). Summed over positions."""
    if direction == "reverse":
        return kl_terms(logp_s, logp_ref)
    if direction == "forward":
        return kl_terms(logp_ref, logp_s)
    raise HarnessError(f"--kl-direction must be 'reverse' or 'forward', got '{direction}'")
