"""Grading throughput: samples graded per second by the process pool, on a realistic mix.

    python benchmarks/grading_throughput.py --samples 2000 --workers 1,2

The mix imitates evaluation output: long reasoning texts (2-6k characters) over AIME, MATH-500,
IMO-AnswerBench and multiple-choice golds, ending in a correct box, a wrong box, an equivalent form, an
answer statement, a thinking block, or a truncation with no answer.
"""

from __future__ import annotations

import argparse
import json
import random
import time

from dail_harness.eval.grading import GradeJob, grade_jobs
from dail_harness.eval.task import make_task

FILLER = (
    "Let us consider the substitution $x = 2k + 1$, so that $x^2 = 4k^2 + 4k + 1$. Summing over "
    "$k$ from $1$ to $n$ gives $\\sum_{k=1}^{n} (4k^2+4k+1)$, which simplifies nicely. "
)


def realistic_jobs(count: int, seed: int = 0) -> list[GradeJob]:
    rng = random.Random(seed)
    pools = [(p.answer, "integer") for p in make_task("aime24").load() + make_task("beyondaime").load()]
    pools += [(p.answer, "math") for p in make_task("math500").load()]
    pools += [(p.answer, "math") for p in make_task("imo-answerbench").load()]
    pools += [(L, "choice") for L in "ABCD" * 25]
    jobs = []
    for _ in range(count):
        gold, at = rng.choice(pools)
        body = FILLER * rng.randint(10, 30)
        kind = rng.random()
        if kind < 0.35:
            text, fr = f"{body}\nTherefore the answer is $\\boxed{{{gold}}}$.", "stop"
        elif kind < 0.55:
            wrong = "B" if at == "choice" else (str(int(gold) + 1) if gold.isdigit() else f"{gold} + 1")
            text, fr = f"{body}\nSo we get $\\boxed{{{wrong}}}$.", "stop"
        elif kind < 0.65:
            text, fr = f"<think>{body}</think>\nThe final answer is {gold}.", "stop"
        elif kind < 0.75:
            eq = f"\\frac{{2 \\cdot {gold}}}{{2}}" if gold.isdigit() else gold.replace("\\frac", "\\dfrac")
            text, fr = f"{body}\nHence $\\boxed{{{eq}}}$.", "stop"
        else:
            text, fr = body[: rng.randint(1000, len(body))], "length"
        jobs.append(GradeJob(text, gold, at, fr))
    return jobs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--workers", default="0,1,2", help="pool sizes to time (0 = in-process, no timeouts)")
    ap.add_argument("--json", help="also write results here")
    args = ap.parse_args()
    jobs = realistic_jobs(args.samples)
    results = []
    for w in [int(x) for x in args.workers.split(",")]:
        t = time.perf_counter()
        verdicts = grade_jobs(jobs, workers=w)
        dt = time.perf_counter() - t
        row = {
            "workers": w,
            "samples": len(jobs),
            "seconds": dt,
            "samples_per_s": len(jobs) / dt,
            "correct": sum(v.correct for v in verdicts),
            "no_answer": sum(v.no_answer for v in verdicts),
            "timeouts": sum(v.timed_out for v in verdicts),
        }
        results.append(row)
        print(
            f"workers {w}: {len(jobs)} samples in {dt:.2f}s = {len(jobs) / dt:.0f} samples/s "
            f"(correct {row['correct']}, no answer {row['no_answer']}, timeouts {row['timeouts']})"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
