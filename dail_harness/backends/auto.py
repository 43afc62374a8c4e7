"""`--backend auto`: vLLM where it is installed and the job is large enough to repay its start-up, hf otherwise.

The rule is deliberately simple and printed with its reason, so a run's choice is never a surprise. vLLM's
start-up (model load, KV cache, warm-up) costs 15-70 s on a CPU and about a minute on a GPU; it decodes 2.6-4.4x
faster than the hf back-end on a 0.5B model on 2 CPU cores (benchmarks/RESULTS.md) and far more on a GPU, so
its start-up is repaid after a few thousand tokens. The threshold below keeps small jobs (tests, smoke runs,
the demo) on hf, which starts at once and samples bitwise-keyed.
"""

from __future__ import annotations

import importlib.util
import sys

AUTO = "auto"
VLLM_MIN_TOKENS = 50_000
"""Below this many tokens to sample (an upper bound: samples x max tokens), hf is chosen."""


def choose_backend(tokens: int, model: str, hf_settings: list[str], why_not_vllm: str | None = None) -> tuple[str, str]:
    """(back-end, reason) for a job that samples up to `tokens` tokens from `model`. `hf_settings` are flags the
    user gave that only hf uses (e.g. --device); `why_not_vllm` is the job's own reason vLLM cannot serve it."""
    if importlib.util.find_spec("vllm") is None:
        return "hf", "vLLM is not installed"
    if hf_settings:
        return "hf", f"{', '.join(hf_settings)} {'is an hf setting' if len(hf_settings) == 1 else 'are hf settings'}"
    if why_not_vllm:
        return "hf", why_not_vllm
    from dail_harness.models.loading import adapter_base, resolve_model

    try:
        adapter = adapter_base(resolve_model(model))
    except Exception:  # a hub id not downloaded yet: vLLM can load it like hf
        adapter = None
    if adapter:
        return "hf", "the model is a LoRA adapter (vLLM serves full models: merge it to use vLLM)"
    if tokens < VLLM_MIN_TOKENS:
        return "hf", f"at most {tokens:,} tokens to sample, too few to repay vLLM's start-up (< {VLLM_MIN_TOKENS:,})"
    return "vllm", f"up to {tokens:,} tokens to sample: vLLM's batching repays its start-up"


def announce(command: str, backend: str, reason: str) -> None:
    print(f"{command}: --backend auto chose {backend} ({reason}); --backend hf|vllm overrides", file=sys.stderr)
