"""torch's default threads against the harness's choice (`dail_harness/models/cpu.py`) on a short GRPO run.

Each run is `dail-harness train --method grpo` on tiny-random (2 steps of 4 prompts x 4 samples) in a
fresh process, timed end to end: "default" passes `--threads N` with N = torch's own default (what every
command used before the choice existed), "chosen" passes nothing. "loaded" runs with a CPU-burning process
pinned to core 0, as another user's job on a shared machine. Prints one markdown row per run and the ratios.

    PYTHONPATH=. python benchmarks/threads.py
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dail_harness.eval.grading import default_workers
from dail_harness.models.cpu import choose_threads, process_cores

GRPO = ["train", "--method", "grpo", "--model", "tiny-random", "--max-steps", "2", "--prompts-per-step", "4"]
GRPO += ["--group-size", "4", "--max-tokens", "12", "--no-progress", "--device", "cpu"]


def burn() -> None:
    """Spin on core 0 until killed (another job on the machine)."""
    os.sched_setaffinity(0, {0})
    while True:
        pass


def torch_default_threads(env: dict) -> int:
    code = "import torch; print(torch.get_num_threads())"
    return int(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout)


def timed_run(argv: list[str], env: dict) -> float:
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "dail_harness", *argv], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="Also write the timings here.")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    default = torch_default_threads(env)
    chosen, why = choose_threads(process_cores(), default_workers(), None, env)
    work = Path(tempfile.mkdtemp(prefix="threads-bench-"))
    data = work / "problems.jsonl"
    rows = [{"problem_id": f"p{i}", "problem": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(8)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    timings: dict[str, float] = {}
    print("| machine | threads | wall time | 1-min load average after |\n|---|---|---|---|")
    for load in ("idle", "loaded"):
        burner = mp.Process(target=burn, daemon=True) if load == "loaded" else None
        if burner is not None:
            burner.start()
        try:
            for name, flags in (("default", ["--threads", str(default)]), ("chosen", [])):
                threads = flags[1] if flags else f"{chosen}: {why}"
                out = work / f"{load}-{name}"
                seconds = timed_run([*GRPO, "--data", str(data), "--out", str(out), *flags], env)
                timings[f"{load}/{name}"] = seconds
                print(f"| {load} | {name} ({threads}) | {seconds:.1f} s | {os.getloadavg()[0]:.2f} |", flush=True)
        finally:
            if burner is not None:
                burner.kill()
    for load in ("idle", "loaded"):
        print(f"{load}: chosen / default time = {timings[f'{load}/chosen'] / timings[f'{load}/default']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(timings, indent=2))


if __name__ == "__main__":
    main()
