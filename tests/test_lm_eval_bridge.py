"""The lm-eval bridge, offline on tiny-random: our tasks inside lm-eval reproduce our numbers."""

import json
import os

import pytest
from scipy import stats

try:
    import lm_eval  # noqa: F401
except ImportError:  # CI installs lm-eval and must run these
    if os.environ.get("CI"):
        raise
    pytest.skip("lm-eval is not installed (pip install -e '.[lm-eval]')", allow_module_level=True)

from dail_harness import registry
from dail_harness.eval.store import RunStore

os.environ["HF_DATASETS_OFFLINE"] = "1"

pytestmark = pytest.mark.slow  # starts vLLM / lm-eval: left out of `make test-fast`

LETTER_VERIFIER = '''
from dail_harness import registry
from dail_harness.verifiers.base import Verdict

@registry.register("verifiers", "starts-with-letter")
def starts_with_letter(completion, gold, finish_reason=None):
    """Test verifier: correct when the completion starts with an ASCII letter (about half of samples)."""
    ok = bool(completion) and completion[0].isascii() and completion[0].isalpha()
    return Verdict(ok, completion[:1] or None, not completion)
'''


def test_greedy_lm_eval_reproduces_our_samples_exactly(tmp_path, cli):
    ours = ["--n", "1", "--temperature", "0", "--max-tokens", "16", "--limit", "4"]
    assert (
        cli(
            "eval",
            "--task",
            "aime24",
            "--model",
            "tiny-random",
            *ours,
            "--presence-penalty",
            "0",
            "--no-progress",
            "--grade-workers",
            "0",
            "--out",
            tmp_path / "run",
        )[0]
        == 0
    )
    code, out, err = cli(
        "lm-eval-export", "--task", "aime24", *ours, "--presence-penalty", "0", "--out", tmp_path / "lm"
    )
    assert code == 0, err
    code, out, err = cli(
        "lm-eval",
        "--model",
        "tiny-random",
        "--include-path",
        tmp_path / "lm",
        "--tasks",
        "dail_aime24",
        "--output",
        tmp_path / "res.json",
    )
    assert code == 0, err
    assert "dail_aime24" in out and "pass@1" in out
    res = json.loads((tmp_path / "res.json").read_text())
    theirs = {s["doc"]["id"]: s["filtered_resps"][0][0] for s in res["samples"]["dail_aime24"]}
    mine = {r["problem_id"]: r["completion"] for r in RunStore(tmp_path / "run").load_samples()}
    assert theirs == mine and len(mine) == 4
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert res["results"]["dail_aime24"]["pass@1,all_samples"] == summary["pass_at_k"]["1"]


def test_sampled_pass_at_k_agrees_within_noise(tmp_path, cli):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "letter.py").write_text(LETTER_VERIFIER)
    registry.load_plugin_dir(plugins)
    data = tmp_path / "d.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "problem": f"Question number {i}: what is {i} + {i}?", "answer": "x"}) + "\n"
            for i in range(12)
        )
    )
    task = ["--task", "file", "--data", data, "--answer-type", "starts-with-letter"]
    sampling = ["--n", "8", "--k", "1,8", "--temperature", "1.0", "--top-p", "0.95", "--max-tokens", "2"]
    assert (
        cli(
            "eval",
            *task,
            "--model",
            "tiny-random",
            *sampling,
            "--presence-penalty",
            "0",
            "--no-progress",
            "--grade-workers",
            "0",
            "--plugin-dir",
            plugins,
            "--out",
            tmp_path / "run",
        )[0]
        == 0
    )
    export = ["lm-eval-export", *task, *sampling, "--presence-penalty", "0", "--plugin-dir", plugins]
    assert cli(*export, "--out", tmp_path / "lm")[0] == 0
    yaml = (tmp_path / "lm" / "dail_file.yaml").read_text()
    assert "take_first_k" in yaml and "repeats: 8" in yaml
    code, out, err = cli(
        "lm-eval",
        "--model",
        "tiny-random",
        "--include-path",
        tmp_path / "lm",
        "--tasks",
        "dail_file",
        "--output",
        tmp_path / "res.json",
    )
    assert code == 0, err
    res = json.loads((tmp_path / "res.json").read_text())
    theirs = res["results"]["dail_file"]["pass@1,all_samples"]
    mine = json.loads((tmp_path / "run" / "summary.json").read_text())["pass_at_k"]["1"]
    assert 0.05 < mine < 0.95  # the check has power
    n = 96  # 12 problems x 8 samples on each side
    pooled = (mine + theirs) / 2
    z = (mine - theirs) / max((2 * pooled * (1 - pooled) / n) ** 0.5, 1e-9)
    assert 2 * stats.norm.sf(abs(z)) > 1e-3, (mine, theirs)
    assert all(len(s["filtered_resps"][0]) == 8 for s in res["samples"]["dail_file"])  # every sample was graded


def test_unknown_lm_eval_task_is_one_error(cli, tmp_path):
    code, _, err = cli("lm-eval", "--model", "tiny-random", "--tasks", "dail_aime2x", "--include-path", tmp_path)
    assert code == 2 and "unknown lm-eval task" in err


def exported_generation_kwargs(directory) -> dict:
    (line,) = [x for x in (directory / "dail_aime24.yaml").read_text().splitlines() if x.startswith("generation_kw")]
    return json.loads(line.split(":", 1)[1])


def test_export_carries_every_sampling_setting_or_refuses_it(tmp_path, cli):
    """An export is a cross-check only at our settings: each one reaches lm-eval's generation_kwargs, or the
    export stops (lm-eval's hf model has no presence penalty; it had been dropped silently)."""
    base = ["lm-eval-export", "--task", "aime24", "--limit", "2", "--n", "4", "--k", "1,4", "--temperature", "0.7"]
    base += ["--top-p", "0.9", "--top-k", "20", "--max-tokens", "64", "--stop", "END"]
    code, _, err = cli(*base, "--out", tmp_path / "hf")
    assert code == 2 and "--presence-penalty 1.5: lm-eval's hf model cannot apply" in err, err
    assert not (tmp_path / "hf").exists()
    code, out, err = cli(*base, "--lm-eval-model", "vllm", "--seed", "7", "--out", tmp_path / "vllm")
    assert code == 0, err
    assert exported_generation_kwargs(tmp_path / "vllm") == {
        "until": ["END"],
        "do_sample": True,
        "max_gen_toks": 64,
        "repetition_penalty": 1.0,
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": 20,
        "presence_penalty": 1.5,
    }
    assert "lm_eval --model vllm --model_args pretrained=MODEL,seed=7" in out and "--seed 7" in out
    assert "dail-harness lm-eval" not in out  # our runner is lm-eval's hf model
    # top-k 0 and no repetition penalty are written too: transformers' generate would fill them from the model's
    # generation_config (top_k 50 by default)
    code, out, err = cli(*base, "--presence-penalty", "0", "--top-k", "0", "--out", tmp_path / "hf")
    gen = exported_generation_kwargs(tmp_path / "hf")
    assert code == 0 and "presence_penalty" not in gen and gen["top_k"] == 0 and gen["repetition_penalty"] == 1.0


def test_export_selects_problems_as_eval_does(tmp_path, cli):
    """--exclude and task options act as in `eval` (they had been ignored); an option no task uses is refused."""
    from dail_harness.eval.task import make_task

    first = [p.id for p in make_task("aime24").load()[:3]]
    (tmp_path / "ids.txt").write_text(first[1] + "\n")
    argv = ["lm-eval-export", "--task", "aime24", "--limit", "3", "--presence-penalty", "0", "--n", "1"]
    assert cli(*argv, "--exclude", tmp_path / "ids.txt", "--out", tmp_path / "lm")[0] == 0
    rows = [json.loads(x) for x in (tmp_path / "lm" / "dail_aime24.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [first[0], first[2]]
    code, _, err = cli(*argv, "--task-opt", "shufle_seed=1", "--out", tmp_path / "typo")
    assert code == 2 and "shufle_seed" in err, err
