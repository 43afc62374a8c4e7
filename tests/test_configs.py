"""Every shipped config file is valid for its command: known keys, values in range, plugin options routed."""

from pathlib import Path

import pytest

from dail_harness.cli.options import load_config_file
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
    values = load_config_file(path, dict.fromkeys(allowed))  # an unknown key fails here, naming it
    values = {**GIVEN_ON_THE_COMMAND_LINE.get(path.relative_to(ROOT).as_posix(), {}), **values}
    wheres = {k: Where("--" + k, path=str(path), key=k) for k in values}
    own = {k: v for k, v in values.items() if k not in extra or k in {f.name for f, _ in fields_of(cls)}}
    cfg = build(cls, own, wheres)
    if command == "train":
        method, _ = resolve(cfg, {k: v for k, v in values.items() if k not in own}, wheres)
        refuse_unused(cfg, method.source, {k: w for k, w in wheres.items() if k in own})  # every key is used


def test_configs_exist():
    assert len(CONFIGS) >= 4
