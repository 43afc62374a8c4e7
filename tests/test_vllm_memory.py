"""vLLM on CPU: the KV cache is sized from the model and the context length, and a context that cannot fit
is refused before any engine start, naming the setting and a value that fits (no vLLM needed)."""

from __future__ import annotations

import types

import pytest

from dail_harness.backends.vllm import CPU_KV_SEQUENCES, cpu_kv_cache_bytes
from dail_harness.errors import HarnessError
from dail_harness.models.loading import resolve_model


def fake_memory(monkeypatch, available: int) -> None:
    import psutil

    monkeypatch.setattr(psutil, "virtual_memory", lambda: types.SimpleNamespace(available=available))


@pytest.mark.parametrize("dtype,width", [("float32", 4), ("bfloat16", 2)])
def test_kv_cache_holds_a_few_full_length_sequences(monkeypatch, dtype, width):
    path = resolve_model("tiny-random")  # 2 layers, 2 KV heads of 32
    per_token = 2 * 2 * 2 * 32 * width  # keys and values, layers, KV heads, head_dim, bytes
    fake_memory(monkeypatch, 64 << 30)
    assert cpu_kv_cache_bytes(path, 1024, dtype) == CPU_KV_SEQUENCES * 1024 * per_token
    assert cpu_kv_cache_bytes(path, None, dtype) == CPU_KV_SEQUENCES * 4096 * per_token  # the model's context
    fake_memory(monkeypatch, 3 * 1024 * per_token)  # room for 1.5 sequences in half the memory
    assert cpu_kv_cache_bytes(path, 1024, dtype) == 3 * 1024 * per_token // 2


def test_a_context_that_cannot_fit_is_refused_with_a_length_that_fits(monkeypatch):
    path = resolve_model("tiny-random")
    per_token = 2 * 2 * 2 * 32 * 4
    fake_memory(monkeypatch, 2 * 1000 * per_token)  # half of it holds 1000 tokens
    with pytest.raises(HarnessError, match=r"set --max-model-len 768 \(or lower\)"):
        cpu_kv_cache_bytes(path, 4096, "float32")
    assert cpu_kv_cache_bytes(path, 768, "float32") == 1000 * per_token  # the suggestion fits
