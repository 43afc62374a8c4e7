"""Bad input: one clear line and a non-zero exit; registry lookups and plugins."""

import json
import sys

import pytest

from dail_harness import registry
from dail_harness.errors import HarnessError


def one_line_error(code, err):
    assert code == 2
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_unknown_task_suggests(cli, tmp_path):
    code, _, err = cli("eval", "--task", "aime2", "--model", "tiny-random", "--out", tmp_path / "x")
    line = one_line_error(code, err)
    assert "unknown task 'aime2'" in line and "did you mean" in line and "aime24" in line
    assert not (tmp_path / "x").exists()  # nothing half-written


def test_k_larger_than_n(cli, tmp_path):
    code, _, err = cli(
        "eval", "--task", "aime24", "--model", "tiny-random", "--n", "4", "--k", "1,8", "--out", tmp_path / "x"
    )
    assert "larger than --n 4" in one_line_error(code, err)
    assert not (tmp_path / "x").exists()


def test_unknown_backend_and_model(cli, tmp_path):
    code, _, err = cli(
        "eval", "--task", "aime24", "--model", "tiny-random", "--backend", "hff", "--out", tmp_path / "x"
    )
    assert "unknown backend 'hff'" in one_line_error(code, err)
    code, _, err = cli(
        "eval", "--task", "aime24", "--model", "./no/such/model", "--limit", "1", "--out", tmp_path / "y"
    )
    assert "model directory not found" in one_line_error(code, err)


def test_empty_and_malformed_data(cli, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    code, _, err = cli("eval", "--task", "file", "--data", empty, "--model", "tiny-random", "--out", tmp_path / "x")
    assert "empty data set" in one_line_error(code, err)
    bad = tmp_path / "preds.jsonl"
    bad.write_text(json.dumps({"completion": "x", "gold": "1", "answer_type": "integer"}) + "\n{oops\n")
    code, _, err = cli("grade", bad, "--output", tmp_path / "out.jsonl")
    assert f"{bad}:2: malformed JSON" in one_line_error(code, err)
    assert not (tmp_path / "out.jsonl").exists()
    bad.write_text(json.dumps({"completion": "x", "answer_type": "integer"}) + "\n")
    code, _, err = cli("grade", bad, "--output", tmp_path / "out.jsonl")
    assert f"{bad}:1, field 'gold': missing field" in one_line_error(code, err)
    bad.write_text(json.dumps({"completion": "x", "gold": "1", "answer_type": "integr"}) + "\n")
    code, _, err = cli("grade", bad, "--output", tmp_path / "out.jsonl")
    assert "field 'answer_type'" in one_line_error(code, err)


def test_report_on_non_run_dir(cli, tmp_path):
    code, _, err = cli("report", tmp_path)
    assert "not a run directory" in one_line_error(code, err)


def test_list_shows_every_registry(cli):
    code, out, _ = cli("list")
    assert code == 0
    for kind in registry.KINDS:
        assert f"[{kind}]" in out
    code, out, _ = cli("list", "tasks")
    lines = {l.split()[0]: l.split() for l in out.strip().splitlines()}
    assert lines["aime24"][1:3] == ["30", "integer"]
    assert lines["imo-answerbench"][1:3] == ["400", "math"]
    assert lines["gpqa-diamond"][1:3] == ["198", "choice"]
    assert lines["file"][1:3] == ["-", "math"]  # what its samples record unless --answer-type says otherwise
    code, _, err = cli("list", "task")
    assert "did you mean 'tasks'" in one_line_error(code, err)


def test_registry_aliases_and_suggestions():
    assert registry.get_entry("tasks", "aime2024").name == "aime24"
    with pytest.raises(HarnessError, match="did you mean 'beyondaime'"):
        registry.get("tasks", "beyondaim")
    plugin = r"(; if it is a plugin's verifier, load it with --plugin-dir DIR)?"  # when no plugin dir is loaded
    with pytest.raises(HarnessError, match=rf"^unknown verifier 'zzz'{plugin} \(run"):
        registry.get("verifiers", "zzz")


PLUGIN = '''
from dail_harness import registry
from dail_harness.records import Problem
from dail_harness.eval.task import Task

@registry.register("tasks", "toy-plugin-task")
class Toy(Task):
    """Two toy problems from a plugin directory."""
    name = "toy-plugin-task"
    answer_type = "integer"
    expected_count = 2
    def load_problems(self):
        return [Problem(id=str(i), problem=f"{i}+{i}?", answer=str(2 * i), answer_type="integer") for i in range(2)]
'''


def test_plugin_dir_task_is_listed_and_evaluates(cli, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "toy.py").write_text(PLUGIN)
    code, out, _ = cli("list", "tasks", "--plugin-dir", plugins)
    assert code == 0 and "toy-plugin-task" in out
    code, out, err = cli(
        "eval",
        "--task",
        "toy-plugin-task",
        "--model",
        "tiny-random",
        "--n",
        "2",
        "--max-tokens",
        "4",
        "--no-progress",
        "--grade-workers",
        "0",
        "--plugin-dir",
        plugins,
        "--out",
        tmp_path / "r",
    )
    assert code == 0, err
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["num_problems"] == 2


def test_broken_plugin_is_one_clear_error(cli, tmp_path):
    plugins = tmp_path / "broken"
    plugins.mkdir()
    (plugins / "bad.py").write_text("raise ImportError('no such thing')\n")
    code, _, err = cli("list", "--plugin-dir", plugins)
    assert "bad.py: plugin failed to load: ImportError: no such thing" in one_line_error(code, err)


def test_a_missing_run_directory_is_not_taken_for_a_hub_id(tmp_path, monkeypatch):
    from dail_harness.errors import HarnessError
    from dail_harness.models.loading import resolve_model

    monkeypatch.chdir(tmp_path)
    assert resolve_model("Qwen/Qwen2.5-7B-Instruct") == "Qwen/Qwen2.5-7B-Instruct"  # no local Qwen/: a hub id
    (tmp_path / "runs").mkdir()
    with pytest.raises(HarnessError, match="model directory not found: 'runs/dail'"):
        resolve_model("runs/dail")  # a typo'd run directory, not a hub id to download


@pytest.fixture
def isolated_registry():
    """Plugins loaded in a test must not stay registered for the tests after it (one process)."""
    import copy

    from dail_harness import registry

    saved = copy.deepcopy((registry._state.entries, registry._state.aliases)), set(registry._state.loaded_dirs)
    registry.load_builtins()
    yield
    (registry._state.entries, registry._state.aliases), registry._state.loaded_dirs = saved


COLLIDING = '''
from dail_harness import registry
from dail_harness.records import Problem
from dail_harness.eval.task import Task
from dail_harness.training.losses import TokenLoss

@registry.register("tasks", {name!r}, aliases={aliases!r})
class Mine(Task):
    """One problem of my own."""
    name = {name!r}
    answer_type = "integer"
    override = {override}
    def load_problems(self):
        return [Problem(id="mine", problem="1+1?", answer="2", answer_type="integer")]
'''


def plugin_dir(tmp_path, text: str, name: str = "p"):
    d = tmp_path / name
    d.mkdir()
    (d / "mine.py").write_text(text)
    return d


@pytest.mark.parametrize(
    ("name", "aliases", "key"), [("aime24", (), "aime24"), ("my-aime", ("aime24",), "aime24"), ("x", ("gpqa",), "gpqa")]
)
def test_a_plugin_name_or_alias_that_collides_is_an_error_naming_both(
    cli, tmp_path, isolated_registry, name, aliases, key
):
    d = plugin_dir(tmp_path, COLLIDING.format(name=name, aliases=aliases, override=False))
    code, _, err = cli("list", "tasks", "--plugin-dir", d)
    assert code == 2 and err.count("\n") == 1
    assert f"task name '{key}' is registered twice" in err and str(d / "mine.py") in err and "dail_harness.tasks" in err


def test_a_plugin_loss_named_like_a_built_in_is_refused(cli, tmp_path, isolated_registry):
    text = COLLIDING.format(name="t", aliases=(), override=False) + (
        '\n@registry.register("losses", "nll")\nclass MyNll(TokenLoss):\n    """Mine."""\n'
    )
    code, _, err = cli("list", "losses", "--plugin-dir", plugin_dir(tmp_path, text))
    assert code == 2 and "loss name 'nll' is registered twice" in err


def test_an_overriding_plugin_wins_whatever_loads_first_and_list_marks_it(cli, tmp_path, isolated_registry):
    from dail_harness import registry

    registry._state.entries["tasks"].clear()  # the plugin registers before the built-ins load back
    registry._state.aliases["tasks"].clear()
    registry._state.loaded_packages.discard("dail_harness.tasks")
    for module in [m for m in sys.modules if m.startswith("dail_harness.tasks.")]:
        del sys.modules[module]
    d = plugin_dir(tmp_path, COLLIDING.format(name="aime24", aliases=(), override=True))
    code, out, err = cli("list", "tasks", "--plugin-dir", d)
    assert code == 0, err
    line = next(line for line in out.splitlines() if line.startswith("aime24 "))
    assert "One problem of my own" in line and "[overrides dail_harness.tasks.aime]" in line
    code, _, err = cli(
        "eval",
        "--task",
        "aime24",
        "--model",
        "tiny-random",
        "--max-tokens",
        "2",
        "--no-progress",
        "--grade-workers",
        "0",
        "--plugin-dir",
        d,
        "--out",
        tmp_path / "r",
    )
    assert code == 0, err
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["num_problems"] == 1  # not the 30 real ones


def test_two_plugin_folders_of_the_same_name_are_two_sources(cli, tmp_path, isolated_registry):
    text = COLLIDING.format(name="same-task", aliases=(), override=False)
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    plugin_dir(a, text, "plugins"), plugin_dir(b, text, "plugins")
    code, _, err = cli("list", "tasks", "--plugin-dir", a / "plugins", "--plugin-dir", b / "plugins")
    assert code == 2 and "task name 'same-task' is registered twice" in err


def test_an_undeclared_plugin_task_still_takes_its_options(tmp_path, isolated_registry):
    from dail_harness.eval.task import Task, refuse_unused_options

    class Legacy(Task):
        name = "legacy"

    refuse_unused_options([Legacy()], {"anything": "1"})  # it reads self.options itself: no refusal


def test_the_registry_loads_without_vllm(tmp_path):
    """Without vLLM installed (the demo's environment) every built-in plugin module still imports: the vLLM ones
    import vLLM only when used."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['vllm'] = None\n"
        "from dail_harness import registry\n"
        "for kind in registry.KINDS:\n"
        "    registry.entries(kind)\n"
        "print(registry.get('rollouts', 'vllm').__name__, registry.get('backends', 'vllm').__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["VLLMMixedRollout", "VLLMBackend"]
