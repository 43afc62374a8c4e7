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
