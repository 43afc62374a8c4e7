"""What the CPU gives us, for choosing dtypes and threads by it.

bf16 is fast only where the CPU has native bf16 instructions (AVX512-BF16 or AMX); elsewhere (e.g. AMD CPUs
without avx512_bf16) it is emulated and many times slower than fp32. Threads: torch starts one per core of the
machine, but a process may be given fewer (CPU affinity, a cgroup quota), and on a shared machine threads that
outnumber the free cores wait on each other at every parallel region (a 3-step GRPO run: 91 s with the
default, 12 s with 1 thread): commands that compute pick their count here.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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


THREADS_HELP = (
    "CPU threads for torch (default: the cores this process may use, by its CPU affinity and cgroup quota, less "
    "the grading workers; OMP_NUM_THREADS or MKL_NUM_THREADS, if set, is left alone). On a machine shared with "
    "other jobs, fewer threads than cores is often much faster: 1 is the safe choice."
)
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _cgroup_dirs(root: Path, cgroup_text: str) -> list[Path]:
    """The cgroup directories that may hold this process's CPU quota: its own (from /proc/self/cgroup) for v2
    and v1's cpu controller, then the mount roots (what a container sees of its own group)."""
    dirs = []
    for line in cgroup_text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        if controllers == "":
            dirs.append(root / rel.lstrip("/"))
        elif "cpu" in controllers.split(","):
            dirs.append(root / controllers / rel.lstrip("/"))
    dirs += [root, root / "cpu", root / "cpu,cpuacct"]
    return list(dict.fromkeys(dirs))


def _quota_in(directory: Path) -> float | None:
    """CPUs allowed by the quota files of one cgroup directory (v2 `cpu.max`, v1 `cpu.cfs_quota_us`), or None."""
    try:
        if (directory / "cpu.max").exists():
            quota, period = (directory / "cpu.max").read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        if (directory / "cpu.cfs_quota_us").exists():
            quota_us = int((directory / "cpu.cfs_quota_us").read_text())
            period_us = int((directory / "cpu.cfs_period_us").read_text())
            return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None
    return None


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup"), cgroup_text: str | None = None) -> float | None:
    """The CPUs a cgroup CPU quota allows this process (the smallest found), or None when there is none."""
    if cgroup_text is None:
        try:
            cgroup_text = Path("/proc/self/cgroup").read_text()
        except OSError:
            cgroup_text = ""
    limits = [q for q in map(_quota_in, _cgroup_dirs(root, cgroup_text)) if q is not None]
    return min(limits) if limits else None


def available_cores(affinity: int, quota: float | None) -> int:
    """Cores to plan for: the affinity's count, capped by the quota rounded down (a throttled thread stalls all
    the others at every parallel region), at least 1."""
    cores = affinity if quota is None else min(affinity, int(quota))
    return max(1, cores)


def process_cores() -> int:
    """The cores this process may use (`os.cpu_count()` counts the machine's, not the ones we are given)."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        affinity = os.cpu_count() or 1
    return available_cores(affinity, cgroup_cpu_limit())


def choose_threads(cores: int, workers: int, requested: int | None, env: Mapping[str, str]) -> tuple[int | None, str]:
    """torch's intra-op threads and why; None leaves torch's own choice (the user set it through the environment).
    `--threads` wins; otherwise the cores left once `workers` (grading processes) have one each."""
    if requested is not None:
        return requested, "--threads"
    given = next((name for name in THREAD_ENV if env.get(name, "").strip()), None)
    if given is not None:
        return None, f"{given}={env[given]}"
    return max(1, cores - workers), f"{cores} cores available, {workers} for grading"


def threads_option(panel: str | None = None) -> Any:
    """The `--threads` field of a command that computes (the CLI applies it before the command runs)."""
    from dail_harness.options import option

    return option(None, ge=1, help=THREADS_HELP, panel=panel)


def launched_share(cores: int, machine_cores: int, processes_here: int) -> int:
    """The cores of one of `processes_here` launched processes on a node: a launcher that bound each process to
    its own cores (srun's default) already gave it its share; one that did not (torchrun without
    OMP_NUM_THREADS) leaves every process the whole machine, which is split evenly."""
    if processes_here > 1 and cores >= machine_cores:
        return max(1, cores // processes_here)
    return cores


def use_threads(requested: int | None, workers: int) -> int | None:
    """Set torch's (and the tokenizers') threads for a command that computes; returns the count set, if any."""
    from dail_harness.scale.launch import current

    cores = launched_share(process_cores(), os.cpu_count() or 1, current().local_world)
    n, _ = choose_threads(cores, workers, requested, os.environ)
    if n is None:
        return None
    import torch

    torch.set_num_threads(n)
    os.environ.setdefault("RAYON_NUM_THREADS", str(n))  # the tokenizers' pool, built on first use
    return n
