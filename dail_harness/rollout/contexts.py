"""KV-cache contexts for the hf rollout engine: a batch of sequences sharing one cache, with holes.

Rejected drafts stay in the cache as masked holes (no copy) and are compacted when they pass half the
cache. `KVContext` grows a DynamicCache and drops finished rows; `StaticKVContext` keeps fixed shapes
(a StaticCache of fixed capacity, rows kept until all finish, compaction in place) for CUDA graphs.
"""

from __future__ import annotations

from typing import Any

import torch


def cache_layers(cache: Any) -> list[Any]:
    """The per-layer key/value holders of a transformers 5 cache (`.keys`, `.values`, `.cumulative_length`)."""
    return list(cache.layers)


class KVContext:
    """A batch of sequences sharing one KV cache; holes and padding are masked out."""

    def __init__(self, model, prompts: list[list[int]], pad_id: int, device):
        from transformers import DynamicCache

        self.model = model
        width = max(len(p) - 1 for p in prompts)
        ids = torch.full((len(prompts), max(width, 1)), pad_id, dtype=torch.long, device=device)
        mask = torch.zeros_like(ids)
        for b, p in enumerate(prompts):
            body = p[:-1]
            if body:
                ids[b, ids.shape[1] - len(body) :] = torch.tensor(body, device=device)
                mask[b, ids.shape[1] - len(body) :] = 1
        self.cache = DynamicCache()
        self.mask = mask
        self.pending = torch.tensor([p[-1] for p in prompts], dtype=torch.long, device=device)
        if width > 0:
            pos = (mask.cumsum(1) - 1).clamp(min=0)
            model(  # only the caches matter: logits_to_keep=1 skips the head over every prompt position
                input_ids=ids,
                attention_mask=mask,
                position_ids=pos,
                past_key_values=self.cache,
                use_cache=True,
                logits_to_keep=1,
            )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Append tokens [B, q] (all valid for now) and return their logits [B, q, V] (float32)."""
        q = tokens.shape[1]
        pos = self.mask.sum(1, keepdim=True) + torch.arange(q, device=tokens.device)
        self.mask = torch.cat([self.mask, torch.ones_like(tokens)], dim=1)
        out = self.model(
            input_ids=tokens, attention_mask=self.mask, position_ids=pos, past_key_values=self.cache, use_cache=True
        )
        return out.logits.float()

    def keep_last(self, q: int, valid: torch.Tensor) -> None:
        """Of the last q appended entries, keep the first valid[b] per row; the rest become holes."""
        cols = torch.arange(q, device=valid.device)[None, :] < valid[:, None]
        self.mask[:, -q:] = cols.to(self.mask.dtype)

    def select(self, rows: torch.Tensor) -> None:
        self.cache.batch_select_indices(rows)
        self.mask = self.mask[rows]
        self.pending = self.pending[rows]

    def maybe_compact(self, threshold: float = 0.5) -> None:
        """Gather the valid entries of each row into a left-padded block when holes dominate."""
        length = self.mask.shape[1]
        counts = self.mask.sum(1)
        if length == 0 or counts.max().item() > (1 - threshold) * length:
            return
        new_len = int(counts.max().item())
        order = torch.argsort(self.mask.to(torch.int8), dim=1, stable=True)[:, length - new_len :]  # valid last
        new_mask = torch.gather(self.mask, 1, order)
        for layer in cache_layers(self.cache):
            idx = order[:, None, :, None].expand(-1, layer.keys.shape[1], -1, layer.keys.shape[3])
            layer.keys = torch.gather(layer.keys, 2, idx)
            layer.values = torch.gather(layer.values, 2, idx)
        self.mask = new_mask


class StaticKVContext(KVContext):
    """The fixed-shape variant: a StaticCache of `capacity` positions and a [B, capacity] mask.

    Rows never leave the batch (finished rows keep decoding and are ignored) and holes are compacted
    in place, so tensor shapes and addresses stay fixed for CUDA graphs.
    """

    def __init__(self, model, prompts: list[list[int]], pad_id: int, device, cache, step=None):
        self.model, self.step = model, step or model
        width = max(max(len(p) - 1 for p in prompts), 1)
        self.capacity = cache.max_cache_len
        self.cache = cache
        cache.reset()
        self.mask = torch.zeros((len(prompts), self.capacity), dtype=torch.long, device=device)
        ids = torch.full((len(prompts), width), pad_id, dtype=torch.long, device=device)
        for b, p in enumerate(prompts):
            body = p[:-1]
            if body:
                ids[b, width - len(body) :] = torch.tensor(body, device=device)
                self.mask[b, width - len(body) : width] = 1
        self.pending = torch.tensor([p[-1] for p in prompts], dtype=torch.long, device=device)
        self.length = 0
        pos = (self.mask[:, :width].cumsum(1) - 1).clamp(min=0)
        self._run(ids, pos, self.model, logits_to_keep=1)  # eager: its width varies; only the caches matter

    def _run(self, tokens: torch.Tensor, pos: torch.Tensor, forward, **kwargs) -> torch.Tensor:
        q = tokens.shape[1]
        cache_position = torch.arange(self.length, self.length + q, device=tokens.device)
        if forward is not self.model:
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's outputs are consumed
        out = forward(
            input_ids=tokens,
            attention_mask=self.mask,
            position_ids=pos,
            past_key_values=self.cache,
            cache_position=cache_position,
            use_cache=True,
            **kwargs,
        )
        self.length += q
        return out.logits

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        q = tokens.shape[1]
        if self.length + q > self.capacity:
            self.compact()
        pos = self.mask.sum(1, keepdim=True) + torch.arange(q, device=tokens.device)
        self.mask[:, self.length : self.length + q] = 1
        return self._run(tokens, pos, self.step).float()

    def keep_last(self, q: int, valid: torch.Tensor) -> None:
        cols = torch.arange(q, device=valid.device)[None, :] < valid[:, None]
        self.mask[:, self.length - q : self.length] = cols.to(self.mask.dtype)

    def select(self, rows: torch.Tensor) -> None:
        raise RuntimeError("static contexts keep every row")

    def maybe_compact(self, threshold: float = 0.5) -> None:
        counts = self.mask.sum(1)
        if self.length and counts.max().item() <= (1 - threshold) * self.length:
            self.compact()

    def compact(self) -> None:
        """Move each row's valid entries to the front, in place (same tensors, new contents)."""
        used = self.length
        order = torch.argsort(1 - self.mask[:, :used].to(torch.int8), dim=1, stable=True)  # valid first, in order
        new_len = int(self.mask[:, :used].sum(1).max().item())
        order = order[:, :new_len]
        for layer in cache_layers(self.cache):
            for name in ("keys", "values"):
                t = getattr(layer, name)
                idx = order[:, None, :, None].expand(-1, t.shape[1], -1, t.shape[3])
                t[:, :, :new_len].copy_(torch.gather(t[:, :, :used], 2, idx))
            if torch.is_tensor(layer.cumulative_length):
                layer.cumulative_length.fill_(new_len)
            else:
                layer.cumulative_length = new_len
        new_mask = torch.gather(self.mask[:, :used], 1, order)
        self.mask.zero_()
        self.mask[:, :new_len] = new_mask
        self.length = new_len
