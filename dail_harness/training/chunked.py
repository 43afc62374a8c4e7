"""Full-vocabulary token losses computed in chunks of positions, never holding [tokens x vocab] logits.

For each chunk of response positions the logits of the student (and of the reference contexts) are
computed from the final hidden states and the output head, reduced to per-chunk sums, and dropped;
the chunk runs under activation checkpointing, so backward recomputes its logits instead of keeping
them. Memory is O(chunk x vocab) whatever the trace length, and the result equals the unchunked loss.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.utils.checkpoint import checkpoint

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
