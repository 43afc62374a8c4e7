"""How runs meet the machine they run on: the modes of the files they write (the user's umask, not 0600)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

DSYN = {"problem_id": "p1", "problem": "What is 1 + 2?", "solution": "1 + 2 = 3, so \\boxed{3}.", "answer": "3"}
EVAL = ["eval", "--task", "aime24", "--model", "tiny-random", "--limit", "1", "--n", "1", "--max-tokens", "2"]
EVAL += ["--no-progress", "--grade-workers", "0"]
TRAIN = ["train", "--method", "dail", "--model", "tiny-random", "--max-steps", "1", "--save-every", "1"]
TRAIN += ["--merge", "--no-progress", "--device", "cpu"]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o022, 0o027], ids=["umask-022", "umask-027"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_eval_and_train_outputs_get_the_umask_modes(umask, tmp_path, cli):
    data = tmp_path / "dsyn.jsonl"
    data.write_text(json.dumps({**DSYN, "trace": DSYN["solution"], "waypoints": ["1", "2"]}) + "\n")
    code, _, err = cli(*EVAL, "--out", tmp_path / "eval")
    assert code == 0, err
    code, _, err = cli(*TRAIN, "--data", data, "--out", tmp_path / "train")
    assert code == 0, err
    files = [tmp_path / "eval" / name for name in ("summary.json", "run.json", "samples.jsonl")]
    train = tmp_path / "train"
    files += [train / "adapter_model.safetensors", train / "adapter_config.json", train / "train_config.json"]
    files += [train / "merged" / "model.safetensors", train / "checkpoints" / "step-1" / "state.pt"]
    dirs = [train / "checkpoints", train / "checkpoints" / "step-1", train / "merged"]
    assert {str(p): oct(mode(p)) for p in files} == {str(p): oct(0o666 & ~umask) for p in files}
    assert {str(p): oct(mode(p)) for p in dirs} == {str(p): oct(0o777 & ~umask) for p in dirs}


def cgroup_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "cgroup", "cpus"),
    [
        ({"cpu.max": "max 100000\n"}, "0::/\n", None),  # v2, no quota
        ({"cpu.max": "150000 100000\n"}, "0::/\n", 1.5),  # v2 at the root (a container's view)
        ({"user.slice/job/cpu.max": "300000 100000\n", "cpu.max": "max 100000\n"}, "0::/user.slice/job\n", 3.0),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, "1:cpu:/\n", None),  # v1, none
        ({"cpu,cpuacct/cpu.cfs_quota_us": "200000", "cpu,cpuacct/cpu.cfs_period_us": "50000"}, "3:cpu,cpuacct:/", 4.0),
        ({}, "", None),  # no cgroup files at all (not Linux, or not mounted)
    ],
    ids=["v2-max", "v2-root", "v2-own-group", "v1-unlimited", "v1-quota", "none"],
)
def test_cgroup_cpu_limit_reads_v1_and_v2_quotas(files, cgroup, cpus, tmp_path):
    from dail_harness.models.cpu import cgroup_cpu_limit

    assert cgroup_cpu_limit(cgroup_tree(tmp_path, files), cgroup) == cpus


@pytest.mark.parametrize(
    ("affinity", "quota", "workers", "requested", "env", "threads"),
    [
        (2, None, 2, None, {}, 1),  # the shared 2-core machine: grading workers leave one core
        (2, None, 0, None, {}, 2),
        (64, 1.5, 0, None, {}, 1),  # a 1.5-CPU quota on a big machine: 1, not 64
        (64, None, 4, None, {}, 60),
        (8, 4.0, 4, None, {}, 1),  # never below 1
        (8, None, 4, 3, {}, 3),  # --threads wins over everything
        (8, None, 4, 3, {"OMP_NUM_THREADS": "6"}, 3),
        (8, None, 0, None, {"OMP_NUM_THREADS": "6"}, None),  # the user's setting is left alone
        (8, None, 0, None, {"MKL_NUM_THREADS": "2"}, None),
        (8, None, 0, None, {"OMP_NUM_THREADS": ""}, 8),  # set but empty: not a choice
    ],
)
def test_threads_come_from_the_cores_the_process_may_use(affinity, quota, workers, requested, env, threads):
    from dail_harness.models.cpu import available_cores, choose_threads

    assert choose_threads(available_cores(affinity, quota), workers, requested, env)[0] == threads


def test_threads_flag_sets_torch_threads_and_the_environment_is_respected(tmp_path, cli, monkeypatch):
    import torch

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
        torch.set_num_threads(2)
        code, _, err = cli(*EVAL, "--threads", "1", "--out", tmp_path / "a")
        assert (code, torch.get_num_threads()) == (0, 1), err
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        torch.set_num_threads(2)
        code, _, err = cli(*EVAL, "--out", tmp_path / "b")
        assert (code, torch.get_num_threads()) == (0, 2), err
        code, _, err = cli(*EVAL, "--threads", "0", "--out", tmp_path / "c")
        assert code == 2 and err.strip().splitlines()[-1] == "error: --threads: must be >= 1, got 0"
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("command", [["eval"], ["generate"], ["train"], ["data", "hints"]])
def test_commands_that_compute_take_threads(command, cli):
    code, out, _ = cli(*command, "--help")
    assert code == 0 and "--threads INT " in out


def test_paths_in_a_config_are_relative_to_the_config_file(tmp_path, cli, monkeypatch):
    """data, prompt_template and out from `exp/eval.yaml` resolve in exp/; the same key as a flag, from the cwd."""
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "problems.jsonl").write_text(json.dumps({"id": "q1", "problem": "1 + 2?", "answer": "3"}) + "\n")
    (exp / "prompt.txt").write_text("Solve: {problem}\n")
    config = "task: file\ndata: problems.jsonl\nanswer_type: integer\nprompt_template: prompt.txt\nout: runs/a\n"
    config += "model: tiny-random\nn: 1\nmax_tokens: 2\ngrade_workers: 0\nprogress: false\n"
    (exp / "eval.yaml").write_text(config)
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("eval", "--config", "exp/eval.yaml")
    assert code == 0, err
    run = json.loads((exp / "runs" / "a" / "run.json").read_text())
    assert run["prompt_templates"] == {"file": "Solve: {problem}\n"}
    assert not (tmp_path / "runs").exists()
    code, _, err = cli("eval", "--config", "exp/eval.yaml", "--out", "b")  # a flag: from the cwd
    assert code == 0, err
    assert (tmp_path / "b" / "samples.jsonl").exists()


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        ("data.jsonl", "path", "cfg/data.jsonl"),
        ("../runs/x", "path", "runs/x"),  # joined lexically, then normalised
        ("/abs/x", "path", "/abs/x"),
        (["a", "b/c"], "path", ["cfg/a", "cfg/b/c"]),
        ("Qwen/Qwen2.5-7B-Instruct", "path-or-name", "Qwen/Qwen2.5-7B-Instruct"),  # a hub id stays one
        ("tiny-random", "path-or-name", "tiny-random"),
        ("./my-model", "path-or-name", "cfg/my-model"),  # explicitly relative: a path even if missing
        ("local-model", "path-or-name", "cfg/local-model"),  # exists next to the config
        (["aime24", "local-model"], "path-or-name", ["aime24", "cfg/local-model"]),
    ],
)
def test_config_path_rule(value, kind, expected, tmp_path, monkeypatch):
    from dail_harness.options import from_config_dir

    monkeypatch.chdir(tmp_path)
    (tmp_path / "cfg" / "local-model").mkdir(parents=True)
    assert from_config_dir(value, Path("cfg"), kind) == expected


VENDORED = '''
from dail_harness import registry
from dail_harness.eval.task import VendoredTask


@registry.register("tasks", "shipped-sums")
class ShippedSums(VendoredTask):
    """A plugin task with its own data file beside it."""

    name = "shipped-sums"
    answer_type = "integer"
    expected_count = 2
    filename = "shipped_sums.jsonl"
'''


def test_a_plugin_vendored_task_ships_its_own_data(tmp_path, cli):
    plugins = tmp_path / "my_plugins"
    plugins.mkdir()
    (plugins / "shipped_sums.py").write_text(VENDORED)
    rows = [{"id": "a", "problem": "1 + 1?", "answer": "2"}, {"id": "b", "problem": "2 + 2?", "answer": "4"}]
    (plugins / "shipped_sums.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, err = cli("list", "tasks", "--plugin-dir", plugins)
    assert code == 0, err
    assert next(line.split()[:3] for line in out.splitlines() if line.startswith("shipped-sums")) == [
        "shipped-sums",
        "2",
        "integer",
    ]
    argv = [*EVAL[:2], "shipped-sums", *EVAL[3:6], "2", *EVAL[7:], "--plugin-dir", plugins, "--out", tmp_path / "run"]
    code, _, err = cli(*argv)
    assert code == 0, err
    samples = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert sorted((s["problem_id"], s["answer_type"]) for s in samples) == [("a", "integer"), ("b", "integer")]


def test_grade_without_plugin_dir_hints_at_it(tmp_path, cli, monkeypatch):
    from dail_harness import registry

    # as in a fresh process: no --plugin-dir yet, and none of the plugins earlier tests of this process loaded
    monkeypatch.setattr(registry._state, "loaded_dirs", set())
    registry.load_builtins()
    builtin = {k: e for k, e in registry._state.entries["verifiers"].items() if e.source.startswith("dail_harness.")}
    monkeypatch.setitem(registry._state.entries, "verifiers", builtin)
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"completion": "\\boxed{1}", "gold": "1", "answer_type": "digit-share"}) + "\n")
    code, _, err = cli("grade", rows, "--output", tmp_path / "out.jsonl", "--workers", "0", "--no-progress")
    assert code == 2 and not (tmp_path / "out.jsonl").exists()
    assert err.strip().splitlines() == [
        f"error: {rows}:1, field 'answer_type': must be one of choice, integer, math, got 'digit-share'; "
        "if it is a plugin's verifier, load it with --plugin-dir DIR"
    ]


@pytest.mark.parametrize(("k", "expected"), [("[1, 2, 4]", "1,2,4"), ("[128]", "128"), ("1,8", "1,8"), ("8", "8")])
def test_yaml_lists_are_accepted_for_k(k, expected, tmp_path):
    from dail_harness.cli.options import load_config_file
    from dail_harness.eval.pipeline import EvalConfig
    from dail_harness.options import Where, build

    config = tmp_path / "eval.yaml"
    config.write_text(f"task: [aime24, aime25]\nk: {k}\nmodel: tiny-random\nout: run\n")
    values = load_config_file(config, dict.fromkeys(["task", "k", "model", "out"]))
    cfg = build(EvalConfig, values, {key: Where("--" + key, path=str(config), key=key) for key in values})
    assert (cfg.k, cfg.task) == (expected, ["aime24", "aime25"])


def test_every_package_directory_is_in_the_wheel():
    """A subpackage missing from pyproject's explicit list installs editable but not from a wheel
    (dail_harness.scale once was): every directory with an __init__.py must be listed."""
    import tomllib

    root = Path(__file__).resolve().parent.parent
    tool = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(tool["packages"])
    found = set()
    for package, directory in tool["package-dir"].items():
        for init in (root / directory).rglob("__init__.py"):
            parts = init.parent.relative_to(root / directory).parts
            found.add(".".join((package, *parts)))
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - found == set()
