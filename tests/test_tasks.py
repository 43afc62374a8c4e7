"""Every built-in task loads with its exact count and valid gold answers; user data loads."""

import csv
import json

import pytest

from dail_harness.errors import HarnessError
from dail_harness.eval.task import make_task
from dail_harness.verifiers.integer import parse_integer

COUNTS = {"aime24": 30, "aime25": 30, "beyondaime": 100, "imo-answerbench": 400, "math500": 500, "gsm8k": 200}


@pytest.mark.parametrize("name,count", COUNTS.items())
def test_builtin_task_counts_and_fields(name, count):
    task = make_task(name)
    problems = task.load()
    assert len(problems) == count
    assert len({p.id for p in problems}) == count
    for p in problems:
        assert p.problem.strip() and p.answer.strip()
        assert p.answer_type == task.answer_type
        assert "{problem}" not in task.render_prompt(p) and p.problem in task.render_prompt(p)


@pytest.mark.parametrize("name", ["aime24", "aime25"])
def test_aime_answers_are_integers_0_to_999(name):
    for p in make_task(name).load():
        assert 0 <= parse_integer(p.answer) <= 999


def test_beyondaime_answers_are_integers_with_large_values():
    values = [parse_integer(p.answer) for p in make_task("beyondaime").load()]
    assert all(v is not None for v in values)
    assert max(values) == 33124147 and sum(v > 999 for v in values) == 44


def test_imo_answerbench_integer_share_and_gsm8k_golds():
    imo = make_task("imo-answerbench").load()
    assert sum(parse_integer(p.answer) is not None and p.answer.strip().lstrip("-").isdigit() for p in imo) == 228
    assert all(parse_integer(p.answer) is not None for p in make_task("gsm8k").load())


def test_default_prompt_asks_for_boxed_answer():
    task = make_task("aime24")
    assert "\\boxed{}" in task.render_prompt(task.load()[0])


def write_gpqa(path, rows=198):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(
            f,
            [
                "Record ID",
                "Question",
                "Correct Answer",
                "Incorrect Answer 1",
                "Incorrect Answer 2",
                "Incorrect Answer 3",
                "High-level domain",
            ],
        )
        w.writeheader()
        for i in range(rows):
            w.writerow(
                {
                    "Record ID": f"rec{i:03d}",
                    "Question": f"Made-up question {i}?",
                    "Correct Answer": f"right {i}",
                    "Incorrect Answer 1": f"wrong a{i}",
                    "Incorrect Answer 2": f"wrong b{i}",
                    "Incorrect Answer 3": f"wrong c{i}",
                    "High-level domain": "Physics",
                }
            )


def test_gpqa_loads_user_csv_shuffles_deterministically_and_tracks_gold(tmp_path):
    path = tmp_path / "gpqa_diamond.csv"
    write_gpqa(path)
    problems = make_task("gpqa-diamond", data=str(path)).load()
    assert len(problems) == 198
    letters = []
    for p in problems:
        i = int(p.id[3:])
        idx = "ABCD".index(p.answer)
        assert p.metadata["options"][idx] == f"right {i}"
        assert f"{p.answer}) right {i}" in p.problem
        letters.append(p.answer)
    assert set(letters) == set("ABCD")  # the gold is not always in the same position
    again = make_task("gpqa-diamond", data=str(path)).load()
    assert [p.answer for p in again] == letters
    other_seed = make_task("gpqa-diamond", data=str(path), shuffle_seed=1).load()
    assert [p.answer for p in other_seed] != letters


def test_gpqa_without_data_explains_how_to_get_it(monkeypatch):
    monkeypatch.delenv("DAIL_GPQA_PATH", raising=False)
    with pytest.raises(HarnessError, match="DAIL_GPQA_PATH"):
        make_task("gpqa-diamond").load()


def test_gpqa_from_env_var_and_wrong_count(tmp_path, monkeypatch):
    path = tmp_path / "g.csv"
    write_gpqa(path, rows=5)
    monkeypatch.setenv("DAIL_GPQA_PATH", str(path))
    with pytest.raises(HarnessError, match="expected 198 problems, loaded 5"):
        make_task("gpqa-diamond").load()


def test_file_task_jsonl_csv_parquet_with_field_map(tmp_path):
    rows = [{"idx": f"q{i}", "question": f"What is {i}+{i}?", "final": str(2 * i)} for i in range(3)]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with open(tmp_path / "d.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["idx", "question", "final"])
        w.writeheader()
        w.writerows(rows)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    for name in ("d.jsonl", "d.csv", "d.parquet"):
        task = make_task(
            "file", data=str(tmp_path / name), fields="id=idx,problem=question,answer=final", answer_type="integer"
        )
        problems = task.load()
        assert [p.id for p in problems] == ["q0", "q1", "q2"]
        assert [p.answer for p in problems] == ["0", "2", "4"] and problems[1].answer_type == "integer"
    # a bare path is the file task
    assert len(make_task(str(jsonl), fields="problem=question,answer=final").load()) == 3


def test_file_task_errors_name_file_line_and_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"problem": "a", "answer": "1"}\n{"problem": "b"}\n')
    with pytest.raises(HarnessError, match=r"bad.jsonl:2, field 'answer': missing field"):
        make_task("file", data=str(path)).load()
    path.write_text('{"problem": "a", "answer": "1"}\n{"problem": "b", "answer": \n')
    with pytest.raises(HarnessError, match=r"bad.jsonl:2: malformed JSON"):
        make_task("file", data=str(path)).load()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(HarnessError, match="empty data set"):
        make_task("file", data=str(empty)).load()
    with pytest.raises(HarnessError, match="unknown role"):
        make_task("file", data=str(path), fields="question=problem").load()


def test_exclude_leaves_out_problems_by_id_and_dedup_writes_them(cli, tmp_path):
    import json

    from dail_harness.eval.task import make_task

    aime = make_task("aime24").load()
    expert = tmp_path / "e.jsonl"
    expert.write_text(
        json.dumps({"problem_id": "x", "problem": aime[1].problem, "solution": "s", "answer": "1"})
        + "\n"
        + json.dumps({"problem_id": "y", "problem": "Unrelated text about apples.", "solution": "t"})
        + "\n"
    )
    code, out, err = cli("data", "dedup", "--data", expert, "--against", "aime24", "--ids-out", tmp_path / "ids.txt")
    assert code == 0, err
    assert (tmp_path / "ids.txt").read_text() == f"aime24/{aime[1].id}\n"
    code, _, err = cli(
        "eval",
        "--task",
        "aime24",
        "--model",
        "tiny-random",
        "--limit",
        "3",
        "--n",
        "1",
        "--max-tokens",
        "2",
        "--exclude",
        tmp_path / "ids.txt",
        "--no-progress",
        "--grade-workers",
        "0",
        "--out",
        tmp_path / "run",
    )
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["num_problems"] == 2 and aime[1].id not in {p["problem_id"] for p in summary["per_problem"]}
    assert summary["settings"]["excluded"] == [f"aime24/{aime[1].id}"]
