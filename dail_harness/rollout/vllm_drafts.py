"""Mixed-policy rollouts on vLLM with drafts (`--draft-tokens K`, K != 1): the student drafts, prompt log-probs
of the privileged context verify. The token-by-token default runs inside the engine instead (rollout/vllm.py).

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
from collections.abc import Iterator

from dail_harness.rollout.base import DraftLength, RolloutConfig, RolloutRequest, RolloutResult, Trace


class VLLMDraftedRollout:
    """Mixed rollouts on a vLLM engine: student drafts, prompt-log-prob verification, resampling. Each verify
    re-reads the whole privileged context (no prefix cache with prompt log-probs), so long drafts pay
    (benchmarks/RESULTS.md)."""

    def __init__(self, llm, eos_ids: list[int]):
        self.llm, self.eos_ids = llm, set(eos_ids)

    def run(self, requests: list[RolloutRequest], cfg: RolloutConfig) -> Iterator[list[RolloutResult]]:
        if cfg.proposal != "full":
            from dail_harness.errors import HarnessError

            raise HarnessError(f"--proposal {cfg.proposal} runs on the hf rollout engine (--backend hf)")
        for start in range(0, len(requests), cfg.batch_size):
            yield self._run_batch(requests[start : start + cfg.batch_size], cfg)

    def _params(self, **kw):
        from vllm import SamplingParams

        return SamplingParams(skip_special_tokens=False, **kw)

    def _sampling(self, cfg: RolloutConfig, max_tokens: int):
        bad = {"logit_bias": {t: -100.0 for t in cfg.suppress_token_ids}} if cfg.suppress_token_ids else {}
        if cfg.temperature == 0:
            return self._params(temperature=0.0, max_tokens=max_tokens, **bad)
        return self._params(temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k, max_tokens=max_tokens, **bad)

    def _generate(self, prompts, params):
        from vllm.inputs import TokensPrompt

        return self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)

    def _run_batch(self, requests: list[RolloutRequest], cfg: RolloutConfig) -> list[RolloutResult]:
        traces = {r.row_id: Trace(r.row_id) for r in requests}
        active = list(requests)
        draft = DraftLength(cfg.draft_tokens)
        while active:
            out = [traces[r.row_id].tokens for r in active]
            if cfg.tau > 1:  # pure privileged student
                res = self._generate([r.privileged_ids + o for r, o in zip(active, out)], self._sampling(cfg, 1))
                commits = [([o.outputs[0].token_ids[0]], 0) for o in res]
            else:
                drafts_out = self._generate(
                    [r.student_ids + o for r, o in zip(active, out)], self._sampling(cfg, draft.k)
                )
                drafts = [list(o.outputs[0].token_ids) for o in drafts_out]
                if cfg.tau <= 0:
                    commits = [(d, len(d)) for d in drafts]
                else:
                    scored = self._generate(
                        [r.privileged_ids + o + d for r, o, d in zip(active, out, drafts)],
                        self._params(max_tokens=1, prompt_logprobs=0, temperature=0.0),
                    )
                    firsts = []
                    for r, o, d, s in zip(active, out, drafts, scored):
                        lps = s.prompt_logprobs[len(r.privileged_ids) + len(o) :]
                        probs = [math.exp(lp[t].logprob) for t, lp in zip(d, lps)]
                        firsts.append(next((j for j, p in enumerate(probs) if p < cfg.tau), len(d)))
                    draft.observe(sum(min(a + 1, len(d)) for a, d in zip(firsts, drafts)), sum(firsts))
                    rejected = [i for i, (a, d) in enumerate(zip(firsts, drafts)) if a < len(d)]
                    resampled = {}
                    if rejected:
                        res = self._generate(
                            [active[i].privileged_ids + out[i] + drafts[i][: firsts[i]] for i in rejected],
                            self._sampling(cfg, 1),
                        )
                        resampled = {i: o.outputs[0].token_ids[0] for i, o in zip(rejected, res)}
                    commits = [
                        (d[:a] + ([resampled[i]] if i in resampled else []), a)
                        for i, (a, d) in enumerate(zip(firsts, drafts))
                    ]
            still = []
            for r, (toks, a) in zip(active, commits):
                trace = traces[r.row_id]
                kept = trace.commit(toks, a, cfg.max_tokens, self.eos_ids)
                if not kept and trace.finish_reason != "stop":
                    trace.finish_reason = "stop"  # the student ended its draft without tokens (EOS)
                if not trace.finished(cfg.max_tokens):
                    still.append(r)
            active = still
        return [traces[r.row_id].result() for r in requests]
