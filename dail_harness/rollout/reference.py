"""The token-by-token definition of a mixed-policy rollout, with no cache and no drafting (slow; tests)."""

from __future__ import annotations

import torch

from dail_harness.rollout.base import RolloutConfig, RolloutRequest, RolloutResult, role_keys, suppress
from dail_harness.sampling import keyed_gumbel_sample


def reference_rollout(model, request: RolloutRequest, cfg: RolloutConfig, eos_ids: list[int]) -> RolloutResult:
    """The token-by-token definition, with no cache and no drafting (slow; for tests)."""
    key_s, key_p = role_keys(cfg.seed, request.row_id)
    dev = next(model.parameters()).device
    r: list[int] = []
    n_s, n_p, reason = 0, 0, "length"

    def next_logits(prompt):
        with torch.inference_mode():
            return model(input_ids=torch.tensor([prompt + r], device=dev)).logits[:, -1].float()

    def sample(logits, key):
        return int(
            keyed_gumbel_sample(
                suppress(logits, cfg.suppress_token_ids),
                torch.tensor([key], device=dev),
                torch.tensor([len(r)], device=dev),
                cfg.temperature,
                cfg.top_p,
            )[0]
        )

    while len(r) < cfg.max_tokens:
        t = sample(next_logits(request.student_ids), key_s) if cfg.tau <= 1 else None
        if cfg.tau > 0:
            ps_logits = next_logits(request.privileged_ids)
            if t is None or torch.softmax(suppress(ps_logits, cfg.suppress_token_ids), -1)[0, t] < cfg.tau:
                t = sample(ps_logits, key_p)
                n_p += 1
            else:
                n_s += 1
        else:
            n_s += 1
        assert t is not None
        r.append(t)
        if t in eos_ids:
            reason = "stop"
            break
    return RolloutResult(request.row_id, r, n_s, n_p, reason)
