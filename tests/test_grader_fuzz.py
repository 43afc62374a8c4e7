"""The grading pool on 1,500 random LaTeX-like strings, with workers that crash or hang mixed in: every row
comes back, no row waits past its timeout, a dead worker is replaced, and the verdicts equal in-process
grading."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

PIECES = [
    "\\frac{",
    "}{",
    "}",
    "{",
    "\\sqrt{",
    "\\sqrt[3]{",
    "^",
    "_",
    "\\boxed{",
    "\\fbox{",
    "\\left(",
    "\\right)",
    "\\pi",
    "\\infty",
    "\\cdot",
    "\\times",
    "\\le",
    "=",
    "+",
    "-",
    "/",
    ",",
    ".",
    " ",
    "x",
    "y",
    "n",
    "\\{",
    "\\}",
    "\\text{ cm}",
    "\\%",
    "^\\circ",
    "$",
    "\\dfrac",
    "\\mathbf{",
    "[",
    "]",
    "(",
    ")",
    "e",
    "i",
    "\\ln",
    "\\sin",
    "9^{9^{9",
    "10^{100}",
    "!",
    "\\\\",
    "\n",
    "\\begin{pmatrix}",
    "&",
    "\\end{pmatrix}",
    "</think>",
    "Answer: ",
    "The final answer is ",
    "A",
    "B",
    "(C)",
    "0",
    "1",
    "2",
    "3",
    "7",
    "12",
    "2024",
    "0.5",
    "-1",
    "\\emptyset",
]
TYPES = ["integer", "math", "choice"]


def latex_like(rng: random.Random) -> str:
    n = rng.choice([1, 3, 8, 20, 60, 200])
    return "".join(rng.choice(PIECES) for _ in range(n))


def fuzz_jobs(n: int, seed: int = 0):
    from dail_harness.eval.grading import GradeJob

    rng = random.Random(seed)
    jobs = []
    for i in range(n):
        kind = "crashes" if i % 101 == 50 else "hangs" if i % 149 == 74 else rng.choice(TYPES)
        gold = rng.choice(["3", "12", "\\frac{1}{2}", "A", "x+1", "2024", latex_like(rng)])
        jobs.append(GradeJob(latex_like(rng), gold, kind, rng.choice([None, "stop", "length"])))
    return jobs


@pytest.mark.slow
@pytest.mark.serial
def test_six_hundred_random_strings_all_come_back_within_their_timeouts():
    from dail_harness import registry
    from dail_harness.eval.grading import GradingPool, grade_in_process

    registry.load_plugin_dir(str(Path(__file__).parent / "faulty_plugins"))
    jobs = fuzz_jobs(600)
    faulty = [i for i, j in enumerate(jobs) if j.answer_type in ("crashes", "hangs")]
    assert [jobs[i].answer_type for i in faulty].count("hangs") == 4 and len(faulty) == 10
    timeout = 5.0  # a hang is caught at any timeout; a healthy row must fit it on a slow, busy 2-core machine
    t0 = time.monotonic()
    with GradingPool(workers=2, timeout_s=timeout) as pool:
        verdicts = pool.grade(jobs)
    elapsed = time.monotonic() - t0
    assert len(verdicts) == len(jobs) and all(v is not None for v in verdicts)
    for i in faulty:
        v = verdicts[i]
        if jobs[i].answer_type == "hangs":
            assert v.timed_out and not v.correct, v
        else:
            assert v.error == "grading worker died" and not v.correct, v
    # no other row timed out or died: the faulty ones did not take a healthy worker down with them
    healthy = [v for i, v in enumerate(verdicts) if i not in set(faulty)]
    assert not [v for v in healthy if v.timed_out or v.error == "grading worker died"]
    # the hangs cost at most their timeouts (shared by 2 workers), plus restarts; the rest is ordinary grading
    hangs = sum(j.answer_type == "hangs" for j in jobs)
    assert elapsed < 120 + hangs * (timeout + 2), elapsed
    # the same verdicts as grading in this process (sampled rows; the pool must not change any answer)
    sample = [i for i in range(0, len(jobs), 20) if i not in set(faulty)]
    reference = grade_in_process([jobs[i] for i in sample])
    assert [(verdicts[i].correct, verdicts[i].extracted) for i in sample] == [
        (v.correct, v.extracted) for v in reference
    ]
