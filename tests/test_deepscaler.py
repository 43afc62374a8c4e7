"""`data deepscaler`: DeepScaleR as published becomes GRPO's problem rows: answers unwrapped for our verifiers,
empty and repeated problems dropped and counted, one error for a file without the columns, nothing half-written."""

import json

import pytest

from dail_harness.dsyn.expert_data import answer_type_of, normalize_answer

# DeepScaleR-shaped rows (problem, answer, solution): good ones, an empty answer, a duplicate (whitespace aside),
# a boxed answer, a `$...$` answer, an empty problem
SOURCE = [
    {"problem": "What is 2 + 3?", "answer": "5", "solution": "2 + 3 = 5."},
    {"problem": "Find x if 2x = 1.", "answer": "\\frac{1}{2}", "solution": "x = 1/2."},
    {"problem": "How many primes are below 10?", "answer": "", "solution": "2, 3, 5, 7."},
    {"problem": "What is  2 + 3?\n", "answer": "5", "solution": "Again."},
    {"problem": "Compute 6 * 7.", "answer": "\\boxed{42}", "solution": "42."},
    {"problem": "Simplify sqrt(8).", "answer": "$2\\sqrt{2}$", "solution": ""},
    {"problem": "   ", "answer": "1", "solution": "."},
]
EXPECTED = [
    {"problem_id": "deepscaler-1", "problem": "What is 2 + 3?", "answer": "5", "answer_type": "integer"},
    {"problem_id": "deepscaler-2", "problem": "Find x if 2x = 1.", "answer": "\\frac{1}{2}", "answer_type": "math"},
    {"problem_id": "deepscaler-5", "problem": "Compute 6 * 7.", "answer": "42", "answer_type": "integer"},
    {"problem_id": "deepscaler-6", "problem": "Simplify sqrt(8).", "answer": "2\\sqrt{2}", "answer_type": "math"},
]
SOLUTIONS = {"deepscaler-1": "2 + 3 = 5.", "deepscaler-2": "x = 1/2.", "deepscaler-5": "42."}
COUNTS = (
    "read 7 rows; kept 4 (2 integer, 2 math answers); dropped 3: 1 empty problem, 1 empty answer, 1 duplicate problem"
)


def write_source(path, rows=SOURCE):
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows))
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("name", ["deepscaler.jsonl", "deepscaler.parquet", "deepscaler.json"])
def test_deepscaler_rows_and_counts(cli, tmp_path, name):
    source = write_source(tmp_path / name)
    code, out, err = cli("data", "deepscaler", "--from", source, "--out", tmp_path / "ds.jsonl")
    assert code == 0, err
    assert COUNTS in out and f"wrote 4 rows to {tmp_path / 'ds.jsonl'}" in out
    rows = [json.loads(line) for line in (tmp_path / "ds.jsonl").read_text().splitlines()]
    assert [{k: v for k, v in r.items() if k != "solution"} for r in rows] == EXPECTED
    assert {r["problem_id"]: r["solution"] for r in rows if "solution" in r} == SOLUTIONS


def test_deepscaler_rows_are_what_grpo_reads(cli, tmp_path):
    """The rows load as GRPO's --data, and each is graded by its own answer type (42 as an integer, 2 sqrt 2
    symbolically)."""
    from dail_harness.training.recipes import make_method

    cli("data", "deepscaler", "--from", write_source(tmp_path / "d.jsonl"), "--out", tmp_path / "ds.jsonl")
    method = make_method("grpo")
    rows = method.load_rows(tmp_path / "ds.jsonl")
    assert [(r["answer"], method.answer_type(r)) for r in rows] == [
        ("5", "integer"),
        ("\\frac{1}{2}", "math"),
        ("42", "integer"),
        ("2\\sqrt{2}", "math"),
    ]


def test_deepscaler_bad_input_is_one_error_and_writes_nothing(cli, tmp_path):
    out = tmp_path / "ds.jsonl"
    rows = [SOURCE[0], {"question": "What is 1 + 1?", "answer": "2"}]
    code, _, err = cli("data", "deepscaler", "--from", write_source(tmp_path / "d.jsonl", rows), "--out", out)
    assert code == 2 and err.strip() == f"error: {tmp_path / 'd.jsonl'}:2, field 'problem': missing field"
    assert not out.exists()
    rows = [SOURCE[0], {"problem": "What is 1 + 1?", "answer": ["2"]}]
    code, _, err = cli("data", "deepscaler", "--from", write_source(tmp_path / "d.jsonl", rows), "--out", out)
    assert code == 2 and "d.jsonl:2, field 'answer': must be a string or a number, found a list" in err
    code, _, err = cli("data", "deepscaler", "--from", write_source(tmp_path / "d.jsonl", SOURCE[2:3]), "--out", out)
    assert code == 2 and "no usable rows (1 read, every one dropped)" in err and not out.exists()


@pytest.mark.parametrize(
    ("raw", "answer", "kind"),
    [
        ("$5$", "5", "integer"),
        ("  \\boxed{ 12 } ", "12", "integer"),
        ("$\\boxed{\\frac{1}{2}}$", "\\frac{1}{2}", "math"),
        ("\\(x^2 + 1\\)", "x^2 + 1", "math"),
        ("$$-3$$", "-3", "integer"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}", "math"),
        ("$a$ or $b$", "$a$ or $b$", "math"),  # two formulas, not one wrapped answer
        ("\\boxed{1} + \\boxed{2}", "\\boxed{1} + \\boxed{2}", "math"),
        ("1,000", "1,000", "integer"),  # the integer verifier reads separators
        ("1,2", "1,2", "math"),
    ],
)
def test_answers_are_unwrapped_for_our_verifiers(raw, answer, kind):
    assert normalize_answer(raw) == answer and answer_type_of(answer) == kind
