"""What the CPU supports, for choosing dtypes by it: bf16 is fast only where the CPU has native bf16
instructions (AVX512-BF16 or AMX); elsewhere (e.g. AMD CPUs without avx512_bf16) it is emulated and many
times slower than fp32."""

from __future__ import annotations

import functools
from pathlib import Path

BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def bf16_flag_in(cpuinfo: str) -> str | None:
    """The native-bf16 flag among the first `flags` line of a /proc/cpuinfo text, or None."""
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return next((f for f in BF16_FLAGS if f in flags), None)


@functools.cache
def native_bf16_flag() -> str | None:
    """This CPU's native-bf16 flag (`amx_bf16`, `avx512_bf16`), or None (also off Linux)."""
    try:
        return bf16_flag_in(Path("/proc/cpuinfo").read_text())
    except OSError:
        return None


def cpu_dtype() -> tuple[str, str]:
    """The dtype for inference on this CPU and why, e.g. ("bfloat16", "native bf16: amx_bf16")."""
    flag = native_bf16_flag()
    if flag:
        return "bfloat16", f"native bf16 ({flag})"
    return "float32", "no native bf16 on this CPU (bf16 would be emulated, many times slower)"
