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
                cfg.top_k,
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


def reference_authors_rollout(model, request: RolloutRequest, cfg: RolloutConfig, eos_ids: list[int]) -> RolloutResult:
    """The authors' per-token rule written out (no cache, explicit loops over the top-20): up to 5 student
    draws from its top-20 at temperature 1 (Gumbel-max with the same keyed noise), the first whose
    privileged probability is >= tau and that is in the privileged top-20 is kept, else a privileged draw."""
    from dail_harness.rollout.base import AUTHORS_DRAWS, AUTHORS_TOP_K, attempt_keys
    from dail_harness.sampling import keyed_uniform

    key_s, key_p = role_keys(cfg.seed, request.row_id)
    dev = next(model.parameters()).device
    r: list[int] = []
    n_s, n_p, reason = 0, 0, "length"

    def logits_of(prompt):
        with torch.inference_mode():
            z = model(input_ids=torch.tensor([prompt + r], device=dev)).logits[0, -1].double()
        return suppress(z, cfg.suppress_token_ids)

    def draw(z, key):
        top = torch.topk(z, AUTHORS_TOP_K).indices.tolist()
        u = keyed_uniform(torch.tensor([key], device=dev), torch.tensor([len(r)], device=dev), z.shape[0])[0]
        gumbel = -torch.log(-torch.log(u))
        return max(top, key=lambda i: float(z[i].float() + gumbel[i]))

    while len(r) < cfg.max_tokens:
        s, p = logits_of(request.student_ids), logits_of(request.privileged_ids)
        p_probs = torch.softmax(p.float(), -1)
        p_top = set(torch.topk(p, AUTHORS_TOP_K).indices.tolist())
        t = None
        for attempt in range(AUTHORS_DRAWS):
            k = int(attempt_keys(torch.tensor([key_s]), attempt)[0])
            candidate = draw(s, k)
            if float(p_probs[candidate]) >= cfg.tau and candidate in p_top:
                t = candidate
                break
        if t is None:
            t, n_p = draw(p, key_p), n_p + 1
        else:
            n_s += 1
        r.append(t)
        if t in eos_ids:
            reason = "stop"
            break
    return RolloutResult(request.row_id, r, n_s, n_p, reason)
