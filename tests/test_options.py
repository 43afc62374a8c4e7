"""Config dataclasses: one source of defaults; flags and YAML files set the same fields, checked once."""

import json

import pytest

from dail_harness.errors import HarnessError
from dail_harness.eval.pipeline import EvalConfig
from dail_harness.options import Where, build, plugin_options
from dail_harness.training.config import TrainConfig


def one_error_line(code, err):
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and "Traceback" not in err, err
    return lines[-1]


def test_build_coerces_and_keeps_defaults():
    cfg = build(
        EvalConfig,
        {
            "task": "aime24,aime25",
            "model": "m",
            "out": "o",
            "k": 8,
            "temperatures": "0.6,1",
            "shard": "1/4",
            "thinking": "on",
            "task_opt": ["shuffle_seed=1"],
            "stop": ["a"],
        },
    )
    assert cfg.task == ["aime24", "aime25"] and cfg.k == "8" and cfg.ks == [1, 2, 4, 8] and cfg.num_samples == 8
    assert cfg.temperatures == [0.6, 1.0] and cfg.shard == (1, 4) and cfg.thinking is True
    assert cfg.task_opt == {"shuffle_seed": "1"} and cfg.stop == ["a"]
    assert cfg.presence_penalty == 1.5 and cfg.top_p == 0.95  # the paper's eval defaults, from the dataclass


@pytest.mark.parametrize(
    "values,message",
    [
        ({"temperature": -1}, "--temperature: must be >= 0, got -1"),
        ({"top_p": 0}, "--top-p: must be > 0 and <= 1, got 0"),
        ({"top_p": 1.5}, "--top-p: must be > 0 and <= 1, got 1.5"),
        ({"max_tokens": 0}, "--max-tokens: must be >= 1, got 0"),
        ({"max_tokens": "many"}, "--max-tokens: expected an integer, got 'many'"),
        ({"budget_mode": "shard"}, "--budget-mode: must be one of shared, independent, got 'shard'"),
        ({"budgets": "512,0"}, "--budgets: must be >= 1, got 0"),
        ({"shard": "4/4"}, "--shard: need 0 <= i < N, got '4/4'"),
        ({"n": 4, "k": "1,8"}, "--k 8 is larger than --n 4"),
    ],
)
def test_bad_values_name_the_flag(values, message):
    with pytest.raises(HarnessError) as e:
        build(EvalConfig, {"task": "aime24", "model": "m", "out": "o", **values})
    assert message in str(e.value)


def test_missing_required_and_config_file_positions():
    with pytest.raises(HarnessError, match="missing --model"):
        build(EvalConfig, {"task": "aime24", "out": "o"})
    where = {"lr": Where("--lr", path="c.yaml", key="lr")}
    with pytest.raises(HarnessError, match=r"^c.yaml, field 'lr': must be > 0, got -1$"):
        build(TrainConfig, {"method": "dail", "model": "m", "data": "d", "out": "o", "lr": -1}, where)


def test_plugin_options_refuse_unknown_names():
    from dail_harness.training.losses import KLOptions

    assert plugin_options(KLOptions, {"kl_direction": "forward"}, kind="loss", name="kl").kl_direction == "forward"
    with pytest.raises(HarnessError, match="kl_direktion is not an option of loss 'kl' \\(did you mean 'kl_direction'"):
        plugin_options(KLOptions, {"kl_direktion": "forward"}, kind="loss", name="kl")
    with pytest.raises(HarnessError, match="must be one of reverse, forward"):
        plugin_options(KLOptions, {"kl_direction": "sideways"}, kind="loss", name="kl")


def test_config_file_sets_values_and_flags_override(cli, tmp_path):
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(
        "task: aime24\nmodel: tiny-random\nn: 2\nmax-tokens: 4\nlimit: 1\nthinking: off\n"
        "grade_workers: 0\nprogress: false\ntemperature: 1.0\n"
    )
    code, out, err = cli("eval", "--config", cfg, "--temperature", "0", "--out", tmp_path / "run")
    assert code == 0, err
    settings = json.loads((tmp_path / "run" / "run.json").read_text())
    assert settings["sampling"]["temperature"] == 0.0  # the flag wins over the file
    assert settings["sampling"]["max_tokens"] == 4 and settings["sampling"]["n"] == 2


def test_bad_config_files_are_one_error(cli, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("task: aime24\nmodel: tiny-random\ntemprature: 0.6\n")
    code, _, err = cli("eval", "--config", cfg, "--out", tmp_path / "r")
    line = one_error_line(code, err)
    assert f"{cfg}, field 'temprature': unknown key (did you mean 'temperature'?)" in line and "valid keys:" in line
    cfg.write_text("task: aime24\nmodel: tiny-random\ntop_p: 2\n")
    code, _, err = cli("eval", "--config", cfg, "--out", tmp_path / "r")
    assert f"{cfg}, field 'top_p': must be > 0 and <= 1, got 2" in one_error_line(code, err)
    cfg.write_text("task: [aime24\n")
    code, _, err = cli("eval", "--config", cfg, "--out", tmp_path / "r")
    assert "malformed YAML" in one_error_line(code, err)
    code, _, err = cli("eval", "--config", tmp_path / "nope.yaml", "--out", tmp_path / "r")
    assert "config file not found" in one_error_line(code, err)
    cfg.write_text("task: aime24\nmodel: tiny-random\ntemperature: 0.6\nsampling:\n  n: 2\n  n: 4\n")
    code, _, err = cli("eval", "--config", cfg, "--out", tmp_path / "r")  # PyYAML alone keeps the last silently
    assert f"{cfg}:6: malformed YAML: key 'n' appears twice in one mapping" in one_error_line(code, err)
    assert not (tmp_path / "r").exists()


def test_plugin_sections_and_option_maps_of_a_config_file(cli, tmp_path, monkeypatch):
    """`method: {name: grpo, lr: ...}` applied lr to the run unnoticed; `method_opt: {hints: h.jsonl}` read the
    path from the current directory, not the file's, as every other path of the file is read."""
    monkeypatch.chdir(tmp_path)
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "d.jsonl").write_text('{"problem_id": "p", "problem": "1+1?", "answer": "2"}\n')
    cfg = conf / "c.yaml"
    cfg.write_text("method: {name: grpo, lr: 1.0e-5}\nmodel: tiny-random\ndata: d.jsonl\nout: o\n")
    code, _, err = cli("train", "--config", cfg, "--dry-run")
    assert f"{cfg}, field 'method.lr': not an option of a method plugin" in one_error_line(code, err)
    cfg.write_text("method: nurl\nmodel: tiny-random\ndata: d.jsonl\nout: o\nmethod_opt: {hints: h.jsonl}\n")
    code, _, err = cli("train", "--config", cfg, "--dry-run")
    assert f"{conf / 'h.jsonl'}" in one_error_line(code, err)  # looked for beside the config


@pytest.mark.parametrize(
    "args,needle",
    [
        (["evl"], "No such command 'evl'. Did you mean 'eval'"),
        (["eval", "--modle", "x"], "No such option: --modle"),
        (["eval", "--temperature", "abc", "--task", "aime24"], "Invalid value for '--temperature'"),
        (
            ["train", "--lr", "-1", "--method", "dail", "--model", "m", "--data", "d", "--out", "o"],
            "--lr: must be > 0, got -1",
        ),
        (
            ["train", "--grad-accum", "0", "--method", "dail", "--model", "m", "--data", "d", "--out", "o"],
            "--grad-accum: must be >= 1, got 0",
        ),
    ],
)
def test_usage_errors_are_a_usage_line_and_one_error_exit_2(cli, args, needle):
    code, _, err = cli(*args)
    assert needle in one_error_line(code, err)


TRAIN = ["train", "--model", "tiny-random", "--data", "d.jsonl", "--out", "o", "--dry-run"]
EVAL = ["eval", "--task", "aime24", "--model", "tiny-random", "--out", "o", "--dry-run"]


@pytest.mark.parametrize(
    "args,needle",
    [
        (
            [*TRAIN, "--method", "grpo", "--templates", "t.json"],
            "--templates: this run does not use it (method 'grpo'): methods whose training prompts are the D_syn",
        ),
        (
            [*TRAIN, "--method", "star", "--templates", "t.json"],
            "--templates: this run does not use it (method 'star')",
        ),
        ([*TRAIN, "--method", "nll", "--device", "cuda:3"], "--device: must be one of cpu, got 'cuda:3'"),
        ([*TRAIN, "--method", "grpo", "--group-size", "1"], "--group-size: must be >= 2, got 1"),
        ([*TRAIN, "--method", "grpo", "--temperature", "0"], "--temperature 0 is greedy decoding: the 8 samples"),
        ([*TRAIN, "--method", "nll", "--warmup-ratio", "0.1", "--no-warmup-clamp"], "--warmup-clamp: this run does"),
        ([*EVAL, "--device", "gpu"], "--device: must be cpu, cuda or cuda:N (or mps, xpu, xpu:N), got 'gpu'"),
        ([*EVAL, "--dtype", "fp77"], "--dtype: must be one of float32, bfloat16, float16, got 'fp77'"),
        (
            [*EVAL, "--budgets", "2,4", "--thinking", "off"],
            "--budgets forces thinking budgets, so it needs --thinking on",
        ),
        (
            [*TRAIN, "--method", "grpo", "--loss", "nll"],
            "loss 'nll' with method 'grpo': the loss does not read 'advantage', which carries the method's reward, "
            "so it would train on every sample alike; losses that read it: grpo",
        ),
        ([*TRAIN, "--method", "nurl", "--loss", "pg"], "loss 'pg' with method 'nurl': the loss does not read 'adv"),
        ([*TRAIN, "--method", "grpo", "--loss", "kl"], "the loss needs the privileged context, which the method's"),
        ([*TRAIN, "--method", "star", "--loss", "dail"], "loss 'dail' with method 'star': the loss needs the privi"),
        ([*TRAIN, "--method", "dail", "--loss", "grpo"], "the loss reads per-token 'advantage', which the method do"),
        ([*TRAIN, "--method", "grpo", "--prompt", "Q: {Problem}"], "--prompt: the template must contain {problem}"),
        (
            [*TRAIN, "--method", "star", "--rationalization", "{problem} (the answer is {Answer})"],
            "--rationalization: the template must contain {problem} and {answer}; {answer} is missing from",
        ),
        (
            [*TRAIN, "--method", "nurl", "--method-opt", "hint_template={problem}"],
            "the template must contain {problem} and {hint}; {hint} is missing from '{problem}'",
        ),
        (
            [*EVAL, "--budgets", "4,12", "--thinking", "on", "--max-tokens", "2"],
            "--max-tokens: this run does not use it: a run without --budgets uses it (each budget is its condition's",
        ),
        (
            [*EVAL, "--task-opt", "prompt_template=tpl.txt"],
            "--task-opt prompt_template: the template must contain {problem}, got 'tpl.txt' (it is the template's",
        ),
        (
            [*TRAIN, "--method", "grpo", "--method-opt", "group_size=4", "--group-size", "2"],
            "--group-size: sets the same option as --method-opt group_size=...: give one",
        ),
        ([*TRAIN, "--method", "nll", "--method-opt", "a=1", "--method-opt", "a=2"], "--method-opt: a is given twice"),
        ([*EVAL, "--task-opt", "shuffle_seed=1", "--task-opt", "shuffle_seed=2"], "shuffle_seed is given twice"),
        (["data", "harp", "--out", "h.jsonl", "--n", "32"], "--n: this run does not use it: --filter-model uses it"),
        (
            ["data", "harp", "--out", "h.jsonl", "--dedup-against", "", "--drop-overlaps"],
            "--drop-overlaps: this run does not use it: --dedup-against uses it",
        ),
        (
            ["generate", "--mode", "direct", "--backend", "vllm", "--batch-size", "2", "--model", "m"]
            + ["--data", "d.jsonl", "--out", "o.jsonl"],
            "--batch-size: this run does not use it: --backend hf or --mode mixed uses it",
        ),
    ],
    ids=[
        "grpo-templates",
        "star-templates",
        "train-device",
        "group-size-1",
        "grpo-greedy",
        "clamp-with-ratio",
        "eval-device",
        "dtype",
        "budgets-off",
        "grpo-nll",
        "nurl-pg",
        "grpo-kl",
        "star-dail",
        "dail-grpo",
        "grpo-prompt",
        "star-rationalization",
        "nurl-hint-template",
        "budgets-max-tokens",
        "eval-task-opt-template",
        "flag-and-method-opt",
        "method-opt-twice",
        "task-opt-twice",
        "harp-filter-without-model",
        "harp-drop-without-benchmarks",
        "direct-vllm-batch-size",
    ],
)
def test_settings_a_run_would_ignore_or_cannot_honour_are_refused(cli, tmp_path, monkeypatch, args, needle):
    """Each was accepted and then ignored (or crashed with a traceback that blamed the harness)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.jsonl").write_text('{"problem_id": "p", "problem": "1+1?", "answer": "2", "trace": "2"}\n')
    code, _, err = cli(*args)
    assert needle in one_error_line(code, err)


def test_every_method_pairs_with_its_default_loss_and_the_fitting_ones():
    """The pairing check refuses only what cannot train: each built-in method with its default loss, and the
    file methods with every KL-family loss, resolve."""
    from dail_harness import registry
    from dail_harness.training.engine import resolve

    registry.load_builtins()
    for name in registry.names("methods"):
        resolve(TrainConfig(method=name, model="m", data="d", out="o"))
    for name in ("dail", "nll", "sft"):
        for loss in ("dail", "kl", "nll"):
            resolve(TrainConfig(method=name, loss=loss, model="m", data="d", out="o"))


def test_template_files_are_recorded_by_content(tmp_path):
    """Each config whose template file shapes its output records the file's SHA-256 beside its path."""
    import hashlib

    from dail_harness.dsyn.generate import GenerateConfig
    from dail_harness.dsyn.hints import HintsConfig

    t = tmp_path / "t.json"
    t.write_text('{"student": "{problem}"}')
    digest = hashlib.sha256(t.read_bytes()).hexdigest()[:16]
    common = dict(model="m", data="d", out="o")
    configs = [
        (TrainConfig(method="dail", templates=str(t), **common), "templates"),
        (GenerateConfig(templates=str(t), **common), "templates"),
        (HintsConfig(prompt_template=str(t), **common), "prompt_template"),
        (HintsConfig(explain_template=str(t), **common), "explain_template"),
    ]
    for cfg, key in configs:
        settings = cfg.settings()
        assert settings[key] == str(t) and settings[f"{key}_sha256"] == digest, type(cfg)
    assert "templates_sha256" not in TrainConfig(method="dail", **common).settings()


def test_a_step_of_more_prompts_than_problems_is_refused(cli, tmp_path):
    """It took every problem, fewer than asked, while the plan printed the number asked for."""
    data = tmp_path / "d.jsonl"
    data.write_text("".join(f'{{"problem_id": "p{i}", "problem": "{i}+1?", "answer": "{i + 1}"}}\n' for i in range(3)))
    argv = ["train", "--method", "grpo", "--model", "tiny-random", "--data", data, "--out", tmp_path / "o"]
    argv += ["--prompts-per-step", "4", "--group-size", "2", "--max-steps", "1", "--device", "cpu", "--no-progress"]
    for dry in ([], ["--dry-run"]):
        code, _, err = cli(*argv, *dry)
        assert "--prompts-per-step 4 is more than the 3 problems: a step would take 3" in one_error_line(code, err)


def test_a_cuda_device_this_machine_lacks_is_one_line(monkeypatch):
    import torch

    from dail_harness.errors import HarnessError
    from dail_harness.models.loading import check_device_present

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    check_device_present("cpu")
    with pytest.raises(HarnessError, match=r"--device cuda:1: torch sees 0 CUDA device\(s\) here; use --device cpu"):
        check_device_present("cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    check_device_present("cuda:1")
    with pytest.raises(HarnessError, match="torch sees 2 CUDA device"):
        check_device_present("cuda:2")
