"""The token-loss interface: each loss is a small plugin registered under "losses".

A loss names the reference contexts it needs (the privileged student, the negative reference, or
"reference": the student's own context with the adapter off), the per-token extras it reads from the
examples (weights, advantages, stored log-probabilities), its per-position terms, and its options
(a dataclass, so `--loss-opt KEY=VALUE` is checked against it). The engine sums the terms over
response positions in chunks (`chunked_sums`, below) and the loss combines the sums.

Reduction: "mean" losses return a per-token mean over the micro-batch and the engine averages the
micro-batches of a step; "sum" losses get step-normalised per-token weights from their method (online
methods know the whole batch) and the engine sums the micro-batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch.utils.checkpoint import checkpoint

from dail_harness.options import NoOptions, option, plugin_options


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


# Full-vocabulary token losses computed in chunks of positions, never holding [tokens x vocab] logits.
#
# For each chunk of response positions the logits of the student (and of the reference contexts) are
# computed from the final hidden states and the output head, reduced to per-chunk sums, and dropped;
# the chunk runs under activation checkpointing, so backward recomputes its logits instead of keeping
# them. Memory is O(chunk x vocab) whatever the trace length, and the result equals the unchunked loss.
DEFAULT_CHUNK = 1024

TokenTermsFn = Callable[[torch.Tensor, dict, torch.Tensor, dict], dict]
"""fn(student_logp [n, V], ref_logps {name: [n, V]}, targets [n], extras {name: [n]}) -> {term: sum over the n}"""


def chunked_sums(
    student_hidden: torch.Tensor,
    ref_hidden: dict[str, torch.Tensor],
    targets: torch.Tensor,
    head: Callable[[torch.Tensor], torch.Tensor],
    fn: TokenTermsFn,
    terms: Sequence[str],
    chunk: int = DEFAULT_CHUNK,
    extras: dict[str, torch.Tensor] | None = None,
    ref_head: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Sums of `fn`'s terms over all N positions ([N, H] hidden states at aligned positions; `extras` are
    per-position values such as advantages or weights, sliced with the chunks). `ref_head` computes the
    references' logits (default: `head`; the adapter-off head when the head itself has LoRA)."""
    names = list(ref_hidden)
    acc = torch.promote_types(student_hidden.dtype, torch.float32)
    extra_names = list(extras or {})
    extra_values = [extras[n].to(acc) for n in extra_names] if extras else []

    def logp(h, which=head):  # half-precision logits are upcast to fp32 for the softmax; fp32/fp64 are kept
        z = which(h)
        return torch.log_softmax(z.to(torch.promote_types(z.dtype, torch.float32)), dim=-1)

    def run(h_s, tgt, *rest):
        logp_s = logp(h_s)
        with torch.no_grad():
            refs = {n: logp(h, ref_head or head) for n, h in zip(names, rest[: len(names)])}
        out = fn(logp_s, refs, tgt, dict(zip(extra_names, rest[len(names) :])))
        return tuple(out[t] for t in terms)

    totals = [student_hidden.new_zeros((), dtype=acc) for _ in terms]
    grad = student_hidden.requires_grad and torch.is_grad_enabled()
    for start in range(0, student_hidden.shape[0], max(1, chunk)):
        sl = slice(start, start + max(1, chunk))
        args = (student_hidden[sl], targets[sl], *(ref_hidden[n][sl] for n in names), *(v[sl] for v in extra_values))
        parts = checkpoint(run, *args, use_reentrant=False) if grad else run(*args)
        totals = [t + p for t, p in zip(totals, parts)]
    return dict(zip(terms, totals))


def kl_terms(p_logp: torch.Tensor, q_logp: torch.Tensor) -> torch.Tensor:
    """Sum over positions of KL(p || q) = sum_v p (log p - log q), full vocabulary."""
    return (p_logp.exp() * (p_logp - q_logp)).sum()
