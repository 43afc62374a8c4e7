"""Grading in worker processes with a hard per-sample timeout.

math-verify's own timeouts use `signal.alarm`, which only works in a process's main thread, and a
pathological expression can still hang sympy or exhaust memory. So each sample is graded in a worker
process's main thread; the parent kills a worker that exceeds the deadline, records the sample as a
timeout (incorrect, reported), and starts a fresh worker. One bad sample never hangs or kills a run.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any

from dail_harness import registry
from dail_harness.verifiers.base import Verdict, get_verifier

DEFAULT_TIMEOUT_S = 10.0
READY = "ready"
STARTUP_TIMEOUT_S = 120.0
MAX_RESTARTS_PER_JOB = 0.5  # more worker deaths than this per graded job means something is broken


def default_workers() -> int:
    """Grading processes when none are asked for: one per core this process may use, at most 4."""
    from dail_harness.models.cpu import process_cores

    return min(4, process_cores())


@dataclass
class GradeJob:
    completion: str
    gold: str
    answer_type: str
    finish_reason: str | None = None


def grade_one(job: GradeJob) -> Verdict:
    """Grade one job in this process (no hard timeout; exceptions become an error verdict).

    `answer_type` names a registered verifier: integer, math, choice, or a plugin's.
    """
    verifier = get_verifier(job.answer_type)
    try:
        return verifier(job.completion, job.gold, job.finish_reason)
    except Exception as e:  # a verifier bug on one sample must not lose the run
        return Verdict(False, None, False, error=f"{e.__class__.__name__}: {e}")


def _worker_main(conn, plugin_dirs: list[str]) -> None:
    # A terminal's ctrl-C reaches the whole process group; the parent owns shutdown (it sends None or
    # kills us), so a worker neither dies mid-job nor prints a KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    registry.load_builtins(registry.KIND_PACKAGES["verifiers"])  # not tasks/back-ends: no torch here
    registry.load_plugin_dirs(plugin_dirs)  # user verifiers loaded with --plugin-dir must exist in the workers too
    try:
        conn.send(READY)
        while True:
            msg = conn.recv()
            if msg is None:
                return
            idx, job = msg
            conn.send((idx, grade_one(job)))
    except (EOFError, OSError):  # the parent is gone (interrupted or killed): nothing left to grade or say
        return


class _Worker:
    def __init__(self, ctx, plugin_dirs: list[str]):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, plugin_dirs), daemon=True)
        self.proc.start()
        child.close()
        self.job_index: int | None = None
        self.started = 0.0

    def wait_ready(self) -> bool:
        """Block until the worker has finished importing (start-up is not billed to a sample)."""
        try:
            return self.conn.poll(STARTUP_TIMEOUT_S) and self.conn.recv() == READY
        except (EOFError, OSError):
            return False

    def submit(self, idx: int, job: GradeJob) -> bool:
        """Send a job; False if the worker is already dead."""
        self.job_index, self.started = idx, time.monotonic()
        try:
            self.conn.send((idx, job))
            return True
        except (BrokenPipeError, OSError):
            return False

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()


class GradingPool:
    """A pool of grading processes; use as a context manager and call `grade(jobs)`."""

    def __init__(self, workers: int | None = None, timeout_s: float = DEFAULT_TIMEOUT_S):
        """`workers` 0 grades in this process, without hard timeouts (tests, debugging)."""
        self.num_workers = max(0, workers if workers is not None else default_workers())
        self.timeout_s = timeout_s
        self.timeouts = 0
        self._ctx = mp.get_context("forkserver")
        self._ctx.set_forkserver_preload(["dail_harness.eval.grading", "math_verify"])
        self._workers: list[_Worker] = []
        self._restarts = 0
        self._plugin_dirs = registry.loaded_plugin_dirs()
        self._jobs_seen = 0

    def __enter__(self) -> GradingPool:
        self._workers = [_Worker(self._ctx, self._plugin_dirs) for _ in range(self.num_workers)]
        for w in list(self._workers):
            if not w.wait_ready():
                self._replace(w)
        return self

    def __exit__(self, *exc) -> None:
        for w in self._workers:
            with contextlib.suppress(BrokenPipeError, OSError):
                w.conn.send(None)
        for w in self._workers:
            w.proc.join(timeout=2)
            if w.proc.is_alive():
                w.proc.kill()
        self._workers = []

    def grade(self, jobs: Iterable[GradeJob], on_done: Callable[[int], None] | None = None) -> list[Verdict]:
        """Grade jobs (order preserved); `on_done(n)` is called as verdicts arrive (progress bars)."""
        jobs = list(jobs)
        if self.num_workers == 0:
            return grade_in_process(jobs, on_done)
        self._jobs_seen += len(jobs)
        results: list[Verdict | None] = [None] * len(jobs)
        pending = deque(range(len(jobs)))
        idle = list(self._workers)
        busy: dict[Any, _Worker] = {}
        while pending or busy:
            while pending and idle:
                w = idle.pop()
                i = pending.popleft()
                if w.submit(i, jobs[i]):
                    busy[w.conn] = w
                else:  # died before taking work (e.g. failed to start): replace, retry the job
                    pending.appendleft(i)
                    idle.append(self._replace(w))
            now = time.monotonic()
            deadline = min(w.started + self.timeout_s for w in busy.values())
            ready: list[Any] = wait(list(busy), timeout=max(0.0, deadline - now))
            for conn in ready:
                w = busy.pop(conn)
                idx: int = w.job_index if w.job_index is not None else -1
                try:
                    idx, verdict = conn.recv()
                except (EOFError, OSError):  # the worker died (e.g. out of memory): replace it
                    verdict = Verdict(False, None, False, error="grading worker died")
                    w = self._replace(w)
                results[idx] = verdict
                idle.append(w)
                if on_done:
                    on_done(1)
            now = time.monotonic()
            for conn, w in list(busy.items()):
                if now - w.started > self.timeout_s and w.job_index is not None:
                    busy.pop(conn)
                    results[w.job_index] = Verdict(
                        False, None, False, timed_out=True, error=f"grading timed out after {self.timeout_s:g}s"
                    )
                    self.timeouts += 1
                    idle.append(self._replace(w))
                    if on_done:
                        on_done(1)
        return results  # type: ignore[return-value]

    def _replace(self, worker: _Worker) -> _Worker:
        worker.kill()
        self._workers.remove(worker)
        self._restarts += 1
        if self._restarts > MAX_RESTARTS_PER_JOB * max(1, self._jobs_seen):
            raise RuntimeError(
                "grading workers keep dying; if you call dail_harness from a script, "
                "guard it with `if __name__ == '__main__':` (workers use forkserver)"
            )
        new = _Worker(self._ctx, self._plugin_dirs)
        self._workers.append(new)
        if not new.wait_ready():
            return self._replace(new)
        return new


def grade_in_process(jobs: list[GradeJob], on_done: Callable[[int], None] | None = None) -> list[Verdict]:
    out = []
    for j in jobs:
        out.append(grade_one(j))
        if on_done:
            on_done(1)
    return out


def grade_jobs(
    jobs: list[GradeJob],
    workers: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    on_done: Callable[[int], None] | None = None,
) -> list[Verdict]:
    """Grade `jobs` with a temporary pool (workers=0 grades in this process, without hard timeouts)."""
    with GradingPool(workers, timeout_s) as pool:
        return pool.grade(jobs, on_done)
