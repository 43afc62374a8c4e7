"""Verifiers against a hand-labelled set, and the grading pool's timeouts."""

import json
import time
from pathlib import Path

import pytest

from dail_harness import registry
from dail_harness.eval.grading import GradeJob, GradingPool, grade_jobs, grade_one
from dail_harness.verifiers.extract import extract_answer, last_boxed
from dail_harness.verifiers.integer import parse_integer

CASES = [json.loads(line) for line in (Path(__file__).parent / "data" / "grader_cases.jsonl").read_text().splitlines()]


def test_labelled_set_is_large_and_covers_every_type():
    assert len(CASES) >= 60
    types = {c["answer_type"] for c in CASES}
    assert types == {"integer", "math", "choice"}
    assert sum(c["no_answer"] for c in CASES) >= 10
    assert sum(c["correct"] for c in CASES) >= 25 and sum(not c["correct"] for c in CASES) >= 25


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['answer_type']}:{c['completion'][:40]}")
def test_labelled_case(case):
    v = grade_one(GradeJob(case["completion"], case["gold"], case["answer_type"], case.get("finish_reason")))
    assert v.correct == case["correct"]
    assert v.no_answer == case["no_answer"]
    if "extracted" in case:
        assert v.extracted == case["extracted"]
    if v.no_answer:
        assert not v.correct and v.extracted is None


def test_pool_grades_the_labelled_set_identically():
    jobs = [GradeJob(c["completion"], c["gold"], c["answer_type"], c.get("finish_reason")) for c in CASES]
    pooled = grade_jobs(jobs, workers=2)
    inproc = grade_jobs(jobs, workers=0)
    assert [v.to_dict() for v in pooled] == [v.to_dict() for v in inproc]


def test_last_boxed_handles_nesting_and_truncation():
    assert last_boxed(r"\boxed{\frac{1}{2}} and \boxed{\sqrt{\frac{3}{4}}}") == r"\sqrt{\frac{3}{4}}"
    assert last_boxed(r"\boxed{1} then \boxed{2") == "1"  # the truncated last box is skipped
    assert last_boxed("no box") is None
    assert extract_answer("The final answer is 5.\n") == "5"


@pytest.mark.parametrize(
    "text,value",
    [
        ("033", 33),
        ("33,124,147", 33124147),
        ("1{,}000", 1000),
        (r"45^\circ", 45),
        ("204 minutes", 204),
        (r"\$1,000", 1000),
        ("12.00", 12),
        ("-5", -5),
        (r"\text{12}", 12),
        ("1,2", None),
        ("12a3", None),
        (r"\frac{1}{2}", None),
        ("3.5", None),
    ],
)
def test_parse_integer(text, value):
    assert parse_integer(text) == value


SLOW_VERIFIER = '''
import time
from dail_harness import registry
from dail_harness.verifiers.base import Verdict

@registry.register("verifiers", "slow-test")
def slow(completion, gold, finish_reason=None):
    """Sleeps on SLEEP (stands in for a pathological expression)."""
    if "SLEEP" in completion:
        time.sleep(60)
    return Verdict(completion == gold, completion, False)
'''


@pytest.mark.slow
def test_timeout_kills_only_the_hung_sample(tmp_path):
    (tmp_path / "slow_verifier.py").write_text(SLOW_VERIFIER)
    registry.load_plugin_dir(tmp_path)
    jobs = [
        GradeJob("a", "a", "slow-test"),
        GradeJob("SLEEP", "x", "slow-test"),
        GradeJob("b", "b", "slow-test"),
        GradeJob("c", "x", "slow-test"),
        GradeJob("SLEEP", "SLEEP", "slow-test"),
        GradeJob("d", "d", "slow-test"),
    ]
    start = time.monotonic()
    with GradingPool(workers=2, timeout_s=1.5) as pool:
        verdicts = pool.grade(jobs)
        assert pool.timeouts == 2
        # the pool keeps working after replacing the killed workers
        again = pool.grade([GradeJob("e", "e", "slow-test")])
    assert time.monotonic() - start < 30
    assert [v.correct for v in verdicts] == [True, False, True, False, False, True]
    assert [v.timed_out for v in verdicts] == [False, True, False, False, True, False]
    assert again[0].correct


@pytest.mark.parametrize(
    "completion,gold,expected",
    [
        (r"\boxed{33}", "33", True),
        (r"\boxed{033}", "33", False),
        (r"\boxed{\dfrac{1}{2}}", r"\frac{1}{2}", True),
        (r"\boxed{0.5}", r"\frac{1}{2}", False),
        (r"\boxed{45^\circ}", "45", True),
        (r"\boxed{x = 12}", "12", True),
        (r"\boxed{\left( 1, 2 \right)}", "(1,2)", True),
        ("no box, 33", "33", False),
        (r"\boxed{10\%}", "10", True),
    ],
)
def test_simple_string_grader(completion, gold, expected):
    from dail_harness.verifiers.simple import simple_correct

    assert simple_correct(completion, gold) is expected


def test_summary_reports_simple_grader_agreement():
    from dail_harness.eval.metrics import summarize

    rows = [
        {
            "task": "t",
            "problem_id": "a",
            "sample_index": i,
            "correct": c,
            "simple_correct": s,
            "extracted": "1" if c else None,
            "answer_type": "integer",
            "no_answer": not c,
        }
        for i, (c, s) in enumerate([(True, True), (True, False), (False, False), (False, False)])
    ]
    m = summarize(rows, [1], 4)
    assert m["simple_grader"] == {"mean_accuracy": 0.25, "agreement": 0.75}


def test_verifiers_name_the_canonical_answer_that_votes_in_maj_at_k():
    from dail_harness.eval.metrics import summarize
    from dail_harness.verifiers.base import FunctionVerifier, Verdict, get_verifier

    assert get_verifier("integer")("so \\boxed{033}", "33").answer_key == "33"
    assert get_verifier("integer")("\\boxed{1{,}000}", "1000").answer_key == "1000"
    assert get_verifier("choice")("Answer: (c)", "C").answer_key == "C"
    assert get_verifier("math")("\\boxed{\\dfrac{1}{2}}", "1/2").answer_key == "\\frac{1}{2}"
    assert get_verifier("integer")("no answer here", "3").answer_key is None
    plain = FunctionVerifier(lambda c, g, f=None: Verdict(True, " X ", False))  # a plugin's plain function
    assert plain("", "").answer_key == "x"
    # three samples: "033" and "33" are one answer (wrong), "5" once (right): maj@3 is wrong, pass@3 right
    v = get_verifier("integer")
    rows = []
    for i, text in enumerate(["\\boxed{033}", "\\boxed{5}", "\\boxed{33}"]):
        verdict = v(text, "5")
        rows.append(
            {
                "task": "t",
                "problem_id": "p",
                "sample_index": i,
                "correct": verdict.correct,
                "extracted": verdict.extracted,
                "answer_key": verdict.answer_key,
                "no_answer": False,
            }
        )
    s = summarize(rows, [1, 3], 3, ci=False)
    assert s["maj_at_k"]["3"] == 0.0 and s["pass_at_k"]["3"] == 1.0
