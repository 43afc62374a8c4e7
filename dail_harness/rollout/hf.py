"""The hf rollout engine: mixed-policy rollouts, exactly and fast, on one set of frozen weights.

The acceptance test of the definition (rollout/base.py) depends only on the prefix, so the student may
draft K tokens ahead and the privileged context verify them all in one forward pass: the longest
accepted prefix is kept, the first rejected position is resampled from M_PS (whose distribution that
same pass computed), and the drafts after it are discarded. This gives exactly the token-by-token
distribution, and with keyed randomness exactly the same traces.

Randomness is keyed by (seed, row, position, role): the student's token at position i is
argmax(warp(student logits) + G(student key, i)) and the privileged resample is
argmax(warp(PS logits) + G(privileged key, i)), Gumbel-max with counter-based noise. The acceptance
probability is the privileged model's untempered softmax probability (what the authors' vLLM
prompt log-probs give); temperature and top-p shape the two sampling distributions.

Two schedules:
- lockstep (K = 1, the default): the student rows and the privileged rows of a batch live in one KV
  cache of 2B rows and share every forward pass. Each pass gives both distributions at the same
  position, so each commits one token per row: the forward count of plain sampling, with no drafts
  to waste. While decoding is bound by reading the weights (a GPU at batch <= 64 for a 7B model), a
  mixed rollout then costs about what plain student sampling costs.
- drafting (K > 1, or 0 for adaptive K): separate student and privileged caches; the student drafts
  K tokens, one verify pass scores them. Rejected drafts stay in the caches as masked holes (no
  copy); the caches are compacted when holes pass half their length, and finished rows leave the
  batch. `fuse_contexts=False` with K = 1 runs two forwards per token, one per context (the
  authors' scheme, kept as a benchmark baseline).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from dail_harness import registry
from dail_harness.rollout.base import (
    CAPACITY_BUCKET,
    COMPILED_DRAFT_LENGTHS,
    MAX_ADAPTIVE_K,
    DraftLength,
    RolloutConfig,
    RolloutRequest,
    RolloutResult,
    Trace,
    choose_tokens,
    role_keys,
    suppress,
)
from dail_harness.rollout.contexts import KVContext, StaticKVContext
from dail_harness.sampling import keyed_gumbel_sample


@registry.register("rollouts", "hf")
class MixedPolicyEngine:
    """Batched mixed-policy rollouts for one model (student and privileged student share weights)."""

    def __init__(self, model, tokenizer, eos_ids: list[int], compile_options: dict | None = None):
        from dail_harness.models.attention import use_folded_gqa

        self.model, self.tokenizer = model, tokenizer
        use_folded_gqa(model)  # masked decoding without copying the KV cache per step
        self.eos_ids = list(eos_ids)
        self.device = next(model.parameters()).device
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]
        self.compile_options = dict(compile_options or {"mode": "reduce-overhead"})
        self._step: Any = None  # the compiled decode forward
        self._caches: dict[tuple, Any] = {}  # static caches, reused so compiled graphs see the same buffers
        self._run_width = 0

    default_draft_tokens = 1
    """Lockstep: student and privileged rows share each forward pass (one pass per token)."""

    @classmethod
    def from_backend(cls, backend) -> MixedPolicyEngine:
        """The engine on an `hf` back-end's model (one set of weights for both contexts)."""
        return cls(backend.model, backend.tokenizer, backend.eos_ids)

    def run(self, requests: list[RolloutRequest], cfg: RolloutConfig) -> Iterator[list[RolloutResult]]:
        """Yield results batch by batch (requests are grouped by `cfg.batch_size`)."""
        compiled = cfg.static_cache and cfg.compile
        if compiled and self._step is None:
            import torch._dynamo.config as dynamo_config

            # one graph per step shape: [B, 1] drafts and a verify width per draft length
            limit = "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"
            setattr(dynamo_config, limit, max(getattr(dynamo_config, limit), 4 * MAX_ADAPTIVE_K))
            self._step = torch.compile(self.model.forward, dynamic=False, **self.compile_options)
        # compiled graphs are specialised to the cache length: size it once for the whole run
        self._run_width = (
            max((max(len(r.student_ids), len(r.privileged_ids)) for r in requests), default=0) if compiled else 0
        )
        if cfg.proposal == "top20x5" and not (cfg.draft_tokens == 1 and cfg.fuse_contexts):
            from dail_harness.errors import HarnessError

            raise HarnessError(
                "--proposal top20x5 (the authors' five top-20 draws) runs token by token: use --draft-tokens 1"
            )
        lockstep = cfg.draft_tokens == 1 and cfg.fuse_contexts
        for start in range(0, len(requests), cfg.batch_size):
            batch = requests[start : start + cfg.batch_size]
            if compiled and len(batch) < cfg.batch_size:  # pad the last batch: same shapes, same graphs
                batch = batch + [batch[0]] * (cfg.batch_size - len(batch))
            results = self._run_lockstep(batch, cfg) if lockstep else self._run_batch(batch, cfg)
            yield results[: len(requests) - start]

    def _context(self, prompts: list[list[int]], cfg: RolloutConfig, slot: str, slack: int = 0) -> KVContext:
        if not cfg.static_cache:
            return KVContext(self.model, prompts, self.pad_id, self.device)
        from transformers import StaticCache

        need = max(max(len(p) for p in prompts), self._run_width) + cfg.max_tokens + slack
        capacity = -(-need // CAPACITY_BUCKET) * CAPACITY_BUCKET
        key = (slot, len(prompts))
        cache = self._caches.get(key)
        if cache is None or cache.max_cache_len < need:
            self._caches.pop(key, None)
            cache = self._caches[key] = StaticCache(config=self.model.config, max_cache_len=capacity)
        return StaticKVContext(
            self.model, prompts, self.pad_id, self.device, cache, step=self._step if cfg.compile else None
        )

    def _role_key_tensors(self, requests: list[RolloutRequest], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-row student and privileged sampling keys, on the device."""
        keys = [role_keys(seed, r.row_id) for r in requests]
        return (
            torch.tensor([k[0] for k in keys], device=self.device),
            torch.tensor([k[1] for k in keys], device=self.device),
        )

    def _sample(self, logits, keys, positions, cfg):
        return keyed_gumbel_sample(
            suppress(logits, cfg.suppress_token_ids), keys, positions, cfg.temperature, cfg.top_p, cfg.top_k
        )

    @torch.inference_mode()
    def _run_batch(self, requests: list[RolloutRequest], cfg: RolloutConfig) -> list[RolloutResult]:
        dev = self.device
        draft = DraftLength(
            cfg.draft_tokens,
            COMPILED_DRAFT_LENGTHS if cfg.static_cache and cfg.compile else range(1, MAX_ADAPTIVE_K + 1),
        )
        use_student, use_privileged = cfg.tau <= 1, cfg.tau > 0
        key_s, key_p = self._role_key_tensors(requests, cfg.seed)

        def context(prompts, slot):
            return self._context(prompts, cfg, slot, slack=2 * (MAX_ADAPTIVE_K + 2))

        student = context([r.student_ids for r in requests], "student") if use_student else None
        priv = context([r.privileged_ids for r in requests], "privileged") if use_privileged else None
        rows = torch.arange(len(requests), device=dev)  # active rows -> request index
        traces = [Trace(r.row_id) for r in requests]
        while len(rows):
            K = draft.k
            m = torch.tensor([min(len(traces[i].tokens), cfg.max_tokens) for i in rows.tolist()], device=dev)
            drafts, accepted, resampled = self._propose(student, priv, key_s[rows], key_p[rows], m, K, cfg, draft)
            # commit per row: accepted drafts, then the resample (if there was a rejection)
            new_tokens, keep_counts = [], []
            for b, i in enumerate(rows.tolist()):
                if traces[i].finished(cfg.max_tokens):  # static mode keeps finished rows in the batch
                    new_tokens.append(self.pad_id)
                    keep_counts.append(1)
                    continue
                a = int(accepted[b])
                toks = drafts[b, :a].tolist()
                if resampled is not None and a < drafts.shape[1]:
                    toks.append(int(resampled[b]))
                kept = traces[i].commit(toks, a, cfg.max_tokens, self.eos_ids)
                new_tokens.append(kept[-1] if kept else int(drafts[b, -1]))
                keep_counts.append(len(kept))
            last = torch.tensor(new_tokens, device=dev)
            kept_counts = torch.tensor(keep_counts, device=dev)
            _advance(student, priv, K, kept_counts, last)
            done = torch.tensor([traces[i].finished(cfg.max_tokens) for i in rows.tolist()], device=dev)
            if done.all():
                break
            if done.any() and not cfg.static_cache:
                live = torch.nonzero(~done).flatten()
                rows = rows[live]
                for ctx in (student, priv):
                    if ctx is not None:
                        ctx.select(live)
            for ctx in (student, priv):
                if ctx is not None and len(rows):
                    ctx.maybe_compact()
        return [t.result() for t in traces]

    def _propose(self, student, priv, key_s, key_p, m, K: int, cfg: RolloutConfig, draft: DraftLength):
        """One round for the active rows: (drafts [B, K'], accepted per row, the privileged resample per row or
        None). The student drafts K tokens and the privileged student keeps those with probability >= tau, then
        resamples the first rejected one; tau <= 0 skips verifying, tau > 1 skips drafting."""
        dev = m.device
        if priv is None:  # tau <= 0: every draft is accepted, nothing to verify
            return self._draft(student, key_s, m, K, cfg), torch.full((len(m),), K, device=dev), None
        if student is None:  # tau > 1: every token comes from the privileged student
            logits = priv.forward(priv.pending[:, None])[:, -1]
            drafts = self._sample(logits, key_p, m, cfg)[:, None]
            return drafts, torch.zeros(len(m), dtype=torch.long, device=dev), drafts[:, 0]
        drafts = self._draft(student, key_s, m, K, cfg)
        verify = priv.forward(torch.cat([priv.pending[:, None], drafts], dim=1))  # [B, K+1, V]
        probs = torch.softmax(suppress(verify[:, :K], cfg.suppress_token_ids), dim=-1)
        ok = probs.gather(2, drafts[:, :, None])[:, :, 0] >= cfg.tau
        accepted = torch.where(ok.all(1), torch.full_like(m, K), (~ok).int().argmax(1))
        # per-draft acceptance, from the drafts each row actually examined
        draft.observe(float((accepted + (accepted < K).long()).sum()), float(accepted.sum()))
        j = accepted.clamp(max=K - 1)
        return drafts, accepted, self._sample(verify[torch.arange(len(m), device=dev), j], key_p, m + j, cfg)

    @torch.inference_mode()
    def _run_lockstep(self, requests: list[RolloutRequest], cfg: RolloutConfig) -> list[RolloutResult]:
        """K = 1 with both contexts in one cache: rows [0, n) are students, [n, 2n) privileged.

        Every pass feeds each row its last committed token and commits one token per row, so all rows
        sit at the same response position and the loop stays on the device (no per-row Python).
        """
        dev, n = self.device, len(requests)
        authors = cfg.proposal == "top20x5"
        use_student, use_privileged = cfg.tau <= 1 or authors, cfg.tau > 0 or authors
        key_s, key_p = self._role_key_tensors(requests, cfg.seed)
        prompts = ([r.student_ids for r in requests] if use_student else []) + (
            [r.privileged_ids for r in requests] if use_privileged else []
        )
        ctx = self._context(prompts, cfg, "lockstep", slack=2)
        roles = int(use_student) + int(use_privileged)
        tokens = torch.full((n, cfg.max_tokens), self.pad_id, dtype=torch.long, device=dev)
        from_student = torch.zeros((n, cfg.max_tokens), dtype=torch.bool, device=dev)
        done = torch.zeros(n, dtype=torch.bool, device=dev)
        stop = torch.zeros(n, dtype=torch.bool, device=dev)
        length = torch.zeros(n, dtype=torch.long, device=dev)
        eos = torch.tensor(self.eos_ids or [-1], device=dev)
        rows = torch.arange(n, device=dev)  # rows still in the cache (dynamic mode drops finished ones)
        for step in range(cfg.max_tokens):
            logits = ctx.forward(ctx.pending[:, None])[:, -1]
            live = len(rows)
            pos = torch.full((live,), step, device=dev)
            token, accepted = choose_tokens(
                logits[:live] if use_student else None,
                logits[-live:] if use_privileged else None,
                key_s[rows],
                key_p[rows],
                pos,
                cfg,
            )
            active = ~done[rows]
            tokens[rows, step] = torch.where(active, token, tokens[rows, step])
            from_student[rows, step] = accepted & active
            length[rows] += active.long()
            ended = active & torch.isin(token, eos)
            stop[rows] |= ended
            done[rows] |= ended
            ctx.pending = token.repeat(roles)
            if step % 8 == 7 or step == cfg.max_tokens - 1:  # a host sync: not every step
                if bool(done.all()):
                    break
                if not cfg.static_cache and bool(done[rows].any()):
                    keep = torch.nonzero(~done[rows]).flatten()
                    ctx.select(torch.cat([keep + k * live for k in range(roles)]))
                    rows = rows[keep]
        lengths, n_s, stopped = length.tolist(), from_student.sum(1).tolist(), stop.tolist()
        return [
            RolloutResult(
                r.row_id,
                tokens[i, : lengths[i]].tolist(),
                n_s[i],
                lengths[i] - n_s[i],
                "stop" if stopped[i] else "length",
            )
            for i, r in enumerate(requests)
        ]

    def _draft(self, student: KVContext, keys, m, K, cfg) -> torch.Tensor:
        """K student tokens per row, autoregressively from the pending token."""
        drafts = []
        token = student.pending
        for j in range(K):
            logits = student.forward(token[:, None])[:, -1]
            token = self._sample(logits, keys, m + j, cfg)
            drafts.append(token)
        return torch.stack(drafts, dim=1)


def _advance(student: KVContext | None, priv: KVContext | None, K: int, kept: torch.Tensor, last: torch.Tensor) -> None:
    """The caches after a round: of the entries added this round, the first `kept` per row are committed history
    (the pending token and the accepted drafts), and the newest committed token becomes pending."""
    if student is not None:
        student.keep_last(K, kept.clamp(max=K))
        student.pending = last
    if priv is not None:
        if student is not None:
            priv.keep_last(K + 1, kept.clamp(max=K))
        else:  # tau > 1: one privileged token a round
            priv.keep_last(1, kept.clamp(max=1))
        priv.pending = last
