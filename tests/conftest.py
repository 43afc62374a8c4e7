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


def pytest_collection_modifyitems(session, config, items):
    """The paper smoke test first: its 90 in-process commands ran 2.7x slower (176 s against 66 s) after the
    hundreds of tests before it in one process."""
    items.sort(key=lambda item: 0 if item.nodeid.startswith("tests/test_paper_smoke.py::test_every") else 1)


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
