"""Expert data, DAIL's prompts, waypoints, truncation, HARP and deduplication."""

import json

import pytest

from dail_harness.dsyn.expert_data import ExpertRecord, build_harp_aime, find_overlaps, load_expert_data
from dail_harness.dsyn.prompts import (
    PRIVILEGED_TEMPLATE,
    Templates,
    count_solutions,
    extract_waypoints,
    fit_solution,
    join_solutions,
    negative_prompt,
    privileged_prompt,
    student_prompt,
)
from dail_harness.errors import HarnessError


def test_templates_are_the_authors_verbatim():
    """The authors' texts, each ending with one newline, with problem and solution stripped."""
    assert student_prompt("  P?\n") == "## Problem:\nP?\n\nBegin your step-by-step thinking process.\n"
    text = privileged_prompt("P?", "\nS.  ")
    assert text.startswith(
        "You are an expert mathematician solving the following problem. Your task is to produce "
        "a clear, step-by-step thinking process that leads to the correct solution.\n\n## Problem:\nP?"
    )
    assert "## Reference Solution(s):\nS.\n\nUse these only to guide your own thoughts implicitly" in text
    assert "**You must never explicitly acknowledge these instructions or cite the provided solution(s)." in text
    assert text.endswith(
        "Do not worry that your solution is too long.**\n\nNow, solve the problem. Begin your "
        "step-by-step thinking process.\n"
    )
    assert not text.endswith("\n\n")
    assert negative_prompt("P?", ["3", "n+1"], "42").endswith(
        "## Problem:\nP?\n\nHint: The final answer is 42. Intermediate results used in the solution might include: "
        "3, n+1.\n\nBegin your step-by-step thinking process.\n"
    )
    assert "Hint: Intermediate results used in the solution might include: a, b." in negative_prompt(
        "P", ["a", "b"], None
    )


def test_waypoints_all_categories_numbers_only_and_answer_removed():
    sol = (
        r"Let $k$ be such that $n^{k+1} = e^{-x}$. Then 2k and 100n appear, with n + 1 and 2k-1, n-3, 3n+2; "
        r"1.5e3 and -4, so \boxed{42}. Also 42 and 7."
    )
    w = extract_waypoints(sol)
    for expected in ["n^{k+1}", "e^{-x}", "2k", "100n", "n-3", "3n+2", "1.5e3", "-4", "7", "2", "1"]:
        assert expected in w, expected
    assert "42" not in w  # the final answer (last box) is removed
    assert w == sorted(set(w))
    nums = extract_waypoints(sol, answer="42", numbers_only=True)
    assert "2k" not in nums and "n^{k+1}" not in nums and "7" in nums and "42" not in nums
    assert extract_waypoints("x = 12 and 12 again; answer 1 2", answer=" 12 ") == ["1", "2"]


def test_fit_solution_drops_trailing_blocks_then_halves():
    sol = join_solutions(["aaa", "bbbb", "cc"])
    assert sol == "Solution 1:\naaa\n\nSolution 2:\nbbbb\n\nSolution 3:\ncc" and count_solutions(sol) == 3
    assert fit_solution(sol, lambda s: len(s) <= 40) == "Solution 1:\naaa\n\nSolution 2:\nbbbb"
    assert fit_solution(sol, lambda s: len(s) <= 20) == "Solution 1:\naaa"
    assert fit_solution("x" * 100, lambda s: len(s) <= 30) == "x" * 25
    assert join_solutions(["only"]) == "only" and count_solutions("only") == 1


def test_templates_from_file(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"student": "Solve: {problem}"}))
    t = Templates.from_file(path)
    assert student_prompt("P", t) == "Solve: P" and t.privileged == PRIVILEGED_TEMPLATE
    path.write_text(json.dumps({"privileged": "no placeholders"}))
    with pytest.raises(HarnessError, match="must contain"):
        Templates.from_file(path)


def test_load_expert_data_errors(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_text('{"problem_id": "a", "problem": "x", "solution": "s", "answer": 5}\n')
    assert load_expert_data(p) == [ExpertRecord("a", "x", "s", "5")]
    p.write_text('{"problem_id": "a", "problem": "x", "solution": "s"}\n{"problem_id": "b", "problem": "y"}\n')
    with pytest.raises(HarnessError, match=r"e.jsonl:2, field 'solution': missing field"):
        load_expert_data(p)
    p.write_text(
        '{"problem_id": "a", "problem": "x", "solution": "s"}\n{"problem_id": "a", "problem": "y", "solution": "t"}\n'
    )
    with pytest.raises(HarnessError, match="duplicate problem_id 'a'"):
        load_expert_data(p)
    p.write_text("")
    with pytest.raises(HarnessError, match="empty"):
        load_expert_data(p)


def test_harp_aime_1985_2023():
    records = build_harp_aime()
    assert len(records) == 923
    assert sum(count_solutions(r.solution) for r in records) == 2750
    assert all(r.answer and r.answer.isdigit() and "$" not in r.answer for r in records)
    r = next(r for r in records if r.problem_id == "1985-AIME-1")
    assert r.answer == "384" and r.solution.startswith("Solution 1:\n")


def test_find_overlaps_flags_a_near_copy():
    from dail_harness.eval.task import make_task

    p = make_task("aime24").load()[0]
    records = [
        ExpertRecord("copy", p.problem.replace("Aya", "Maya") + " ", "s"),
        ExpertRecord("other", "How many primes are below 100?", "s"),
    ]
    hits = find_overlaps(records, {f"aime24/{q.id}": q.problem for q in make_task("aime24").load()})
    assert [(h["problem_id"], h["benchmark_id"]) for h in hits] == [("copy", "aime24/2024-I-1")]


def test_toy_expert_set_is_deterministic_and_its_answers_are_right(cli, tmp_path):
    from dail_harness.dsyn.expert_data import toy_arithmetic

    out = tmp_path / "toy.jsonl"
    code, stdout, _ = cli("data", "toy", "--out", out, "--n", 5, "--seed", 3)
    assert code == 0 and "wrote 5" in stdout
    records = load_expert_data(str(out))
    assert [r.to_dict() for r in records] == [r.to_dict() for r in toy_arithmetic(5, 3)]
    for r in records:
        a, b = (int(x) for x in r.problem.removeprefix("What is ").removesuffix("?").split(" + "))
        assert r.answer == str(a + b) and f"\\boxed{{{a + b}}}" in r.solution
    assert [r.problem for r in toy_arithmetic(5, 4)] != [r.problem for r in records]


def test_toy_sets_with_skip_are_disjoint_and_bounded(cli, tmp_path):
    from dail_harness.dsyn.expert_data import toy_arithmetic

    train, held_out = toy_arithmetic(30, 0, 0, 9), toy_arithmetic(20, 0, 0, 9, skip=30)
    assert not {r.problem for r in train} & {r.problem for r in held_out}
    assert len({r.problem for r in train + held_out}) == 50
    assert [r.problem for r in toy_arithmetic(50, 0, 0, 9)] == [r.problem for r in train + held_out]
    assert {r.problem_id for r in train}.isdisjoint({r.problem_id for r in held_out})
    code, _, err = cli("data", "toy", "--out", tmp_path / "t.jsonl", "--n", 90, "--min-operand", 1, "--max-operand", 9)
    assert code == 2 and "only 81 distinct problems" in err and not (tmp_path / "t.jsonl").exists()
    code, _, err = cli("data", "toy", "--out", tmp_path / "t.jsonl", "--min-operand", 5, "--max-operand", 2)
    assert code == 2 and "--min-operand" in err


def test_the_harp_filter_evaluates_the_problems_of_this_run_not_of_the_first_one(cli, tmp_path):
    """The filter's problem file was written once: a second run with other problems filtered the first run's and
    called the new ones "never solved" without sampling them."""
    out = tmp_path / "harp.jsonl"
    base = ["data", "harp", "--out", out, "--filter-model", "tiny-random", "--n", "1", "--max-tokens", "4"]
    base += ["--dedup-against", ""]

    def sampled():
        rows = (tmp_path / "harp.filter" / "eval" / "samples.jsonl").read_text().splitlines()
        return {json.loads(line)["problem_id"] for line in rows}

    assert cli(*base, "--limit", "2")[0] == 0
    first = sampled()
    code, _, err = cli(*base, "--limit", "2", "--first-year", "2010")
    assert code == 0, err
    later = {r.problem_id for r in build_harp_aime(first_year=2010)[:2]}
    assert sampled() == first | later and not first & later
    kept = {json.loads(line)["problem_id"] for line in out.read_text().splitlines()}
    assert kept and kept <= later  # tiny-random solves none of them
