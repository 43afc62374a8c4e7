"""Folded grouped-query attention equals transformers' sdpa (float64), with masks, caches and holes."""

from types import SimpleNamespace

import torch
from transformers import DynamicCache

from dail_harness.models.attention import NAME, use_folded_gqa
from dail_harness.models.loading import load_causal_lm, resolve_model


def _logits(model, ids, mask, steps):
    """Prefill a left-padded batch, then decode `steps` tokens with a hole punched in the mask."""
    cache = DynamicCache()
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    out = [model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache).logits]
    for t in range(steps):
        tok = out[-1][:, -1].argmax(-1, keepdim=True)
        mask = torch.cat([mask, torch.ones_like(tok)], 1)
        if t == 1:
            mask[:, -2] = 0  # a masked hole, as a rejected draft leaves
        p = mask[:, :-1].sum(1, keepdim=True)
        out.append(model(input_ids=tok, attention_mask=mask, position_ids=p, past_key_values=cache).logits)
    return torch.cat(out, 1)


def test_folded_gqa_equals_sdpa():
    path = resolve_model("tiny-random")
    ref = load_causal_lm(path, device="cpu").double()
    folded = load_causal_lm(path, device="cpu").double()
    assert ref.config.num_attention_heads > ref.config.num_key_value_heads  # grouped heads: the case that folds
    assert use_folded_gqa(folded) and folded.config._attn_implementation == NAME
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, ref.config.vocab_size, (3, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[0, :5] = 0  # left padding of different widths
    mask[1, :2] = 0
    with torch.no_grad():
        a, b = _logits(ref, ids, mask, 4), _logits(folded, ids, mask, 4)
    valid = torch.cat([mask, torch.ones(3, 4, dtype=mask.dtype)], 1).bool()
    assert torch.allclose(a[valid], b[valid], atol=1e-10, rtol=0)
    ungrouped = SimpleNamespace(
        config=SimpleNamespace(_attn_implementation="sdpa", num_attention_heads=4, num_key_value_heads=4)
    )
    assert not use_folded_gqa(ungrouped)  # nothing to fold: left alone
