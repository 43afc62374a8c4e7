"""Bad input, across every command: exit code 2, one error line that names the problem, no traceback, and
nothing written. One row per case; each row changes one thing of an otherwise valid command."""

from __future__ import annotations

import json

import pytest

EXPERT = [
    {"problem_id": "p1", "problem": "What is 1 + 2?", "solution": "1 + 2 = 3, so \\boxed{3}.", "answer": "3"},
    {"problem_id": "p2", "problem": "What is 2 + 2?", "solution": "2 + 2 = 4, so \\boxed{4}.", "answer": "4"},
]
DSYN = [{**r, "trace": r["solution"], "waypoints": ["1", "2"]} for r in EXPERT]
EVAL = ["eval", "--task", "aime24", "--model", "tiny-random", "--limit", "1", "--n", "1", "--max-tokens", "2"]
EVAL += ["--no-progress", "--grade-workers", "0", "--out", "{tmp}/out"]
GENERATE = ["generate", "--data", "{tmp}/expert.jsonl", "--model", "tiny-random", "--n", "1", "--max-tokens", "2"]
GENERATE += ["--no-progress", "--grade-workers", "0", "--out", "{tmp}/out"]
TRAIN = ["train", "--method", "dail", "--data", "{tmp}/dsyn.jsonl", "--model", "tiny-random", "--max-steps", "1"]
TRAIN += ["--no-progress", "--device", "cpu", "--out", "{tmp}/out"]
GRADE = ["grade", "{tmp}/rows.jsonl", "--output", "{tmp}/out", "--workers", "0", "--no-progress"]


def rows(*items: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in items)


def edited(base: list[str], **flags: str) -> list[str]:
    """`base` with flags set (replaced where present, appended otherwise)."""
    out = list(base)
    for name, value in flags.items():
        flag = "--" + name.replace("_", "-")
        if flag in out:
            out[out.index(flag) + 1] = value
        else:
            out += [flag, value]
    return out


# (case, command, files to write (name -> text), what the error line must say)
CASES = [
    ("eval: negative temperature", edited(EVAL, temperature="-1"), {}, "--temperature: must be >= 0"),
    ("eval: top-p 0", edited(EVAL, top_p="0"), {}, "--top-p: must be > 0 and <= 1"),
    ("eval: top-p above 1", edited(EVAL, top_p="1.5"), {}, "--top-p: must be > 0 and <= 1"),
    ("eval: no new tokens", edited(EVAL, max_tokens="0"), {}, "--max-tokens: must be >= 1"),
    ("eval: k of 0", edited(EVAL, k="0"), {}, "--k"),
    ("eval: fewer samples than k", edited(EVAL, k="4", n="2"), {}, "--n"),
    ("eval: zero budget", edited(EVAL, budgets="0,64"), {}, "--budgets: must be >= 1"),
    ("eval: negative temperature in a sweep", edited(EVAL, temperatures="0.6,-1"), {}, "--temperatures"),
    ("eval: unknown task", edited(EVAL, task="aime2"), {}, "did you mean"),
    ("eval: missing model", edited(EVAL, model="./no/such/model"), {}, "model directory not found"),
    ("eval: unknown back-end", edited(EVAL, backend="hff"), {}, "unknown backend 'hff'"),
    ("eval: shard out of range", edited(EVAL, shard="3/2"), {}, "--shard"),
    ("eval: empty stop string", EVAL + ["--stop", ""], {}, "--stop"),
    ("eval: exclude file missing", edited(EVAL, exclude="{tmp}/none.txt"), {}, "problem id file not found"),
    ("eval: file task without data", edited(EVAL, task="file"), {}, "needs --data"),
    (
        "eval: file task, answer of the wrong type",
        edited(EVAL, task="file", data="{tmp}/probs.jsonl"),
        {"probs.jsonl": rows({"id": "a", "problem": "x", "answer": ["1"]})},
        "probs.jsonl:1, field 'answer': must be a string or a number, found a list",
    ),
    (
        "eval: template without {problem}",
        edited(EVAL, prompt_template="{tmp}/t.txt"),
        {"t.txt": "Solve it."},
        "no {problem} placeholder",
    ),
    ("eval: misspelt flag", EVAL + ["--modle", "x"], {}, "No such option: --modle"),
    ("eval: unknown config key", EVAL + ["--config", "{tmp}/c.yaml"], {"c.yaml": "temprature: 0.6\n"}, "temprature"),
    (
        "eval: config value of the wrong type",
        EVAL + ["--config", "{tmp}/c.yaml"],
        {"c.yaml": "temperature: hot\n"},
        "temperature",
    ),
    ("generate: negative tau", edited(GENERATE, tau="-1"), {}, "--tau: must be >= 0"),
    ("generate: zero samples", edited(GENERATE, n="0"), {}, "must be >= 1"),
    (
        "generate: problem is a list",
        GENERATE,
        {"expert.jsonl": rows({"problem_id": 1, "problem": ["a"], "solution": 5})},
        "expert.jsonl:1, field 'problem': must be a string, found a list",
    ),
    (
        "generate: solution is a number",
        GENERATE,
        {"expert.jsonl": rows({"problem_id": 1, "problem": "a", "solution": 5})},
        "expert.jsonl:1, field 'solution': must be a string, found a number",
    ),
    (
        "generate: id is an object",
        GENERATE,
        {"expert.jsonl": rows({"problem_id": {"a": 1}, "problem": "a", "solution": "b"})},
        "field 'problem_id': must be a string or an integer, found an object",
    ),
    (
        "generate: missing solution",
        GENERATE,
        {"expert.jsonl": rows({"problem_id": "a", "problem": "x"})},
        "expert.jsonl:1, field 'solution': missing field",
    ),
    ("generate: duplicate id", GENERATE, {"expert.jsonl": rows(EXPERT[0], EXPERT[0])}, "duplicate problem_id 'p1'"),
    ("generate: empty data", GENERATE, {"expert.jsonl": ""}, "empty"),
    ("generate: bad JSON", GENERATE, {"expert.jsonl": '{"problem_id": "a",\n'}, "expert.jsonl:1"),
    ("train: negative learning rate", edited(TRAIN, lr="-1"), {}, "--lr: must be > 0"),
    ("train: no accumulation", edited(TRAIN, grad_accum="0"), {}, "--grad-accum: must be >= 1"),
    ("train: negative gamma", edited(TRAIN, gamma="-1"), {}, "--gamma: must be >= 0"),
    ("train: unknown method", edited(TRAIN, method="dial"), {}, "did you mean 'dail'"),
    ("train: unknown loss option", TRAIN + ["--loss-opt", "gama=1"], {}, "gama"),
    ("train: group size 0", edited(TRAIN, method="grpo", group_size="0"), {}, "--group-size: must be >= "),
    (
        "train: waypoints of numbers",
        TRAIN,
        {"dsyn.jsonl": rows({**DSYN[0], "waypoints": [1, 2]})},
        "dsyn.jsonl:1, field 'waypoints': must be a list of strings",
    ),
    (
        "train: trace is a list",
        TRAIN,
        {"dsyn.jsonl": rows({**DSYN[0], "trace": ["t"]})},
        "dsyn.jsonl:1, field 'trace': must be a string, found a list",
    ),
    ("grade: missing completion", GRADE, {"rows.jsonl": rows({"gold": "1", "answer_type": "math"})}, "completion"),
    (
        "grade: gold is a list",
        GRADE,
        {"rows.jsonl": rows({"completion": "x", "gold": [1], "answer_type": "math"})},
        "rows.jsonl:1, field 'gold': must be a string or a number, found a list",
    ),
    (
        "grade: unknown answer type",
        GRADE,
        {"rows.jsonl": rows({"completion": "x", "gold": "1", "answer_type": "maths"})},
        "field 'answer_type'",
    ),
    ("report: not a run", ["report", "{tmp}/nowhere", "--plot", "{tmp}/out"], {}, "nowhere"),
    ("prompts: unknown problem", ["prompts", "--data", "{tmp}/expert.jsonl", "--problem-id", "p9"], {}, "p9"),
    ("data toy: zero problems", ["data", "toy", "--out", "{tmp}/out", "--n", "0"], {}, "--n: must be >= 1"),
    ("data dedup: unknown benchmark", ["data", "dedup", "--data", "{tmp}/expert.jsonl", "--against", "x"], {}, "'x'"),
    ("unknown command", ["evl"], {}, "No such command 'evl'"),
]


@pytest.mark.parametrize(("case", "argv", "files", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_error_line_and_leaves_nothing(case, argv, files, message, tmp_path, cli):
    (tmp_path / "expert.jsonl").write_text(rows(*EXPERT))
    (tmp_path / "dsyn.jsonl").write_text(rows(*DSYN))
    (tmp_path / "rows.jsonl").write_text(rows({"completion": "\\boxed{1}", "gold": "1", "answer_type": "math"}))
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = cli(*[a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert code == 2, (case, out, err)
    assert "Traceback" not in out + err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert message in errors[0], errors[0]
    usage = [line for line in err.splitlines() if line and not line.startswith("error:")]
    assert all(line.startswith(("Usage:", "Try ")) for line in usage), err  # only a usage error adds lines
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "a failed command left files behind"


def test_the_table_covers_every_command():
    assert len(CASES) >= 30
    commands = {c[1][0] if c[1][0] != "data" else " ".join(c[1][:2]) for c in CASES}
    assert {"eval", "generate", "train", "grade", "report", "prompts", "data toy", "data dedup"} <= commands


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--backend", "hf", "--tensor-parallel-size", "2"], "--tensor-parallel-size"),
        (["--backend", "hf", "--enforce-eager"], "--enforce-eager"),
        (["--backend", "hf", "--max-model-len", "512"], "--max-model-len"),
        (["--backend", "vllm", "--batch-size", "4"], "--batch-size"),
        (["--task-opt", "shufle_seed=1"], "--task-opt shufle_seed"),
        (["--answer-type", "integer"], "--answer-type"),
    ],
)
def test_an_option_the_run_would_ignore_is_refused(tmp_path, cli, args, flag):
    """Accepted means used: an engine flag the back-end has no use for, or a task option no task reads."""
    code, _, err = cli(
        "eval", "--task", "aime24", "--model", "tiny-random", "--limit", "1", "--out", tmp_path / "r", *args
    )
    assert code == 2 and err.startswith(f"error: {flag}") and err.count("\n") == 1, err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("method", "args", "flag", "who"),
    [
        ("dail", ["--temperature", "0.3", "--backend", "vllm", "--max-tokens", "7"], "--temperature", "grpo"),
        ("dail", ["--backend", "vllm"], "--backend", "--eval-task"),
        ("dail", ["--max-tokens", "7"], "--max-tokens", "methods that sample"),
        ("nll", ["--eval-n", "8"], "--eval-n", "--eval-task"),
        ("nll", ["--eval-task", "aime24", "--eval-temperature", "0", "--top-p", "0.5"], "--top-p", "--eval-top-p"),
        ("grpo", ["--vllm-memory", "0.5"], "--vllm-memory", "--backend vllm"),
        ("grpo", ["--backend", "vllm", "--sample-batch-size", "8"], "--sample-batch-size", "--backend hf"),
        ("grpo", ["--grad-accum", "4"], "--grad-accum", "--prompts-per-step"),
        ("grpo", ["--max-length", "512"], "--max-length", "--max-tokens"),
        ("sft", ["--lora-r", "0", "--lora-alpha", "16"], "--lora-alpha", "--lora-r > 0"),
        ("sft", ["--lora-r", "0", "--merge"], "--merge", "full model"),
    ],
)  # fmt: skip
def test_a_train_option_the_method_would_ignore_is_refused(tmp_path, cli, method, args, flag, who):
    """`train --method dail --temperature 0.3 --backend vllm --max-tokens 7` used to run (and record the values as
    if used); each setting the chosen method, back-end or evaluation would ignore is now one error naming who uses
    it, before anything loads."""
    code, _, err = cli(
        "train", "--method", method, "--model", "tiny-random", "--data", tmp_path / "d.jsonl",
        "--out", tmp_path / "r", *args,
    )  # fmt: skip
    assert code == 2 and err.startswith(f"error: {flag}: this run does not use it"), err
    assert who in err and err.count("\n") == 1, err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("method", "listed", "left_out"),
    [
        ("dail", ["--gamma", "--kl-direction", "--templates", "--eval-temperature"], ["--temperature", "--epsilon"]),
        ("nll", ["--grad-accum", "--eval-task"], ["--gamma", "--top-p", "--group-size"]),
        (
            "grpo",
            ["--group-size", "--epsilon", "--temperature", "--backend"],
            ["--gamma", "--grad-accum", "--templates"],
        ),
        ("star", ["--iterations", "--temperature", "--grad-accum"], ["--gamma", "--epsilon", "--templates"]),
    ],
)  # fmt: skip
def test_train_help_for_a_method_lists_what_it_uses(cli, method, listed, left_out):
    code, out, _ = cli("train", "--method", method, "--help")
    flags = {line.split()[0] for line in out.splitlines() if line.startswith("  --")}
    assert code == 0 and f"Options of method '{method}'" in out
    assert set(listed) <= flags and not set(left_out) & flags, sorted(flags)
    code, out, _ = cli("train", "--help")  # without a method: everything, and how to narrow it
    assert "--method M --help" in out and {"--gamma", "--group-size", "--temperature"} <= {
        line.split()[0] for line in out.splitlines() if line.startswith("  --")
    }


def test_a_train_config_key_the_method_would_ignore_names_the_file_and_key(tmp_path, cli):
    config = tmp_path / "c.yaml"
    config.write_text("method: dail\nmodel: tiny-random\ndata: d.jsonl\nout: r\ntemperature: 0.3\n")
    code, _, err = cli("train", "--config", config)  # a key in a file: a warning naming it (a flag may override)
    assert f"warning: {config}, key 'temperature' is not used by this run (method 'dail')" in err, err
    config.write_text("method: grpo\nmodel: tiny-random\ndata: d.jsonl\nout: r\ntemperature: 0.3\nlimit: 1\n")
    code, _, err = cli("train", "--config", config)
    assert "not used" not in err  # grpo samples: temperature is its (the unknown key is the error)


@pytest.mark.parametrize(
    ("args", "flag", "who"),
    [
        (["generate", "--mode", "direct", "--tau", "0.5"], "--tau", "--mode mixed"),
        (["generate", "--mode", "direct", "--draft-tokens", "4"], "--draft-tokens", "--mode mixed"),
        (["generate", "--mode", "direct", "--proposal", "top20x5"], "--proposal", "--mode mixed"),
        (["eval", "--task", "aime24", "--answer-tokens", "100"], "--answer-tokens", "--force-answer"),
        (
            ["eval", "--task", "aime24", "--thinking", "on", "--budget-mode", "independent"],
            "--budget-mode",
            "--budgets",
        ),
        (["eval", "--task", "aime24", "--temperatures", "0.6,1", "--temperature", "0.3"], "--temperature", "replaces"),
        (["generate", "--mode", "direct", "--static-cache"], "--static-cache", "--mode mixed"),
        (["data", "hints", "--style", "solution", "--explain-max-tokens", "9"], "--explain-max-tokens", "--style nurl"),
    ],
)
def test_a_generate_or_eval_option_the_run_would_ignore_is_refused(tmp_path, cli, args, flag, who):
    common = ["--model", "tiny-random", "--out", tmp_path / "r"] + (
        ["--data", tmp_path / "d.jsonl"] if args[0] in ("generate", "data") else []
    )
    code, _, err = cli(*args, *common)
    assert code == 2 and err.startswith(f"error: {flag}: this run does not use it") and who in err, err
    assert not (tmp_path / "r").exists()


def test_a_config_key_a_flag_made_moot_is_a_warning_not_an_error(tmp_path, cli):
    """`--lora-r 0` over a LoRA config: its lora_alpha is named in a warning (the flag wins), not refused."""
    config = tmp_path / "c.yaml"
    config.write_text("method: sft\nmodel: tiny-random\ndata: missing.jsonl\nlora_r: 8\nlora_alpha: 16\n")
    code, _, err = cli("train", "--config", config, "--lora-r", "0", "--out", tmp_path / "r")
    assert f"warning: {config}, key 'lora_alpha' is not used by this run" in err, err
    assert code == 2 and "missing.jsonl" in err  # the run went on to its own checks


def test_a_bad_evaluation_setting_fails_before_any_training(tmp_path, cli):
    """An unknown --eval-task, or a back-end that cannot sample the trained model, fails before step 1 (it used to
    fail after the last step, losing the run)."""
    from test_training import TRAIN, write_dsyn

    data = write_dsyn(tmp_path / "d.jsonl", n=2)
    base = ["train", "--method", "dail", "--data", data, "--max-steps", "1", *TRAIN]
    code, _, err = cli(*base, "--eval-task", "aime42", "--out", tmp_path / "a")
    assert code == 2 and "aime42" in err and not (tmp_path / "a" / "train_log.jsonl").exists(), err
    # vLLM serves no LoRA on lm_head
    head = ["--lora-targets", "q_proj,lm_head", "--backend", "vllm", "--eval-task", "aime24"]
    code, _, err = cli(*base, *head, "--out", tmp_path / "b")
    assert code == 2 and "vLLM serves LoRA on" in err and not (tmp_path / "b" / "train_log.jsonl").exists(), err


def test_an_older_run_that_recorded_a_setting_its_method_never_uses_resumes(tmp_path, cli):
    """Runs written before such settings were refused recorded them (e.g. --temperature 0.3 for dail): the
    rerun extends them instead of being stuck between 'not used' and 'different settings'."""
    from test_training import TRAIN, write_dsyn

    data = write_dsyn(tmp_path / "d.jsonl", n=2)
    base = ["train", "--method", "dail", "--data", data, *TRAIN, "--out", tmp_path / "r"]
    assert cli(*base, "--max-steps", "1")[0] == 0
    record = tmp_path / "r" / "train_config.json"
    settings = json.loads(record.read_text())
    record.write_text(json.dumps({**settings, "temperature": 0.3, "max_tokens": 7}))
    code, out, err = cli(*base, "--max-steps", "2")
    assert code == 0 and "trained 2 steps" in out, err


def test_a_task_option_some_task_of_the_run_reads_is_accepted(tmp_path, cli):
    code, _, err = cli(
        "eval",
        "--task",
        "aime24",
        "--model",
        "tiny-random",
        "--limit",
        "1",
        "--max-tokens",
        "2",
        "--no-progress",
        "--grade-workers",
        "0",
        "--task-opt",
        "shuffle_seed=1",
        "--task",
        "aime24,file",
        "--data",
        tmp_path / "d.jsonl",
        "--out",
        tmp_path / "r",
    )
    assert "shuffle_seed" in err  # file does not read it either: still refused
    (tmp_path / "d.jsonl").write_text('{"id": "a", "problem": "1+1?", "answer": "2"}\n')
    code, _, err = cli(
        "eval",
        "--task",
        "aime24,file",
        "--data",
        tmp_path / "d.jsonl",
        "--model",
        "tiny-random",
        "--limit",
        "1",
        "--max-tokens",
        "2",
        "--no-progress",
        "--grade-workers",
        "0",
        "--out",
        tmp_path / "r",
    )
    assert code == 0, err  # --data is read by the file task of the run


def test_generate_refuses_an_engine_flag_its_back_end_ignores(tmp_path, cli):
    data = tmp_path / "e.jsonl"
    data.write_text('{"problem_id": "a", "problem": "1+1?", "solution": "2"}\n')
    args = ["generate", "--data", data, "--model", "tiny-random", "--backend", "hf", "--enforce-eager"]
    code, _, err = cli(*args, "--out", tmp_path / "o")
    assert code == 2 and "--enforce-eager: the 'hf' back-end does not use it" in err
