"""The CONTRIBUTING.md examples (docs/examples) are real plugins: each one loads and runs here."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
TINY_TRAIN = ["--model", "tiny-random", "--no-progress", "--device", "cpu", "--lora-r", "8", "--lora-alpha", "16"]


@pytest.fixture(scope="module")
def loaded():
    from dail_harness import registry

    registry.load_plugin_dir(EXAMPLES)
    return registry


def test_every_example_is_registered(cli):
    code, out, err = cli("list", "--plugin-dir", EXAMPLES)
    assert code == 0, err
    for name in ("toy-sums", "digit-share", "smoothed-nll", "answer-only", "reinforce"):
        assert name in out


def test_task_example_evaluates(cli, tmp_path):
    code, out, err = cli(
        "eval",
        "--plugin-dir",
        EXAMPLES,
        "--task",
        "toy-sums",
        "--model",
        "tiny-random",
        "--n",
        "2",
        "--max-tokens",
        "4",
        "--no-progress",
        "--grade-workers",
        "0",
        "--out",
        tmp_path / "r",
    )
    assert code == 0, err
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["num_problems"] == 8 and summary["task"] == "toy-sums"


def test_verifier_example_grades_with_partial_credit_and_a_canonical_form(loaded):
    from dail_harness.verifiers.base import get_verifier

    v = get_verifier("digit-share")
    verdict = v("ab 0012", "12")
    assert verdict.score == pytest.approx(4 / 6) and verdict.correct and verdict.answer_key == "12"
    assert verdict.reward == pytest.approx(4 / 6)
    assert v("   ", "1").no_answer and v("   ", "1").reward == 0.0


def test_loss_example_matches_an_explicit_float64_computation(loaded):
    from dail_harness.training.losses import chunked_sums, make_loss

    g = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(4, 9, bias=False).double()
    hs = torch.randn(5, 4, generator=g, dtype=torch.float64)
    targets = torch.randint(0, 9, (5,), generator=g)
    loss = make_loss("smoothed-nll", {"eps": "0.25"})
    out = loss.combine(chunked_sums(hs, {}, targets, head, loss.terms_fn, loss.terms, 2), len(targets))
    logp = torch.log_softmax(head(hs), -1).detach().numpy()
    expected = np.mean([0.75 * -logp[i, targets[i]] + 0.25 * -logp[i].mean() for i in range(5)])
    assert float(out.loss.detach()) == pytest.approx(expected, rel=1e-12)


def test_offline_method_example_trains_with_the_loss_example(cli, tmp_path):
    data = tmp_path / "expert.jsonl"
    data.write_text(
        "".join(
            json.dumps({"problem_id": f"p{i}", "problem": f"{i} + {i}?", "solution": "...", "answer": str(2 * i)})
            + "\n"
            for i in range(4)
        )
    )
    code, out, err = cli(
        "train",
        "--plugin-dir",
        EXAMPLES,
        "--method",
        "answer-only",
        "--loss",
        "smoothed-nll",
        "--eps",
        "0.05",
        "--data",
        data,
        "--out",
        tmp_path / "run",
        "--epochs",
        "8",
        "--grad-accum",
        "1",
        "--lr",
        "1e-2",
        "--lora-targets",
        "q_proj,v_proj,lm_head",
        *TINY_TRAIN,
    )
    assert code == 0, err
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert np.mean([r["nll"] for r in log[-4:]]) < 0.5 * np.mean([r["nll"] for r in log[:4]])
    assert np.mean([r["loss"] for r in log[-4:]]) < np.mean([r["loss"] for r in log[:4]])
    config = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert config["loss_options"] == {"eps": 0.05}


@pytest.mark.slow
def test_online_method_example_learns_the_verifier_reward(cli, tmp_path):
    """REINFORCE on tiny-random with the digit-share reward: the mean reward rises clearly. (LoRA on the
    output head too: a random tiny model learns output preferences fastest there.)"""
    data = tmp_path / "problems.jsonl"
    data.write_text(
        "".join(
            json.dumps(
                {
                    "problem_id": f"p{i}",
                    "problem": f"What is {i} + {i}?",
                    "answer": str(2 * i),
                    "answer_type": "digit-share",
                }
            )
            + "\n"
            for i in range(8)
        )
    )
    code, out, err = cli(
        "train",
        "--plugin-dir",
        EXAMPLES,
        "--method",
        "reinforce",
        "--data",
        data,
        "--out",
        tmp_path / "run",
        "--epochs",
        "12",
        "--prompts-per-step",
        "8",
        "--group-size",
        "8",
        "--max-tokens",
        "6",
        "--lr",
        "2e-2",
        "--batch-size",
        "32",
        "--warmup-ratio",
        "0",
        "--grade-workers",
        "0",
        "--lora-targets",
        "q_proj,v_proj,lm_head",
        *TINY_TRAIN,
    )
    assert code == 0, err
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 12
    first, last = np.mean([r["reward"] for r in log[:3]]), np.mean([r["reward"] for r in log[-3:]])
    assert first < 0.3 and last > first + 0.4, [round(r["reward"], 3) for r in log]
    assert all(r["sampling_tokens_per_s"] > 0 and r["update_tokens_per_s"] > 0 for r in log)
    assert (tmp_path / "run" / "adapter_config.json").exists()


def test_a_plugins_options_are_flags_and_config_keys_of_train(cli, tmp_path):
    """A third-party loss's option (`eps` of smoothed-nll, loaded with --plugin-dir) is a first-class flag and
    config key like a built-in one's: listed by `--method M --loss L --help`, range-checked, and routed to it."""
    chosen = ["train", "--plugin-dir", EXAMPLES, "--method", "answer-only", "--loss", "smoothed-nll", "--model", "m"]
    code, out, _ = cli(*chosen, "--help")
    assert code == 0 and "--eps" in out and "--gamma" not in out and "--temperature" not in out
    code, _, err = cli(*chosen, "--eps", "2", "--data", tmp_path / "d.jsonl", "--out", tmp_path / "r")
    assert code == 2 and err.startswith("error: --eps") and "<= 1, got 2" in err, err
    config = tmp_path / "c.yaml"
    config.write_text(
        f"plugin_dir: [{EXAMPLES}]\nmethod: answer-only\nloss: smoothed-nll\neps: 2\ndata: d.jsonl\nmodel: m\n"
    )
    code, _, err = cli("train", "--config", config, "--out", tmp_path / "r")
    assert code == 2 and str(config) in err and "eps" in err and "<= 1, got 2" in err, err


def test_a_plugin_option_named_like_a_train_setting_is_refused(cli, tmp_path):
    """Its flag could only ever set the engine's setting: refused when the plugin is chosen, naming its file."""
    (tmp_path / "shadow.py").write_text(
        "from dataclasses import dataclass\n"
        "from dail_harness import registry\n"
        "from dail_harness.options import option\n"
        "from dail_harness.training.losses import TokenLoss\n"
        "@dataclass\n"
        "class ShadowOptions:\n"
        "    temperature: float = option(1.0)\n"
        "@registry.register('losses', 'shadow-nll')\n"
        "class ShadowNLL(TokenLoss):\n"
        "    Options = ShadowOptions\n"
    )
    code, _, err = cli("train", "--plugin-dir", tmp_path, "--method", "nll", "--loss", "shadow-nll", "--help")
    assert code == 2 and "loss 'shadow-nll'" in err and "shadow.py" in err and "'temperature'" in err, err


def test_a_loss_option_named_like_its_methods_is_refused(cli, tmp_path):
    """Both would answer to one flag, and the method took it: the loss kept its default unnoticed."""
    (tmp_path / "twin.py").write_text(
        "from dataclasses import dataclass\n"
        "from dail_harness import registry\n"
        "from dail_harness.options import option\n"
        "from dail_harness.training.losses import TokenLoss\n"
        "@dataclass\n"
        "class TwinOptions:\n"
        "    group_size: int = option(1)\n"
        "@registry.register('losses', 'twin-pg')\n"
        "class TwinPG(TokenLoss):\n"
        "    extras = ('advantage',)\n"
        "    Options = TwinOptions\n"
    )
    argv = ["train", "--plugin-dir", tmp_path, "--method", "grpo", "--loss", "twin-pg", "--group-size", "2"]
    code, _, err = cli(*argv, "--model", "tiny-random", "--data", tmp_path / "twin.py", "--out", tmp_path / "o")
    assert code == 2 and "method 'grpo' and loss 'twin-pg' both have an option 'group_size'" in err, err
