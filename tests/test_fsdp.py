"""`train --fsdp` (FSDP2 applied by the harness) with 2 CPU processes under torchrun: the same curve and weights as
one process, sharded checkpoints that resume, the final weights gathered (adapter, merged model, full model), and
sampling from the sharded policy (GRPO's rollouts on every process, evaluation on the main one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_baselines import problems
from test_training import write_dsyn

TINY = ["--model", "tiny-random", "--no-progress", "--device", "cpu"]
DAIL = ["train", "--method", "dail", "--batch-size", "1", "--lr", "5e-2", "--warmup-steps", "0"]
DAIL += ["--lr-schedule", "constant", "--max-length", "1024", "--lora-r", "8", "--lora-alpha", "16", *TINY]
# 3 prompts on 2 processes: 2 micro-batches of 4 samples on one, 1 on the other (FSDP's collectives must still
# meet); 2 iterations over each batch (old log-probs); a KL to the frozen reference (the sharded frozen copy)
GRPO = ["train", "--method", "grpo", "--group-size", "4", "--prompts-per-step", "3", "--max-tokens", "6"]
GRPO += ["--num-iterations", "2", "--beta", "0.04"]
GRPO += ["--lr", "1e-3", "--batch-size", "4", "--warmup-ratio", "0", "--lora-r", "0", "--max-steps", "2", *TINY]
GRPO += ["--grade-workers", "0"]
EVAL = ["--eval-task", "aime24", "--eval-every", "1", "--eval-n", "2", "--eval-limit", "2", "--eval-max-tokens", "4"]


def torchrun(argv: list) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "dail_harness"]
    proc = subprocess.run(
        [*cmd, *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def log_of(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def same_weights(a: Path, b: Path, atol: float = 1e-6) -> None:
    x, y = load_file(str(a)), load_file(str(b))
    assert sorted(x) == sorted(y)
    for k in x:
        torch.testing.assert_close(y[k], x[k], rtol=1e-4, atol=atol)


@pytest.mark.slow
def test_fsdp_dail_resumes_from_its_shards_and_equals_one_process(tmp_path, cli):
    """LoRA DAIL with an evaluation at every step: 2 steps, then a rerun to 4 from the sharded checkpoint, equals 4
    steps in one process (curve, evaluations, adapter, merged model)."""
    data = write_dsyn(tmp_path / "d.jsonl", n=8)
    common = [*DAIL, "--data", data, "--merge", *EVAL, "--grade-workers", "0"]  # the main rank evaluates alone
    assert cli(*common, "--grad-accum", "2", "--max-steps", "4", "--out", tmp_path / "one")[0] == 0
    sharded, common = tmp_path / "fsdp", [*common, "--grad-accum", "1"]  # a step: 2 examples either way
    torchrun([*common, "--fsdp", "--max-steps", "2", "--out", sharded])
    assert sorted(p.name for p in (sharded / "checkpoints" / "step-2").iterdir()) == ["shards", "state.pt"]
    torchrun([*common, "--fsdp", "--max-steps", "4", "--out", sharded])
    one, two = log_of(tmp_path / "one"), log_of(sharded)
    assert [r["step"] for r in two] == [1, 2, 3, 4]
    for a, b in zip(one, two):
        assert (a["tokens"], a["lr"], a["eval/aime24/pass@1"]) == (b["tokens"], b["lr"], b["eval/aime24/pass@1"])
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-7)
    same_weights(tmp_path / "one" / "adapter_model.safetensors", sharded / "adapter_model.safetensors")
    same_weights(tmp_path / "one" / "merged" / "model.safetensors", sharded / "merged" / "model.safetensors")


@pytest.mark.slow
def test_fsdp_grpo_with_every_weight_trained_samples_and_evaluates_the_sharded_policy(tmp_path, cli):
    """Full-weight GRPO with a KL to the frozen reference and 2 iterations per batch: every process samples its
    rollouts (and their old log-probs) from the whole weights, the processes run unequal numbers of micro-batches,
    the main one alone evaluates at each step; losses, rewards, evaluations and the saved model equal one
    process."""
    data = problems(tmp_path / "p.jsonl", n=8)
    examples = Path(__file__).parent.parent / "docs" / "examples"  # the reward plugin of problems()
    common = [*GRPO, *EVAL, "--backend", "hf", "--data", data, "--plugin-dir", examples]
    assert cli(*common, "--out", tmp_path / "one")[0] == 0
    torchrun([*common, "--fsdp", "--out", tmp_path / "fsdp"])
    one, two = log_of(tmp_path / "one"), log_of(tmp_path / "fsdp")
    assert len(one) == len(two) == 2
    for a, b in zip(one, two):
        assert (a["tokens"], a["completion_length"]) == (b["tokens"], b["completion_length"])
        assert b["reward"] == pytest.approx(a["reward"], rel=1e-9)
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-7)
        assert b["eval/aime24/pass@1"] == a["eval/aime24/pass@1"]
    # Adam divides by the gradient's own size, so a weight whose gradient is ~0 moves by up to lr either way with
    # the summation order: 5e-5 is 2.5% of two steps' largest move (lr 1e-3)
    same_weights(tmp_path / "one" / "model.safetensors", tmp_path / "fsdp" / "model.safetensors", atol=5e-5)


def test_fsdp_needs_a_launch_and_an_optimizer_that_works_on_shards(tmp_path, cli, monkeypatch):
    data = write_dsyn(tmp_path / "d.jsonl", n=2)
    code, _, err = cli(*DAIL, "--data", data, "--fsdp", "--out", tmp_path / "a")  # not launched
    assert code == 2 and "--fsdp shards the model over a launch's processes" in err
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    code, _, err = cli(*DAIL, "--data", data, "--fsdp", "--optimizer", "paged_adamw_8bit", "--out", tmp_path / "b")
    assert code == 2 and "works on whole tensors, not FSDP shards" in err
    code, out, _ = cli(*DAIL, "--data", data, "--fsdp", "--dry-run", "--out", tmp_path / "d")
    assert code == 0 and "the policy sharded over the 2 processes (FSDP2" in out
