"""End to end on tiny-random: eval, resume (including after kill -9), report, grade."""

import json

import pytest

from dail_harness.eval.store import RunStore

EVAL = [
    "eval",
    "--task",
    "aime24",
    "--model",
    "tiny-random",
    "--n",
    "4",
    "--k",
    "1,2,4",
    "--max-tokens",
    "16",
    "--limit",
    "3",
    "--temperature",
    "1.0",
    "--no-progress",
    "--batch-size",
    "4",
    "--grade-workers",
    "1",
]


def samples_by_id(run_dir):
    return {(r["task"], r["problem_id"], r["sample_index"]): r for r in RunStore(run_dir).load_samples()}


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    from conftest import run_cli

    out = tmp_path_factory.mktemp("runs") / "ref"

    class Cap:  # minimal capsys stand-in for a module-scoped fixture
        def readouterr(self):
            return type("C", (), {"out": "", "err": ""})()

    code, _, _ = run_cli([*EVAL, "--out", out], Cap())
    assert code == 0
    return out


def test_eval_writes_samples_and_summary(reference_run):
    rows = RunStore(reference_run).load_samples()
    assert len(rows) == 12
    for r in rows:
        for f in (
            "problem_id",
            "sample_index",
            "completion",
            "extracted",
            "correct",
            "no_answer",
            "num_tokens",
            "finish_reason",
            "temperature",
            "top_p",
            "seed",
            "max_tokens",
        ):
            assert f in r
        assert 1 <= r["num_tokens"] <= 16 and r["finish_reason"] in ("stop", "length")
        assert r["no_answer"] == (r["extracted"] is None)
    summary = json.loads((reference_run / "summary.json").read_text())
    assert summary["task"] == "aime24" and summary["model"] == "tiny-random"
    assert summary["n"] == 4 and summary["num_problems"] == 3
    assert set(summary["pass_at_k"]) == {"1", "2", "4"}
    assert all(0 <= v <= 1 for v in summary["pass_at_k"].values())
    assert summary["no_answer_rate"] == pytest.approx(sum(r["no_answer"] for r in rows) / 12)
    assert summary["settings"]["sampling"]["temperature"] == 1.0


def test_rerun_resumes_without_duplicates(reference_run, cli):
    before = (reference_run / "samples.jsonl").read_bytes()
    code, out, _ = cli(*EVAL, "--out", reference_run)
    assert code == 0
    assert (reference_run / "samples.jsonl").read_bytes() == before


def test_interrupted_run_resumes_to_identical_samples(reference_run, tmp_path, cli):
    """Keep a prefix of the samples plus half a line (a kill mid-append), then rerun."""
    out = tmp_path / "resumed"
    out.mkdir()
    for name in ("run.json",):
        (out / name).write_bytes((reference_run / name).read_bytes())
    lines = (reference_run / "samples.jsonl").read_bytes().splitlines(keepends=True)
    (out / "samples.jsonl").write_bytes(b"".join(lines[:5]) + lines[5][:40])
    code, _, err = cli(*EVAL, "--out", out)
    assert code == 0, err
    ref, res = samples_by_id(reference_run), samples_by_id(out)
    assert set(ref) == set(res)
    assert len(RunStore(out).load_samples()) == 12
    for key in ref:
        assert res[key]["completion"] == ref[key]["completion"]
        assert res[key]["correct"] == ref[key]["correct"]
    assert (
        json.loads((out / "summary.json").read_text())["pass_at_k"]
        == json.loads((reference_run / "summary.json").read_text())["pass_at_k"]
    )


def test_different_settings_are_refused(reference_run, cli):
    args = [a if a != "16" else "17" for a in EVAL]
    code, _, err = cli(*args, "--out", reference_run)
    assert code == 2
    assert "sampling.max_tokens: 16 -> 17" in err and err.count("\n") == 1


def test_greedy_is_deterministic_and_stop_strings_cut(tmp_path, cli):
    common = [
        "eval",
        "--task",
        "aime24",
        "--model",
        "tiny-random",
        "--n",
        "1",
        "--max-tokens",
        "12",
        "--limit",
        "2",
        "--temperature",
        "0",
        "--no-progress",
        "--grade-workers",
        "0",
    ]
    assert cli(*common, "--out", tmp_path / "g1")[0] == 0
    assert cli(*common, "--batch-size", "1", "--out", tmp_path / "g2")[0] == 0
    a, b = samples_by_id(tmp_path / "g1"), samples_by_id(tmp_path / "g2")
    assert {k: v["completion"] for k, v in a.items()} == {k: v["completion"] for k, v in b.items()}
    # a stop string taken from the middle of the greedy completion cuts it right there
    row = a[("aime24", "2024-I-1", 0)]
    text = row["completion"]
    # (ASCII letters: a stop string inside a partly decoded multi-byte character is ambiguous)
    i = next(i for i in range(1, len(text) - 1) if text[i : i + 2].isascii() and text[i : i + 2].isalpha())
    stop = text[i : i + 2]
    assert row["finish_reason"] == "length" and i < len(text) // 2
    assert cli(*common, "--stop", stop, "--out", tmp_path / "g3")[0] == 0
    cut = samples_by_id(tmp_path / "g3")[("aime24", "2024-I-1", 0)]
    assert cut["completion"] == text[: text.find(stop)]
    assert cut["finish_reason"] == "stop" and cut["num_tokens"] < 12


def test_report_table_json_and_plot(reference_run, tmp_path, cli):
    plot = tmp_path / "p.png"
    code, out, _ = cli("report", reference_run, reference_run, "--plot", plot)
    assert code == 0 and "pass@4" in out and "aime24" in out
    assert plot.exists() and plot.read_bytes()[:4] == b"\x89PNG"
    code, out, _ = cli("report", reference_run, "--json", "--no-plot")
    data = json.loads(out)
    summary = json.loads((reference_run / "summary.json").read_text())
    assert data[0]["pass_at_k"] == summary["pass_at_k"]


def test_multi_task_run_has_combined_row(tmp_path, cli):
    code, out, err = cli(
        "eval",
        "--task",
        "aime24,aime25",
        "--model",
        "tiny-random",
        "--n",
        "2",
        "--max-tokens",
        "4",
        "--limit",
        "2",
        "--no-progress",
        "--grade-workers",
        "0",
        "--out",
        tmp_path / "m",
    )
    assert code == 0, err
    s = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert s["task"] == "aime24+aime25" and s["num_problems"] == 4 and set(s["per_task"]) == {"aime24", "aime25"}
    code, out, _ = cli("report", tmp_path / "m", "--no-plot")
    assert "combined (aime24+aime25)" in out


def test_grade_command(tmp_path, cli):
    inp = tmp_path / "preds.jsonl"
    rows = [
        {"completion": "\\boxed{033}", "gold": "33", "answer_type": "integer", "id": 1},
        {"completion": "Answer: B", "gold": "C", "answer_type": "choice"},
        {"completion": "so it is 12", "gold": "12", "answer_type": "math"},
    ]
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, _ = cli("grade", inp, "--output", tmp_path / "graded.jsonl", "--no-progress")
    assert code == 0 and "1 correct" in out
    graded = [json.loads(line) for line in (tmp_path / "graded.jsonl").read_text().splitlines()]
    assert [(g["correct"], g["extracted"], g["no_answer"]) for g in graded] == [
        (True, "033", False),
        (False, "B", False),
        (False, None, True),
    ]
    assert graded[0]["id"] == 1


def test_report_of_some_tasks_and_without_excluded_problems_equals_exact_pass_at_k(tmp_path, cli):
    from fractions import Fraction
    from math import comb

    run = tmp_path / "m"
    args = ("--model", "tiny-random", "--n", "4", "--max-tokens", "4", "--limit", "3", "--no-progress")
    code, _, err = cli("eval", "--task", "aime24,aime25", *args, "--grade-workers", "0", "--out", run)
    assert code == 0, err
    # a known pattern of correct samples, so the metrics are not all zero
    path = run / "samples.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for i, r in enumerate(rows):
        r["correct"] = (i * 7 + len(r["problem_id"])) % 3 == 0
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    excluded = {"aime25/2025-I-2"}
    (tmp_path / "ex.txt").write_text("".join(f"{i}\n" for i in excluded))

    def exact(keep):
        by_problem = {}
        for r in rows:
            if keep(r):
                by_problem.setdefault((r["task"], r["problem_id"]), []).append(r["correct"])
        return {
            str(k): float(sum(1 - Fraction(comb(4 - sum(c), k), comb(4, k)) for c in by_problem.values()))
            / len(by_problem)
            for k in (1, 2, 4)
        }

    code, out, err = cli("report", run, "--task", "aime25", "--json", "--no-plot")
    assert code == 0, err
    got = json.loads(out)[0]
    assert got["task"] == "aime25" and got["num_problems"] == 3
    assert got["pass_at_k"] == pytest.approx(exact(lambda r: r["task"] == "aime25"), abs=1e-12)
    code, out, err = cli("report", run, "--exclude", tmp_path / "ex.txt", "--json", "--no-plot")
    assert code == 0, err
    got = json.loads(out)[0]
    assert got["num_problems"] == 5
    assert got["pass_at_k"] == pytest.approx(
        exact(lambda r: f"{r['task']}/{r['problem_id']}" not in excluded), abs=1e-12
    )
    assert got["pass_at_k"] != exact(lambda r: True)  # the exclusion changes the numbers
    assert got["excluded_problems"] == 1
    code, out, err = cli("report", run, "--exclude", tmp_path / "ex.txt", "--no-plot")  # the table says so too
    assert code == 0 and f"note: {run.name}: --exclude left out 1 of its problems" in out, out
    code, _, err = cli("report", run, "--task", "beyondaime", "--no-plot")
    assert code == 2 and "not a task of this run (its tasks: aime24, aime25)" in err
