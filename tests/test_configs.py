"""Every shipped config file is valid for its command: known keys, values in range, plugin options routed."""

from pathlib import Path

import pytest

from dail_harness.cli.options import load_config_file, refuse_ignored
from dail_harness.options import Where, build, fields_of

ROOT = Path(__file__).resolve().parent.parent / "configs"
CONFIGS = sorted(ROOT.rglob("*.yaml"))
# settings that a config leaves to the command line (the Makefile's demo gives them per run)
GIVEN_ON_THE_COMMAND_LINE = {"demo/eval.yaml": {"model": "tiny-random", "data": "seen.jsonl", "out": "runs/x"}}


def command_of(values: dict) -> str:
    return "train" if "method" in values else "generate" if "tau" in values or "mode" in values else "eval"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_builds_for_its_command(path):
    from dail_harness.cli.train import plugin_options
    from dail_harness.dsyn.generate import GenerateConfig
    from dail_harness.eval.pipeline import EvalConfig
    from dail_harness.training.config import TrainConfig
    from dail_harness.training.engine import resolve
    from dail_harness.training.run import refuse_unused

    raw = load_config_file(path, {k: None for k in __import__("yaml").safe_load(path.read_text())})
    command = command_of(raw)
    cls = {"train": TrainConfig, "generate": GenerateConfig, "eval": EvalConfig}[command]
    extra = {f.name for f, _ in plugin_options(None)} if command == "train" else set()
    allowed = {f.name for f, _ in fields_of(cls)} | extra
    spelled: dict[str, str] = {}
    values = load_config_file(path, dict.fromkeys(allowed), cls.SECTIONS, spelled, extra)  # an unknown key fails
    values = {**GIVEN_ON_THE_COMMAND_LINE.get(path.relative_to(ROOT).as_posix(), {}), **values}
    wheres = {k: Where("--" + k, path=str(path), key=spelled.get(k, k)) for k in values}
    own = {k: v for k, v in values.items() if k not in extra or k in {f.name for f, _ in fields_of(cls)}}
    cfg = build(cls, own, wheres)
    refuse_ignored(cfg, {k: w for k, w in wheres.items() if k in own})  # every key is used
    if command == "train":
        method, _ = resolve(cfg, {k: v for k, v in values.items() if k not in own}, wheres)
        refuse_unused(cfg, method, {k: w for k, w in wheres.items() if k in own})  # every key is used


def test_configs_exist():
    assert len(CONFIGS) >= 4


SECTIONED = """\
method: {name: grpo, group_size: 4, epsilon: 0.3}
model: tiny-random
data: d.jsonl
out: r
lora: {r: 8, alpha: 16}
sampling: {temperature: 0.6, top_p: 0.95, max_tokens: 64}
eval: {task: aime24, every: 5, n: 4, temperature: 0.0}
"""
FLAT = """\
method: grpo
group_size: 4
epsilon: 0.3
model: tiny-random
data: d.jsonl
out: r
lora_r: 8
lora_alpha: 16
temperature: 0.6
top_p: 0.95
max_tokens: 64
eval_task: aime24
eval_every: 5
eval_n: 4
eval_temperature: 0.0
"""


def _train_values(tmp_path, text):
    from dail_harness.cli.train import plugin_options
    from dail_harness.training.config import TrainConfig

    path = tmp_path / "c.yaml"
    path.write_text(text)
    plugin_keys = {f.name for f, _ in plugin_options(None)}
    allowed = dict.fromkeys({f.name for f, _ in fields_of(TrainConfig)} | plugin_keys)
    spelled: dict[str, str] = {}
    return load_config_file(path, allowed, TrainConfig.SECTIONS, spelled, plugin_keys), spelled


def test_config_sections_are_the_flat_keys(tmp_path):
    """`method:`, `loss:`, `sampling:`, `eval:` and `lora:` sections hold what the flat keys hold."""
    sectioned, spelled = _train_values(tmp_path, SECTIONED)
    flat, _ = _train_values(tmp_path, FLAT)
    assert sectioned == flat
    assert spelled["eval_n"] == "eval.n" and spelled["method"] == "method.name" and spelled["lora_r"] == "lora.r"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("method: grpo\ntemperature: 0.6\nsampling: {temperature: 0.7}\n", "field 'sampling.temperature': given twice"),
        ("method: grpo\nsampling: {gamma: 0.1}\n", "field 'sampling.gamma': unknown key"),
        ("method: {name: grpo, lr: 1.0e-5}\n", "field 'method.lr': not an option of a method plugin"),
        ("method: {name: grpo, group_sise: 8}\n", "not an option of a method plugin (did you mean 'group_size'?)"),
        (
            "method: grpo\neval: {tsk: aime24}\n",
            "field 'eval.tsk': unknown key (did you mean 'task'?); valid keys: every, limit",
        ),
    ],
)
def test_a_bad_section_key_is_one_error_naming_it(tmp_path, text, message):
    from dail_harness.errors import HarnessError

    with pytest.raises(HarnessError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        _train_values(tmp_path, text)


def test_a_sectioned_value_out_of_range_names_its_key(tmp_path, cli):
    config = tmp_path / "c.yaml"
    config.write_text("method: grpo\nmodel: tiny-random\ndata: d.jsonl\nout: r\neval: {task: aime24, n: 0}\n")
    code, _, err = cli("train", "--config", config)
    assert code == 2 and "eval.n" in err and ">= 1" in err, err
