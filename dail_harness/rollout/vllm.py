"""Mixed-policy rollouts on vLLM, token by token inside the engine (the default for `--backend vllm`).

Each trace is two requests in one engine, the privileged context submitted first, then the student context;
the logits processor of rollout/vllm_pairs.py pairs them at every step and forces both to the token the
mixing rule chooses, with the hf engine's keyed draws (the same traces, up to the two engines' numerics).
Both requests then decode with vLLM's batching, paged KV cache and prefix cache, so a committed token costs
two rows of one batched forward pass instead of a prompt re-read.

When vLLM splits a pair (a row left out of a step by the token budget or a preemption), the processor stops
both rows with the sentinel token; this driver keeps their common prefix and resubmits the pair from there
(the prefix cache holds the prompt and the prefix, so a resume costs little). A pair that makes no progress
twice runs alone in its own call, where both rows always fit one step; if even that fails the run stops with
an error rather than looping.

The sentinel is the model's last vocabulary id (an unused padding or reserved id in Qwen2.5, Qwen3 and
Llama 3; a real token only in toy vocabularies): it is suppressed from both distributions, so this engine
never generates it. Engine settings that keep pairs together (chunked prefill off, a step budget of two full
contexts, synchronous scheduling) are set by `VLLMBackend(mixed_rollouts=True)`.

`--draft-tokens K` with K != 1 runs the drafting scheme of rollout/vllm_drafts.py instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from dail_harness import registry
from dail_harness.errors import HarnessError
from dail_harness.rollout.base import RolloutConfig, RolloutRequest, RolloutResult, Trace, role_keys

PAIRS_PER_CALL = 128
"""Pairs per engine call when the rollout's batch size is not set: results are stored after each call."""
STALLS_BEFORE_ALONE, STALLS_BEFORE_ERROR = 2, 4


TESTED_VLLM = "0.32"


def warn_untested_vllm() -> None:
    """The pairing relies on vLLM internals (batch updates of logits processors, live output lists, scheduler
    pause): say so once when the installed vLLM is not the tested one."""
    import sys

    import vllm

    if not str(vllm.__version__).startswith(TESTED_VLLM + ".") and not getattr(warn_untested_vllm, "said", False):
        warn_untested_vllm.said = True  # type: ignore[attr-defined]
        print(
            f"warning: mixed rollouts on vLLM are tested with vLLM {TESTED_VLLM}.x, this is {vllm.__version__}: "
            "run tests/test_vllm_mixed.py before trusting its traces",
            file=sys.stderr,
        )


def sentinel_token(vocab_size: int, eos_ids: list[int]) -> int:
    """The id forced on a row whose partner is out of step: the last vocabulary id that is not an end token."""
    return next(t for t in range(vocab_size - 1, -1, -1) if t not in set(eos_ids))


@registry.register("rollouts", "vllm")
class VLLMMixedRollout:
    """Mixed rollouts inside one vLLM engine: paired requests forced to the mixing rule's token."""

    default_draft_tokens = 1
    default_batch_size = PAIRS_PER_CALL
    backend_options: ClassVar[dict[str, Any]] = {"mixed_rollouts": True}
    """What the back-end must be built with (generate passes it)."""

    def __init__(self, llm, eos_ids: list[int]):
        from dail_harness.rollout.vllm_pairs import PairedMixing
        from dail_harness.rollout.vllm_worker import WORKER_EXTENSION

        config = llm.llm_engine.vllm_config
        if PairedMixing not in (config.model_config.logits_processors or []) or (
            config.parallel_config.worker_extension_cls != WORKER_EXTENSION
        ):
            raise HarnessError("mixed rollouts on vLLM need an engine built with VLLMBackend(mixed_rollouts=True)")
        if config.speculative_config is not None:
            raise HarnessError("mixed rollouts on vLLM cannot run with speculative decoding (no logits processors)")
        warn_untested_vllm()
        self.llm, self.eos_ids = llm, list(eos_ids)
        self.max_model_len = int(config.model_config.max_model_len)
        self.sentinel = sentinel_token(int(config.model_config.get_vocab_size()), self.eos_ids)
        self._requests = 0

    @classmethod
    def from_backend(cls, backend) -> VLLMMixedRollout:
        return cls(backend.llm, backend.eos_ids)

    def run(self, requests: list[RolloutRequest], cfg: RolloutConfig) -> Iterator[list[RolloutResult]]:
        if cfg.draft_tokens != 1:
            from dail_harness.rollout.vllm_drafts import VLLMDraftedRollout

            yield from VLLMDraftedRollout(self.llm, self.eos_ids).run(requests, cfg)
            return
        for start in range(0, len(requests), cfg.batch_size):
            yield self._run_calls(requests[start : start + cfg.batch_size], cfg)

    def _run_calls(self, requests: list[RolloutRequest], cfg: RolloutConfig) -> list[RolloutResult]:
        """Engine calls until every trace of `requests` is finished; the stalled pairs run one per call."""
        traces = {r.row_id: Trace(r.row_id) for r in requests}
        stalls = dict.fromkeys(traces, 0)
        done: set[str] = set()
        todo, attempt = list(requests), 0
        while todo:
            together = [r for r in todo if stalls[r.row_id] < STALLS_BEFORE_ALONE]
            for group in [together] + [[r] for r in todo if stalls[r.row_id] >= STALLS_BEFORE_ALONE]:
                if group:
                    self._call(group, traces, stalls, done, cfg, attempt)
                    attempt += 1
            todo = [r for r in todo if r.row_id not in done]
            for r in todo:
                if stalls[r.row_id] >= STALLS_BEFORE_ERROR:
                    raise HarnessError(
                        f"mixed rollout {r.row_id}: vLLM never scheduled its two requests together (prompts of "
                        f"{len(r.student_ids)} and {len(r.privileged_ids)} tokens); use --backend hf"
                    )
        return [traces[r.row_id].result() for r in requests]

    def _call(self, group, traces: dict[str, Trace], stalls: dict, done: set, cfg: RolloutConfig, attempt: int) -> None:
        """One engine call for `group`: submit each trace from its committed prefix, then commit what the rows of
        each pair agree on. A trace is done when its rows ended on their own (an end token, or the token cap)."""
        submitted = []  # (request, pair id, index of its first row in the call, rows)
        prompts: list[list[int]] = []
        params: list[Any] = []
        for r in group:
            trace = traces[r.row_id]
            contexts = self._contexts(r, cfg)
            room = min(self.max_model_len - len(ids) for _, ids in contexts) - len(trace.tokens)
            cap = min(cfg.max_tokens - len(trace.tokens), room)
            if cap <= 0:  # a context is full: the trace ends here, as vLLM would end it
                done.add(r.row_id)
                continue
            submitted.append((r, f"{r.row_id}@{attempt}", len(prompts), len(contexts)))
            for role, ids in contexts:
                prompts.append(ids + trace.tokens)
                params.append(self._params(r, submitted[-1][1], role, len(trace.tokens), cap, cfg))
        if not submitted:
            return
        outputs = self._generate(prompts, params)
        rows = {pair: [list(outputs[at + k].outputs[0].token_ids) for k in range(n)] for _, pair, at, n in submitted}
        kept = {pair: common_prefix(rows[pair], self.sentinel) for pair in rows}
        paired = cfg.proposal == "top20x5" or 0 < cfg.tau <= 1
        accepted = {}
        if paired:
            limits = {}
            for r, pair, *_ in submitted:
                offset = len(traces[r.row_id].tokens)
                limits[pair] = (offset, offset + len(kept[pair]))
            accepted = self.llm.collective_rpc("dail_take_accepted", args=(limits,))[0]
        for r, pair, *_ in submitted:
            tokens = kept[pair]
            student = accepted[pair] if paired else len(tokens) if cfg.tau <= 0 else 0
            traces[r.row_id].commit(tokens, student, cfg.max_tokens, self.eos_ids)
            stalls[r.row_id] = 0 if tokens else stalls[r.row_id] + 1
            if all(self.sentinel not in out[-1:] for out in rows[pair]):
                done.add(r.row_id)

    def _contexts(self, r: RolloutRequest, cfg: RolloutConfig) -> list[tuple[str, list[int]]]:
        """The requests of one trace, privileged first (the scheduler admits in order): both, or the one
        context that decides every token (tau <= 0: the student; tau > 1: the privileged student)."""
        from dail_harness.rollout.vllm_pairs import PRIVILEGED, SOLO, STUDENT

        if cfg.proposal != "top20x5" and cfg.tau <= 0:
            return [(SOLO, r.student_ids)]
        if cfg.proposal != "top20x5" and cfg.tau > 1:
            return [(SOLO, r.privileged_ids)]
        return [(PRIVILEGED, r.privileged_ids), (STUDENT, r.student_ids)]

    def _params(self, r: RolloutRequest, pair: str, role: str, offset: int, cap: int, cfg: RolloutConfig):
        from vllm import SamplingParams

        from dail_harness.rollout.vllm_pairs import RowSpec, rule_of

        key_s, key_p = role_keys(cfg.seed, r.row_id)
        spec = RowSpec(pair, role, offset, key_s, key_p, rule_of(cfg, self.sentinel))
        return SamplingParams(
            n=1,
            temperature=0.0,  # the processor leaves one finite logit: greedy takes it without drawing noise
            max_tokens=cap,
            stop_token_ids=[*self.eos_ids, self.sentinel],
            detokenize=False,
            extra_args=spec.as_args(),
        )

    def _generate(self, prompts: list[list[int]], params: list) -> list:
        """The finished outputs of one call, in order. An engine in its own process (vLLM's default on GPUs) could
        step between the arrival of a pair's two requests, so its scheduler is held while they are added."""
        from vllm.inputs import TokensPrompt

        engine = self.llm.llm_engine
        core = engine.engine_core
        hold = hasattr(core, "call_utility")  # the multiprocess client; the in-process one steps only when asked
        if hold:
            core.call_utility("pause_scheduler", "keep", False)
        ids = []
        try:
            for p, sp in zip(prompts, params):
                self._requests += 1
                ids.append(f"dail-mixed-{self._requests}")
                engine.add_request(ids[-1], TokensPrompt(prompt_token_ids=p), sp)
        finally:
            if hold:
                core.call_utility("resume_scheduler")
        done: dict[str, Any] = {}
        while engine.has_unfinished_requests():
            done.update((out.request_id, out) for out in engine.step() if out.finished)
        return [done[i] for i in ids]


def common_prefix(rows: list[list[int]], sentinel: int) -> list[int]:
    """The tokens every row of a pair produced at the same positions, up to the first sentinel."""
    out = []
    for column in zip(*rows):
        if column[0] == sentinel or any(t != column[0] for t in column):
            break
        out.append(column[0])
    return out
