"""Data-parallel eval and generate under torchrun against one process, same total threads, side by side.

    python benchmarks/data_parallel.py            # tiny-random, 2 processes x 1 thread against 1 x 2
    python benchmarks/data_parallel.py --model /path/to/model --procs 2 --threads 2

One process with P x T threads, then `torchrun --nproc-per-node P` with T threads each, on the same job (hf
back-end: keyed samples). Reported per job: whether the merged samples equal the one-process run's, wall
time of each (the whole command: start-up, sampling, grading, merging), the throughput ratio, and the merge's own
time (the merge step run again on the finished shards, in this process).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

EXPERT = [
    {"problem_id": f"p{i}", "problem": f"What is {i} + {i}?", "solution": f"{i} + {i} = {2 * i}.", "answer": str(2 * i)}
    for i in range(8)
]


def timed(cmd: list[str], threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        sys.exit(proc.stderr[-3000:])
    return time.perf_counter() - t


def side_by_side(args, argv: list[str], one_out: Path, dp_out: Path) -> tuple[float, float]:
    """Wall times of one process with procs x threads, then of torchrun with procs processes x threads."""
    one = timed([sys.executable, "-m", "dail_harness", *argv, "--out", str(one_out)], args.procs * args.threads)
    return one, timed([*launcher(args.procs), "dail_harness", *argv, "--out", str(dp_out)], args.threads)


def result(job: str, args, times: tuple[float, float], merge: float | None, same: bool) -> dict:
    return {
        "job": job,
        "samples": args.problems * args.n,
        "one_s": times[0],
        "dp_s": times[1],
        "merge_s": merge,
        "same": same,
    }


def launcher(procs: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}", "-m"]


def rows_of(path: Path) -> list[tuple]:
    """Every sample once, in key order (one process stores them as batches finish, a merge in problem order)."""
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    return sorted(
        (r.get("task"), r["problem_id"], r["sample_index"], r.get("completion", r.get("trace"))) for r in rows
    )


def eval_job(args, work: Path) -> dict:
    argv = ["eval", "--task", "aime24", "--model", args.model, "--limit", str(args.problems)]
    argv += ["--samples-per-problem", str(args.n)]
    argv += ["--max-tokens", str(args.max_tokens), "--grade-workers", "0", "--no-progress", "--device", "cpu"]
    times = side_by_side(args, argv, work / "one", work / "dp")
    from dail_harness.eval.launched import merge_shards
    from dail_harness.eval.pipeline import EvalConfig, load_tasks, run_settings
    from dail_harness.eval.store import RunStore
    from dail_harness.models.loading import model_fingerprint

    cfg = EvalConfig(task=["aime24"], model=args.model, out=str(work / "dp"), limit=args.problems, n=args.n)
    cfg.max_tokens = args.max_tokens
    cfg.check()
    tasks = load_tasks(cfg)
    settings = run_settings(cfg, tasks, model_fingerprint(args.model))
    t = time.perf_counter()
    merge_shards(cfg, args.procs, tasks, RunStore(cfg.out).job(settings))
    merge = time.perf_counter() - t
    same = rows_of(work / "one" / "samples.jsonl") == rows_of(work / "dp" / "samples.jsonl")
    return result("eval", args, times, merge, same)


def generate_job(args, work: Path) -> dict:
    data = work / "expert.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in EXPERT[: args.problems]))
    argv = ["generate", "--model", args.model, "--data", str(data), "--samples-per-problem", str(args.n)]
    argv += ["--backend", "hf"]
    argv += ["--max-tokens", str(args.max_tokens), "--grade-workers", "0", "--no-progress", "--device", "cpu"]
    times = side_by_side(args, argv, work / "one.jsonl", work / "dp.jsonl")
    same = rows_of(work / "one.jsonl.traces.jsonl") == rows_of(work / "dp.jsonl.traces.jsonl")
    return result("generate", args, times, None, same)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny-random")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="threads per process (one process gets procs x this)")
    ap.add_argument("--problems", type=int, default=8)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=64)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        for job in (eval_job, generate_job):
            work = Path(d) / job.__name__
            work.mkdir()
            r = job(args, work)
            merge = f", merge {r['merge_s']:.3f} s" if r["merge_s"] is not None else ""
            one = f"1 process x {args.procs * args.threads} threads {r['one_s']:.1f} s"
            many = f"{args.procs} processes x {args.threads} {r['dp_s']:.1f} s"
            ratio = f"{r['one_s'] / r['dp_s']:.2f}x{merge}"
            print(f"{r['job']}: {r['samples']} samples; {one}, {many}: {ratio}; samples identical: {r['same']}")


if __name__ == "__main__":
    main()
