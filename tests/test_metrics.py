"""pass@k and friends against exact, independently computed values."""

from fractions import Fraction
from itertools import combinations

import pytest

from dail_harness.errors import HarnessError
from dail_harness.eval.metrics import (
    ProblemStats,
    aggregate,
    bootstrap_ci,
    majority_vote,
    parse_k,
    pass_at_k,
    power_of_two_grid,
)


def brute_force_pass_at_k(correct: list[bool], k: int) -> Fraction:
    """The definition: the fraction of all k-subsets of the n samples that contain a correct one."""
    subsets = list(combinations(range(len(correct)), k))
    return Fraction(sum(any(correct[i] for i in s) for s in subsets), len(subsets))


@pytest.mark.parametrize("n", [1, 2, 5, 8, 10])
def test_pass_at_k_matches_subset_enumeration(n):
    for c in range(n + 1):
        correct = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == brute_force_pass_at_k(correct, k), (n, c, k)


def test_pass_at_k_edge_cases_exact():
    assert pass_at_k(128, 0, 1) == 0 and pass_at_k(128, 0, 128) == 0  # c = 0
    assert pass_at_k(128, 128, 1) == 1 and pass_at_k(16, 16, 16) == 1  # c = n
    assert pass_at_k(10, 8, 3) == 1  # n - c < k
    assert pass_at_k(10, 7, 3) == 1 - Fraction(1, 120)  # n - c == k
    assert pass_at_k(4, 1, 1) == Fraction(1, 4)
    assert pass_at_k(128, 1, 64) == Fraction(1, 2)
    assert pass_at_k(5, 2, 2) == 1 - Fraction(3, 10)


def test_pass_at_k_rejects_bad_arguments():
    for n, c, k in [(4, 5, 1), (4, -1, 1), (4, 1, 0), (4, 1, 5)]:
        with pytest.raises(ValueError):
            pass_at_k(n, c, k)


def test_k_grid_and_parsing():
    assert power_of_two_grid(128) == [1, 2, 4, 8, 16, 32, 64, 128]
    assert power_of_two_grid(1) == [1]
    assert power_of_two_grid(12) == [1, 2, 4, 8, 12]
    assert parse_k("128") == ([1, 2, 4, 8, 16, 32, 64, 128], 128)
    assert parse_k("1,8,64") == ([1, 8, 64], 64)
    assert parse_k("8,1,8") == ([1, 8], 8)
    for bad in ["", "0", "a,b", "-1"]:
        with pytest.raises(HarnessError):
            parse_k(bad)


def test_majority_vote():
    assert majority_vote(["1", "2", "2"], [True, False, False]) is False
    assert majority_vote(["1", "2", "2", "1"], [True, False, False, True]) is True  # tie: first seen
    assert majority_vote([None, None, "3"], [False, False, True]) is True  # no-answers do not vote
    assert majority_vote([None, None], [False, False]) is False


def test_aggregate_exact_means_and_rates():
    probs = [
        ProblemStats("t", "a", [True, False, False, False], ["1", "2", "2", None], [False, False, False, True]),
        ProblemStats("t", "b", [True, True, True, True], ["5"] * 4, [False] * 4),
        ProblemStats("t", "c", [False] * 4, [None] * 4, [True] * 4),
    ]
    m = aggregate(probs, [1, 2, 4])
    exact = {k: (pass_at_k(4, 1, k) + 1 + 0) / 3 for k in (1, 2, 4)}
    for k in (1, 2, 4):
        assert m["pass_at_k_exact"][str(k)] == str(exact[k])
        assert m["pass_at_k"][str(k)] == pytest.approx(float(exact[k]), abs=0)
    assert m["pass_at_k"]["1"] == pytest.approx(5 / 12)
    assert m["mean_accuracy"] == pytest.approx((1 / 4 + 1 + 0) / 3)
    assert m["no_answer_rate"] == pytest.approx(5 / 12)
    # maj@4: a votes "2" (wrong), b votes "5" (right), c has no answer
    assert m["maj_at_k"]["4"] == pytest.approx(1 / 3)
    assert m["maj_at_k"]["1"] == pytest.approx(2 / 3)
    lo, hi = m["pass_at_k_ci95"]["1"]
    assert 0 <= lo <= m["pass_at_k"]["1"] <= hi <= 1
    assert [p["problem_id"] for p in m["per_problem"]] == ["a", "b", "c"]


def test_aggregate_rejects_k_above_n_and_empty():
    probs = [ProblemStats("t", "a", [True, False], [None, None], [True, True])]
    with pytest.raises(HarnessError, match="larger than n=2"):
        aggregate(probs, [1, 4])
    with pytest.raises(HarnessError, match="empty"):
        aggregate([], [1])


def test_bootstrap_is_deterministic_and_degenerate_for_constant_data():
    assert bootstrap_ci([0.5] * 10) == (0.5, 0.5)
    x = [0, 1] * 20
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3)
    lo, hi = bootstrap_ci(x)
    assert 0.3 < lo < 0.5 < hi < 0.7
