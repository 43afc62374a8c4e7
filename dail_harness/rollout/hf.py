"""Mixed-policy rollouts, exactly and fast, on one set of frozen weights (the hf path).

The definition (paper section 2.1): token i is t ~ M(.|x, r<i) from the student; it is kept if
M_PS(t|x, s, r<i) >= tau, otherwise r_i ~ M_PS(.|x, s, r<i). The acceptance test depends only on
the prefix, so the student may draft K tokens ahead and the privileged context verify them all in one
forward pass: the longest accepted prefix is kept, the first rejected position is resampled from
M_PS (whose distribution that same pass computed), and the drafts after it are discarded. This gives
exactly the token-by-token distribution, and with keyed randomness exactly the same traces.

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

from dataclasses import dataclass, field
from typing import Iterator

import torch

from dail_harness.sampling import keyed_gumbel_sample, stable_key


@dataclass
class RolloutConfig:
    """Settings of a mixed-policy rollout."""

    tau: float = 0.8
    """Keep the student's token when the privileged probability of it is >= tau (0: pure student;
    > 1: pure privileged student). The paper uses 0.8."""
    draft_tokens: int = 1
    """K: tokens the student drafts per verification pass (1 = token by token, in lockstep;
    0 = adaptive: each round picks the K that maximises expected tokens per forward pass)."""
    fuse_contexts: bool = True
    """With K = 1: student and privileged rows share each forward pass (one token per pass). False:
    one forward per context per token, the authors' scheme."""
    max_tokens: int = 2048
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    suppress_token_ids: list[int] = field(default_factory=list)
    """Never generated (e.g. `</think>` for thinking models, as in the authors' setup)."""
    batch_size: int = 16
    static_cache: bool = False
    """Fixed-shape decoding: static KV caches of fixed capacity, a fixed-size mask, rows kept in the
    batch until all finish; the draft ([B, 1]) and verify ([B, K+1]) steps then have fixed shapes."""
    compile: bool = False
    """With static_cache: torch.compile the decode forward (mode reduce-overhead: CUDA graphs on GPU).
    Batches are padded to batch_size and cache capacities rounded up, so one graph serves every batch."""


@dataclass
class RolloutRequest:
    row_id: str
    """Stable id of this rollout (problem id and sample index): keys its randomness."""
    student_ids: list[int]
    privileged_ids: list[int]


@dataclass
class RolloutResult:
    row_id: str
    token_ids: list[int]
    student_tokens: int
    """Tokens drafted by the student and accepted."""
    privileged_tokens: int
    """Tokens sampled from the privileged student (rejections)."""
    finish_reason: str


MAX_ADAPTIVE_K = 16
CAPACITY_BUCKET = 256  # static cache lengths are rounded up to this, so batches share compiled graphs


COMPILED_DRAFT_LENGTHS = (1, 2, 4, 8, 16)  # adaptive K under --compile: 5 verify graphs, not 16


def best_draft_length(p: float, choices=range(1, MAX_ADAPTIVE_K + 1)) -> int:
    """K (from `choices`) maximising committed tokens per forward pass when each draft is accepted with
    probability p.

    A round costs K student forwards and one verify forward; it commits the accepted prefix
    (sum_j p^j) plus one resampled token unless all K were accepted (1 - p^K).
    """
    p = min(max(p, 0.0), 0.999)

    def rate(k: int) -> float:
        return (sum(p ** j for j in range(1, k + 1)) + 1 - p ** k) / (k + 1)

    return max(choices, key=rate)


def role_keys(seed: int, row_id: str) -> tuple[int, int]:
    return stable_key("mixed", "student", seed, row_id), stable_key("mixed", "privileged", seed, row_id)


def _suppress(logits: torch.Tensor, ids: list[int]) -> torch.Tensor:
    if ids:
        logits = logits.clone()
        logits[..., ids] = float("-inf")
    return logits


class _Context:
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
                ids[b, ids.shape[1] - len(body):] = torch.tensor(body, device=device)
                mask[b, ids.shape[1] - len(body):] = 1
        self.cache = DynamicCache()
        self.mask = mask
        self.pending = torch.tensor([p[-1] for p in prompts], dtype=torch.long, device=device)
        if width > 0:
            pos = (mask.cumsum(1) - 1).clamp(min=0)
            model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=self.cache, use_cache=True)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Append tokens [B, q] (all valid for now) and return their logits [B, q, V] (float32)."""
        q = tokens.shape[1]
        pos = self.mask.sum(1, keepdim=True) + torch.arange(q, device=tokens.device)
        self.mask = torch.cat([self.mask, torch.ones_like(tokens)], dim=1)
        out = self.model(input_ids=tokens, attention_mask=self.mask, position_ids=pos,
                         past_key_values=self.cache, use_cache=True)
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
        order = torch.argsort(self.mask.to(torch.int8), dim=1, stable=True)[:, length - new_len:]  # valid last
        new_mask = torch.gather(self.mask, 1, order)
        for layer in self.cache.layers:
            idx = order[:, None, :, None].expand(-1, layer.keys.shape[1], -1, layer.keys.shape[3])
            layer.keys = torch.gather(layer.keys, 2, idx)
            layer.values = torch.gather(layer.values, 2, idx)
        self.mask = new_mask


class _StaticContext(_Context):
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
                ids[b, width - len(body):] = torch.tensor(body, device=device)
                self.mask[b, width - len(body):width] = 1
        self.pending = torch.tensor([p[-1] for p in prompts], dtype=torch.long, device=device)
        self.length = 0
        pos = (self.mask[:, :width].cumsum(1) - 1).clamp(min=0)
        self._run(ids, pos, self.model)  # the prefill stays eager: its width varies from batch to batch

    def _run(self, tokens: torch.Tensor, pos: torch.Tensor, forward) -> torch.Tensor:
        q = tokens.shape[1]
        cache_position = torch.arange(self.length, self.length + q, device=tokens.device)
        if forward is not self.model:
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's outputs are consumed
        out = forward(input_ids=tokens, attention_mask=self.mask, position_ids=pos, past_key_values=self.cache,
                      cache_position=cache_position, use_cache=True)
        self.length += q
        return out.logits

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        q = tokens.shape[1]
        if self.length + q > self.capacity:
            self.compact()
        pos = self.mask.sum(1, keepdim=True) + torch.arange(q, device=tokens.device)
        self.mask[:, self.length:self.length + q] = 1
        return self._run(tokens, pos, self.step).float()

    def keep_last(self, q: int, valid: torch.Tensor) -> None:
        cols = torch.arange(q, device=valid.device)[None, :] < valid[:, None]
        self.mask[:, self.length - q:self.length] = cols.to(self.mask.dtype)

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
        for layer in self.cache.layers:
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
        self._step = None  # the compiled decode forward
        self._caches: dict[tuple, object] = {}  # static caches, reused so compiled graphs see the same buffers
        self._run_width = 0

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
        self._run_width = max((max(len(r.student_ids), len(r.privileged_ids)) for r in requests), default=0) \
            if compiled else 0
        lockstep = cfg.draft_tokens == 1 and cfg.fuse_contexts
        for start in range(0, len(requests), cfg.batch_size):
            batch = requests[start:start + cfg.batch_size]
            if compiled and len(batch) < cfg.batch_size:  # pad the last batch: same shapes, same graphs
                batch = batch + [batch[0]] * (cfg.batch_size - len(batch))
            results = self._run_lockstep(batch, cfg) if lockstep else self._run_batch(batch, cfg)
            yield results[:len(requests) - start]

    def _context(self, prompts: list[list[int]], cfg: RolloutConfig, slot: str, slack: int = 0) -> _Context:
        if not cfg.static_cache:
            return _Context(self.model, prompts, self.pad_id, self.device)
        from transformers import StaticCache

        need = max(max(len(p) for p in prompts), self._run_width) + cfg.max_tokens + slack
        capacity = -(-need // CAPACITY_BUCKET) * CAPACITY_BUCKET
        key = (slot, len(prompts))
        cache = self._caches.get(key)
        if cache is None or cache.max_cache_len < need:
            self._caches.pop(key, None)
            cache = self._caches[key] = StaticCache(config=self.model.config, max_cache_len=capacity)
        return _StaticContext(self.model, prompts, self.pad_id, self.device, cache,
                              step=self._step if cfg.compile else None)

    def _role_key_tensors(self, requests: list[RolloutRequest], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-row student and privileged sampling keys, on the device."""
        keys = [role_keys(seed, r.row_id) for r in requests]
        return (torch.tensor([k[0] for k in keys], device=self.device),
                torch.tensor([k[1] for k in keys], device=self.device))

    def _sample(self, logits, keys, positions, cfg):
        return keyed_gumbel_sample(_suppress(logits, cfg.suppress_token_ids), keys, positions, cfg.temperature,
                                   cfg.top_p)

    @torch.inference_mode()
    def _run_batch(self, requests: list[RolloutRequest], cfg: RolloutConfig) -> list[RolloutResult]:
        dev = self.device
        adaptive = cfg.draft_tokens <= 0
        K = 4 if adaptive else cfg.draft_tokens
        seen, kept_drafts = 1.0, 0.8  # acceptance prior for adaptive K
        use_student, use_privileged = cfg.tau <= 1, cfg.tau > 0
        key_s, key_p = self._role_key_tensors(requests, cfg.seed)
        def context(prompts, slot):
            return self._context(prompts, cfg, slot, slack=2 * (MAX_ADAPTIVE_K + 2))

        student = context([r.student_ids for r in requests], "student") if use_student else None
        priv = context([r.privileged_ids for r in requests], "privileged") if use_privileged else None
        rows = torch.arange(len(requests), device=dev)  # active rows -> request index
        out = [[] for _ in requests]
        n_student = [0] * len(requests)
        n_priv = [0] * len(requests)
        reason = ["length"] * len(requests)
        while len(rows):
            m = torch.tensor([min(len(out[i]), cfg.max_tokens) for i in rows.tolist()], device=dev)  # response position
            if not use_privileged:  # tau <= 0: every draft is accepted, nothing to verify
                drafts = self._draft(student, key_s[rows], m, K, cfg)
                accepted = torch.full((len(rows),), K, device=dev)
                resampled = None
            elif not use_student:  # tau > 1: every token comes from the privileged student
                logits = priv.forward(priv.pending[:, None])[:, -1]
                drafts = self._sample(logits, key_p[rows], m, cfg)[:, None]
                accepted = torch.zeros(len(rows), dtype=torch.long, device=dev)
                resampled = drafts[:, 0]
            else:
                drafts = self._draft(student, key_s[rows], m, K, cfg)
                verify = priv.forward(torch.cat([priv.pending[:, None], drafts], dim=1))  # [B, K+1, V]
                probs = torch.softmax(_suppress(verify[:, :K], cfg.suppress_token_ids), dim=-1)
                p_draft = probs.gather(2, drafts[:, :, None])[:, :, 0]
                ok = p_draft >= cfg.tau
                accepted = torch.where(ok.all(1), torch.full_like(m, K), (~ok).int().argmax(1))
                if adaptive:  # per-draft acceptance, from the drafts each row actually examined
                    seen = 0.9 * seen + float((accepted + (accepted < K).long()).sum())
                    kept_drafts = 0.9 * kept_drafts + float(accepted.sum())
                j = accepted.clamp(max=K - 1)
                pos = m + j
                resampled = self._sample(verify[torch.arange(len(rows), device=dev), j], key_p[rows], pos, cfg)
            # commit per row: accepted drafts, then the resample (if there was a rejection)
            new_tokens, keep_counts = [], []
            for b, i in enumerate(rows.tolist()):
                if reason[i] == "stop" or len(out[i]) >= cfg.max_tokens:  # finished (static mode keeps it)
                    new_tokens.append(self.pad_id)
                    keep_counts.append(1)
                    continue
                a = int(accepted[b])
                toks = drafts[b, :a].tolist()
                from_priv = resampled is not None and a < drafts.shape[1]
                if from_priv:
                    toks.append(int(resampled[b]))
                room = cfg.max_tokens - len(out[i])
                toks = toks[:room]
                stop = next((k for k, t in enumerate(toks) if t in self.eos_ids), None)
                if stop is not None:
                    toks = toks[:stop + 1]
                    reason[i] = "stop"
                n_acc = min(a, len(toks))
                n_student[i] += n_acc
                n_priv[i] += len(toks) - n_acc
                out[i].extend(toks)
                new_tokens.append(toks[-1] if toks else int(drafts[b, -1]))
                keep_counts.append(len(toks))
            last = torch.tensor(new_tokens, device=dev)
            kept = torch.tensor(keep_counts, device=dev)
            # caches: of the entries added this round, the first `kept` are committed history
            # (pending token + accepted drafts); the newest committed token becomes pending
            if student is not None:
                student.keep_last(K, kept.clamp(max=K))
                student.pending = last
            if priv is not None:
                if use_student:
                    priv.keep_last(K + 1, kept.clamp(max=K))
                else:
                    priv.keep_last(1, kept.clamp(max=1))
                priv.pending = last
            done = torch.tensor([reason[i] == "stop" or len(out[i]) >= cfg.max_tokens for i in rows.tolist()],
                                device=dev)
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
            if adaptive and use_student and use_privileged:
                K = best_draft_length(kept_drafts / max(seen, 1e-9),
                                      COMPILED_DRAFT_LENGTHS if cfg.static_cache and cfg.compile
                                      else range(1, MAX_ADAPTIVE_K + 1))
        return [RolloutResult(r.row_id, out[i], n_student[i], n_priv[i], reason[i]) for i, r in enumerate(requests)]

    @torch.inference_mode()
    def _run_lockstep(self, requests: list[RolloutRequest], cfg: RolloutConfig) -> list[RolloutResult]:
        """K = 1 with both contexts in one cache: rows [0, n) are students, [n, 2n) privileged.

        Every pass feeds each row its last committed token and commits one token per row, so all rows
        sit at the same response position and the loop stays on the device (no per-row Python).
        """
        dev, n = self.device, len(requests)
        use_student, use_privileged = cfg.tau <= 1, cfg.tau > 0
        key_s, key_p = self._role_key_tensors(requests, cfg.seed)
        prompts = ([r.student_ids for r in requests] if use_student else []) + \
                  ([r.privileged_ids for r in requests] if use_privileged else [])
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
            if use_student:
                token = self._sample(logits[:live], key_s[rows], pos, cfg)
                accepted = torch.ones(live, dtype=torch.bool, device=dev)
            if use_privileged:
                p_logits = logits[-live:]
                resampled = self._sample(p_logits, key_p[rows], pos, cfg)
                if use_student:
                    probs = torch.softmax(_suppress(p_logits, cfg.suppress_token_ids), dim=-1)
                    accepted = probs.gather(1, token[:, None])[:, 0] >= cfg.tau
                    token = torch.where(accepted, token, resampled)
                else:
                    token, accepted = resampled, torch.zeros(live, dtype=torch.bool, device=dev)
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
        length, n_s = length.tolist(), from_student.sum(1).tolist()
        stop = stop.tolist()
        return [RolloutResult(r.row_id, tokens[i, :length[i]].tolist(), n_s[i], length[i] - n_s[i],
                              "stop" if stop[i] else "length") for i, r in enumerate(requests)]

    def _draft(self, student: _Context, keys, m, K, cfg) -> torch.Tensor:
        """K student tokens per row, autoregressively from the pending token."""
        drafts = []
        token = student.pending
        for j in range(K):
            logits = student.forward(token[:, None])[:, -1]
            token = self._sample(logits, keys, m + j, cfg)
            drafts.append(token)
        return torch.stack(drafts, dim=1)


def reference_rollout(model, request: RolloutRequest, cfg: RolloutConfig, eos_ids: list[int]) -> RolloutResult:
    """The token-by-token definition, with no cache and no drafting (slow; for tests)."""
    key_s, key_p = role_keys(cfg.seed, request.row_id)
    dev = next(model.parameters()).device
    r, n_s, n_p, reason = [], 0, 0, "length"

    def next_logits(prompt):
        with torch.inference_mode():
            return model(input_ids=torch.tensor([prompt + r], device=dev)).logits[:, -1].float()

    def sample(logits, key):
        return int(keyed_gumbel_sample(_suppress(logits, cfg.suppress_token_ids), torch.tensor([key], device=dev),
                                       torch.tensor([len(r)], device=dev), cfg.temperature, cfg.top_p)[0])

    while len(r) < cfg.max_tokens:
        t = sample(next_logits(request.student_ids), key_s) if cfg.tau <= 1 else None
        if cfg.tau > 0:
            ps_logits = next_logits(request.privileged_ids)
            if t is None or torch.softmax(_suppress(ps_logits, cfg.suppress_token_ids), -1)[0, t] < cfg.tau:
                t = sample(ps_logits, key_p)
                n_p += 1
            else:
                n_s += 1
        else:
            n_s += 1
        r.append(t)
        if t in eos_ids:
            reason = "stop"
            break
    return RolloutResult(request.row_id, r, n_s, n_p, reason)
