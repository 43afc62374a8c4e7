"""Grouped-query attention for masked decoding without copying the KV cache.

transformers' `sdpa` attention repeats the key/value heads (`repeat_kv`, a full copy of the cache per
layer and step) whenever an attention mask is present, because the fused SDPA kernels refuse grouped
heads with a mask. Batched decoding always has a mask (left padding, masked holes), so with Qwen2.5-7B
(28 query heads over 4 KV heads) every step would write 7x the KV cache. Folding instead moves the n_rep
query heads that share a KV head into the query-length axis: [B, KVH * n_rep, q, D] becomes
[B, KVH, n_rep * q, D], the mask is repeated to match (its size is B x q x L, small), and one
ordinary masked SDPA runs over the cache as it is. Same arithmetic, no KV copy.
"""

from __future__ import annotations

import torch

NAME = "sdpa_folded_gqa"
_registered = False


def folded_gqa_sdpa(
    module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, is_causal=None, **kwargs
):
    """transformers attention function: `sdpa`, with GQA by query folding when a mask is given."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    n_rep = query.shape[1] // key.shape[1]
    if attention_mask is None or n_rep == 1 or kwargs.get("position_bias") is not None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    b, heads, q, d = query.shape
    kv_heads = key.shape[1]
    folded = query.reshape(b, kv_heads, n_rep * q, d)  # head h = g * n_rep + r, as repeat_kv pairs them
    mask = attention_mask[:, :, -q:, :]  # [B or 1, 1 or H, q, L]
    if mask.shape[1] != 1:
        raise ValueError("folded GQA attention expects a mask shared by all heads")
    mask = (
        mask.unsqueeze(2)
        .expand(mask.shape[0], 1, n_rep, q, mask.shape[-1])
        .reshape(mask.shape[0], 1, n_rep * q, mask.shape[-1])
    )
    out = torch.nn.functional.scaled_dot_product_attention(
        folded, key, value, attn_mask=mask, dropout_p=dropout, scale=scaling
    )
    out = out.reshape(b, heads, q, d).transpose(1, 2).contiguous()
    return out, None


def use_folded_gqa(model) -> bool:
    """Switch a model that uses `sdpa` with grouped KV heads to the folded variant; False if not applicable."""
    global _registered
    config = model.config
    heads, kv_heads = getattr(config, "num_attention_heads", 0), getattr(config, "num_key_value_heads", None)
    if getattr(config, "_attn_implementation", None) not in ("sdpa", NAME) or not kv_heads or heads == kv_heads:
        return False
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

        if not _registered:
            AttentionInterface.register(NAME, folded_gqa_sdpa)
            AttentionMaskInterface.register(NAME, sdpa_mask)
            _registered = True
        model.set_attn_implementation(NAME)
    except (ImportError, AttributeError, ValueError):  # older transformers: keep plain sdpa
        return False
    return True
