import os
import sys
import tempfile

import pytest

# Offline, isolated: tiny-random is built into a fresh cache for the session; no hub access.
os.environ.setdefault("DAIL_HARNESS_CACHE", tempfile.mkdtemp(prefix="dail-harness-test-cache-"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.pop("DAIL_GPQA_PATH", None)


def _own_cores_for_vllm() -> None:
    """Under pytest-xdist, each worker's vLLM engines bind their threads to that worker's share of the cores
    (vLLM's CPU back-end binds to every core of the node by default, so two workers' engines would share them
    and stall), and the engines of subprocesses a test starts inherit the share."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not worker or not count or "VLLM_CPU_OMP_THREADS_BIND" in os.environ:
        return
    cores = sorted(os.sched_getaffinity(0))
    index, count_ = int(worker.removeprefix("gw")), int(count)
    share = cores[index * len(cores) // count_ : (index + 1) * len(cores) // count_]
    if share:
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(map(str, share))


_own_cores_for_vllm()


LONGEST_FILES_FIRST = (
    "test_paper_smoke.py",
    "test_vllm_mixed.py",
    "test_vllm_backend.py",
    "test_kill_resume.py",
    "test_baselines.py",
    "test_fsdp.py",
    "test_lm_eval_bridge.py",
    "test_scale.py",
    "test_hf_backend.py",
    "test_mixed_rollouts.py",
    "test_training.py",
    "test_tiny_random_qwen.py",
)
"""The test files that take longest (pytest --durations, 2026-12-03), longest first within each part of
`make test` (the vLLM files run in a part of their own); the rest follow in their usual order. `make test` hands
whole files to whichever pytest-xdist worker is free, in this order (--dist loadfile --no-loadscope-reorder), so
no long file starts last and leaves the other worker idle. The paper smoke test also runs first in its process:
its 90 in-process commands ran 2.7x slower (176 s against 66 s) after the hundreds of tests before it in one
process."""


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def run_cli(args, capsys):
    """Run `dail-harness ARGS` in this process; returns (exit_code, stdout, stderr)."""
    from dail_harness.cli import main

    old = sys.argv
    sys.argv = ["dail-harness", *map(str, args)]
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = old
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def cli(capsys):
    return lambda *args: run_cli(args, capsys)
