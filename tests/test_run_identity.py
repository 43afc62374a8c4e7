"""Results a researcher can trust: which directories `report` merges, what identifies a run (problem
selection, the model's weights), runs that grow, provenance, and the report's own labels and columns."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dail_harness.eval.store import RunStore

EVAL = ["eval", "--task", "aime24", "--model", "tiny-random", "--max-tokens", "8", "--temperature", "1.0"]
EVAL += ["--no-progress", "--grade-workers", "0", "--batch-size", "4"]


def evaluate(cli, out: Path, *args) -> str:
    code, stdout, err = cli(*EVAL, "--out", out, *args)
    assert code == 0, err
    return stdout


def set_correct(run: Path, value: bool) -> None:
    path = run / "samples.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps({**r, "correct": value}) + "\n" for r in rows))


def report_json(cli, *args) -> list[dict]:
    code, out, err = cli("report", *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_report_never_merges_runs_that_are_not_shards(tmp_path, cli):
    """Two copies of the same settings (one all correct, one all wrong) are two rows, not '50%'."""
    a, b = tmp_path / "modelA", tmp_path / "modelB"
    evaluate(cli, a, "--limit", "2", "--n", "2")
    shutil.copytree(a, b)
    set_correct(a, True)
    set_correct(b, False)
    reps = report_json(cli, a, b)
    assert [(r["run"], r["pass_at_k"]["1"]) for r in reps] == [("modelA", 1.0), ("modelB", 0.0)]
    code, table, err = cli("report", a, b, "--no-plot")
    assert code == 0 and "shard" not in table + err


def test_problem_selection_is_recorded_and_limits_are_separate_runs(tmp_path, cli):
    evaluate(cli, tmp_path / "l1", "--limit", "1", "--n", "2")
    evaluate(cli, tmp_path / "l2", "--limit", "2", "--n", "2")
    settings = RunStore(tmp_path / "l1").read_settings()
    assert settings["limit"] == 1 and settings["shard"] is None and settings["excluded"] == []
    reps = report_json(cli, tmp_path / "l1", tmp_path / "l2")
    assert [r["num_problems"] for r in reps] == [1, 2]


def test_shards_merge_only_when_declared_and_a_missing_shard_is_named(tmp_path, cli):
    for i in (0, 2):
        evaluate(cli, tmp_path / f"s{i}", "--limit", "3", "--n", "1", "--shard", f"{i}/3")
    (rep,) = report_json(cli, tmp_path / "s0", tmp_path / "s2")
    assert rep["shards"] == [[0, 3], [2, 3]] and rep["missing_shards"] == [1] and rep["num_problems"] == 2
    code, table, _ = cli("report", tmp_path / "s0", tmp_path / "s2", "--no-plot")
    assert code == 0 and "shard(s) 1/3 missing" in table
    # two directories claiming one shard
    shutil.copytree(tmp_path / "s0", tmp_path / "s0-copy")
    code, _, err = cli("report", tmp_path / "s0", tmp_path / "s0-copy", "--no-plot")
    assert code == 2 and "both hold shard 0/3" in err
    # the missing shard evaluated with other settings: refused, naming the setting
    evaluate(cli, tmp_path / "s1", "--limit", "3", "--n", "1", "--shard", "1/3", "--max-tokens", "6")
    code, _, err = cli("report", tmp_path / "s0", tmp_path / "s1", tmp_path / "s2", "--no-plot")
    assert code == 2 and "sampling.max_tokens: 8 -> 6" in err and err.count("\n") == 1


def test_a_changed_model_is_a_different_run(tmp_path, cli):
    from dail_harness.models.tiny_random import ensure_tiny_random

    model = tmp_path / "model"
    shutil.copytree(ensure_tiny_random(), model)
    out = tmp_path / "run"
    evaluate(cli, out, "--limit", "1", "--n", "1", "--model", model)
    before = RunStore(out).read_settings()["model_fingerprint"]
    assert before.startswith("sha256:")
    weights = next(model.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one changed byte of the weights (a retrained model at the same path)
    weights.write_bytes(bytes(data))
    code, _, err = cli(*EVAL, "--out", out, "--limit", "1", "--n", "1", "--model", model)
    assert code == 2 and "model_fingerprint" in err and "different settings" in err


def test_more_samples_and_problems_extend_a_run_exactly(tmp_path, cli):
    grown, fresh = tmp_path / "grown", tmp_path / "fresh"
    evaluate(cli, grown, "--limit", "1", "--n", "2")
    first = {(r["problem_id"], r["sample_index"]): r["completion"] for r in RunStore(grown).load_samples()}
    evaluate(cli, grown, "--limit", "2", "--n", "4")
    evaluate(cli, fresh, "--limit", "2", "--n", "4")

    def completions(run):
        return {(r["problem_id"], r["sample_index"]): r["completion"] for r in RunStore(run).load_samples()}

    assert len(completions(grown)) == 8 and completions(grown) == completions(fresh)
    assert all(completions(grown)[key] == text for key, text in first.items())
    summary = json.loads((grown / "summary.json").read_text())
    assert summary["n"] == 4 and summary["num_problems"] == 2
    assert RunStore(grown).read_settings()["sampling"]["n"] == 4
    # fewer samples: a report of the first two, nothing regenerated or lost
    evaluate(cli, grown, "--limit", "2", "--n", "2")
    assert len(completions(grown)) == 8 and json.loads((grown / "summary.json").read_text())["n"] == 2
    # a change that would invalidate the samples is still refused, naming it
    code, _, err = cli(*EVAL, "--out", grown, "--limit", "2", "--n", "2", "--top-p", "0.5")
    assert code == 2 and "sampling.top_p: 0.95 -> 0.5" in err


def test_provenance_in_run_and_summary(tmp_path, cli):
    import dail_harness

    out = tmp_path / "run"
    evaluate(cli, out, "--limit", "1", "--n", "1")
    evaluate(cli, out, "--limit", "1", "--n", "2")  # a second invocation: its own provenance, the first in history
    run = json.loads((out / "run.json").read_text())["provenance"]
    summary = json.loads((out / "summary.json").read_text())["provenance"]
    for p in (run, summary):
        assert p["harness_version"] == dail_harness.__version__
        assert p["versions"]["torch"] and p["versions"]["transformers"] and "vllm" in p["versions"]
        assert p["device"] and p["started_at"] <= p["finished_at"] and p["wall_seconds"] >= 0
        assert p["git_commit"] is None or len(p["git_commit"].split("+")[0]) == 40
    assert len(run["history"]) == 1 and run["history"][0]["started_at"] <= run["started_at"]
    assert RunStore(out).read_settings().get("provenance") is None  # never part of the resume check


def test_version_flag(cli):
    import dail_harness

    code, out, _ = cli("--version")
    assert code == 0 and out.startswith(f"dail-harness {dail_harness.__version__}")


def test_short_labels_name_each_run():
    from dail_harness.eval.report import short_labels

    paths = [Path("/x/a/run"), Path("/x/b/run"), Path("/x/c")]
    assert short_labels(paths) == ["a/run", "b/run", "c"]
    assert short_labels([Path("/x/a/run")]) == ["run"]


def test_report_columns_follow_the_run(tmp_path, cli, monkeypatch):
    a, b = tmp_path / "a" / "run", tmp_path / "b" / "run"
    evaluate(cli, a, "--limit", "1", "--n", "4", "--k", "1,4")
    evaluate(cli, b, "--limit", "1", "--n", "4", "--k", "1,4", "--task", "aime24,aime25")
    monkeypatch.chdir(tmp_path)
    code, table, _ = cli("report", a, b, "--no-plot")
    header = table.splitlines()[0].split()
    assert code == 0 and "pass@2" not in header and "pass@4" in header and "think" not in header  # --k 1,4
    assert "a/run" in table and "b/run" in table
    per_task = next(line for line in table.splitlines() if line.startswith("b/run") and "aime25 " in line)
    assert per_task.split()[-2] != "-"  # the string-equality accuracy per task, not only combined
    reps = report_json(cli, a)
    assert not list(tmp_path.glob("*.png"))  # --json writes no plot unless asked
    assert reps[0]["ks"] == [1, 4]
    code, _, err = cli("report", a, "--k", "8", "--no-plot")
    assert code == 2 and "--k 8 is larger than this run's n=4" in err


def test_greedy_with_several_samples_warns(tmp_path, cli):
    code, _, err = cli(*EVAL, "--out", tmp_path / "g", "--limit", "1", "--n", "2", "--temperature", "0")
    assert code == 0 and "temperature 0 is greedy" in err


@pytest.mark.parametrize(
    ("reports", "title"),
    [
        ([{"task": "aime24+aime25", "primary_condition": {"budget": None}}], "pass@k on aime24+aime25"),
        (
            [{"task": "aime24", "primary_condition": {"budget": 1024}}, {"task": "aime24", "primary_condition": {}}],
            "pass@k on aime24 at thinking budget 1024",
        ),
    ],
)
def test_pass_at_k_plot_title(reports, title):
    from dail_harness.eval.plots import pass_at_k_title

    assert pass_at_k_title(reports) == title


def test_a_run_written_before_the_new_settings_resumes_and_grows(tmp_path, cli):
    """run.json of 0.1.0 had no top_k, limit, ks or model_fingerprint: the same run resumes and extends."""
    out = tmp_path / "old"
    evaluate(cli, out, "--limit", "1", "--n", "2")
    record = json.loads((out / "run.json").read_text())
    for key in ("limit", "ks", "model_fingerprint", "provenance"):
        record.pop(key)
    record["sampling"].pop("top_k")
    (out / "run.json").write_text(json.dumps(record))
    before = (out / "samples.jsonl").read_text()
    evaluate(cli, out, "--limit", "1", "--n", "4")
    assert (out / "samples.jsonl").read_text().startswith(before) and len(RunStore(out).load_samples()) == 4
    code, _, err = cli(*EVAL, "--out", out, "--limit", "1", "--n", "4", "--top-k", "5")
    assert code == 2 and "sampling.top_k: 0 -> 5" in err


def test_fewer_problems_or_other_exclusions_are_refused(tmp_path, cli):
    """A smaller --limit would leave stored problems in the report, another --exclude moves problems between
    shards: both are refused, a larger --limit extends."""
    out = tmp_path / "run"
    evaluate(cli, out, "--limit", "2", "--n", "1")
    code, _, err = cli(*EVAL, "--out", out, "--limit", "1", "--n", "1")
    assert code == 2 and "limit: 2 -> 1" in err
    ids = tmp_path / "ids.txt"
    ids.write_text("2024-I-1\n")
    code, _, err = cli(*EVAL, "--out", out, "--limit", "2", "--n", "1", "--exclude", ids)
    assert code == 2 and "excluded" in err
    evaluate(cli, out, "--limit", "3", "--n", "1")


def test_another_dtype_is_another_run(tmp_path, cli):
    """run.json did not hold --dtype: float32 samples were extended with bfloat16 ones."""
    out = tmp_path / "run"
    evaluate(cli, out, "--limit", "1", "--n", "1", "--dtype", "float32")
    assert json.loads((out / "run.json").read_text())["dtype"] == "float32"
    code, _, err = cli(*EVAL, "--out", out, "--limit", "1", "--n", "2", "--dtype", "bfloat16")
    assert code == 2 and "dtype: 'float32' -> 'bfloat16'" in err


def test_a_budget_run_recorded_with_max_tokens_resumes(tmp_path, cli):
    """--max-tokens is refused with --budgets (each budget is its condition's limit); a run recorded before then,
    with the flag, still extends."""
    out = tmp_path / "run"
    budgets = ["--thinking", "on", "--budgets", "2", "--answer-tokens", "2", "--limit", "1"]
    argv = ["eval", "--task", "aime24", "--model", "tiny-random", "--no-progress", "--grade-workers", "0", *budgets]
    assert cli(*argv, "--n", "1", "--out", out)[0] == 0
    record = json.loads((out / "run.json").read_text())
    record["sampling"]["max_tokens"] = 5
    (out / "run.json").write_text(json.dumps(record))
    code, _, err = cli(*argv, "--n", "2", "--out", out)
    assert code == 0, err
    code, _, err = cli(*argv, "--n", "2", "--temperature", "0.3", "--out", out)
    assert code == 2 and "sampling.temperature" in err and "max_tokens" not in err, err


def test_one_run_given_twice_is_reported_once(tmp_path, cli, monkeypatch):
    evaluate(cli, tmp_path / "r", "--limit", "2", "--n", "1")
    monkeypatch.chdir(tmp_path)
    reps = report_json(cli, "r", tmp_path / "r", "./r")
    assert len(reps) == 1 and reps[0]["num_problems"] == 2


def test_a_hub_id_has_no_fingerprint_so_a_rerun_after_the_download_resumes():
    from dail_harness.models.loading import model_fingerprint

    assert model_fingerprint("Qwen/Qwen2.5-7B-Instruct") is None


def test_settings_added_later_compare_as_their_old_value():
    from dail_harness.worklog import settings_changes

    old = {"lr": 1e-4, "method_options": {"iterations": 1}}
    new = {**old, "top_k": 0, "drop_last": False, "lr_schedule": "linear", "model_fingerprint": "sha256:x"}
    new["method_options"] = {"iterations": 1, "steps_growth": None, "train_from": "base"}
    assert settings_changes(old, new) is None
    assert settings_changes(old, {**new, "lr_schedule": "constant"}) == "lr_schedule: None -> 'constant'"
    assert settings_changes({**old, "limit": 2}, {**old, "limit": 3}, {"limit": lambda a, b: b >= a}) is None
    assert settings_changes({**old, "limit": 3}, {**old, "limit": 2}, {"limit": lambda a, b: b >= a})
