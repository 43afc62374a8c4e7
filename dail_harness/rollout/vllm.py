"""Mixed-policy rollouts on vLLM: the student drafts, prompt log-probs of the privileged context verify.

Each round makes up to three batched engine calls for all active rows: (1) the student samples K
draft tokens; (2) the privileged context is scored with `prompt_logprobs=0` over prompt + trace +
drafts, giving M_PS(draft_j | ...) for every draft (the untempered probabilities the acceptance test
uses); (3) rows with a rejection sample one token from the privileged context at the first rejected
position. The output law is the token-by-token definition's (the acceptance test depends only on the
prefix), but randomness is vLLM's (seeded per engine), not keyed as in the hf engine.

Cost: vLLM does not use the prefix cache for requests that ask for prompt log-probs, so every verify
re-reads the whole privileged prompt and trace: O(L) per round, O(L^2 / K) per trace. Prefer the hf
engine (KV caches for both contexts) unless vLLM's batching wins for your sizes; see
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import math
from typing import Iterator

from dail_harness.rollout.hf import RolloutConfig, RolloutRequest, RolloutResult, best_draft_length


class VLLMMixedRollout:
    def __init__(self, llm, eos_ids: list[int]):
        self.llm, self.eos_ids = llm, set(eos_ids)

    def run(self, requests: list[RolloutRequest], cfg: RolloutConfig) -> Iterator[list[RolloutResult]]:
        for start in range(0, len(requests), cfg.batch_size):
            yield self._run_batch(requests[start:start + cfg.batch_size], cfg)

    def _params(self, **kw):
        from vllm import SamplingParams

        return SamplingParams(skip_special_tokens=False, **kw)

    def _sampling(self, cfg: RolloutConfig, max_tokens: int):
        bad = {"logit_bias": {t: -100.0 for t in cfg.suppress_token_ids}} if cfg.suppress_token_ids else {}
        if cfg.temperature == 0:
            return self._params(temperature=0.0, max_tokens=max_tokens, **bad)
        return self._params(temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=max_tokens, **bad)

    def _generate(self, prompts, params):
        from vllm.inputs import TokensPrompt

        return self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)

    def _run_batch(self, requests: list[RolloutRequest], cfg: RolloutConfig) -> list[RolloutResult]:
        out = {r.row_id: [] for r in requests}
        n_s = {r.row_id: 0 for r in requests}
        n_p = {r.row_id: 0 for r in requests}
        reason = {r.row_id: "length" for r in requests}
        active = list(requests)
        adaptive = cfg.draft_tokens <= 0
        K = 4 if adaptive else cfg.draft_tokens
        seen, kept = 1.0, 0.8
        while active:
            if cfg.tau > 1:  # pure privileged student
                res = self._generate([r.privileged_ids + out[r.row_id] for r in active], self._sampling(cfg, 1))
                commits = [([o.outputs[0].token_ids[0]], 0) for o in res]
            else:
                drafts_out = self._generate([r.student_ids + out[r.row_id] for r in active], self._sampling(cfg, K))
                drafts = [list(o.outputs[0].token_ids) for o in drafts_out]
                if cfg.tau <= 0:
                    commits = [(d, len(d)) for d in drafts]
                else:
                    scored = self._generate([r.privileged_ids + out[r.row_id] + d for r, d in zip(active, drafts)],
                                            self._params(max_tokens=1, prompt_logprobs=0, temperature=0.0))
                    firsts = []
                    for r, d, o in zip(active, drafts, scored):
                        lps = o.prompt_logprobs[len(r.privileged_ids) + len(out[r.row_id]):]
                        probs = [math.exp(lp[t].logprob) for t, lp in zip(d, lps)]
                        a = next((j for j, p in enumerate(probs) if p < cfg.tau), len(d))
                        firsts.append(a)
                        seen, kept = 0.9 * seen + min(a + 1, len(d)), 0.9 * kept + a
                    rejected = [i for i, (a, d) in enumerate(zip(firsts, drafts)) if a < len(d)]
                    resampled = {}
                    if rejected:
                        res = self._generate([active[i].privileged_ids + out[active[i].row_id] + drafts[i][:firsts[i]]
                                              for i in rejected], self._sampling(cfg, 1))
                        resampled = {i: o.outputs[0].token_ids[0] for i, o in zip(rejected, res)}
                    commits = [(d[:a] + ([resampled[i]] if i in resampled else []), a)
                               for i, (a, d) in enumerate(zip(firsts, drafts))]
                    if adaptive:
                        K = best_draft_length(kept / max(seen, 1e-9))
            still = []
            for r, (toks, a) in zip(active, commits):
                toks = toks[:cfg.max_tokens - len(out[r.row_id])]
                stop = next((k for k, t in enumerate(toks) if t in self.eos_ids), None)
                if stop is not None:
                    toks, reason[r.row_id] = toks[:stop + 1], "stop"
                n_s[r.row_id] += min(a, len(toks))
                n_p[r.row_id] += len(toks) - min(a, len(toks))
                out[r.row_id].extend(toks)
                if reason[r.row_id] != "stop" and len(out[r.row_id]) < cfg.max_tokens and toks:
                    still.append(r)
                elif not toks and reason[r.row_id] != "stop":
                    reason[r.row_id] = "stop"  # the student ended its draft without tokens (EOS)
            active = still
        return [RolloutResult(r.row_id, out[r.row_id], n_s[r.row_id], n_p[r.row_id], reason[r.row_id])
                for r in requests]
