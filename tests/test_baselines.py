"""The paper's baselines on the shared engine: GRPO and NuRL learn a reward, NuRL hints exactly the groups
that all fail, STaR keeps only verified rationales, hints never reveal the answer, runs resume exactly."""

import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES, TEST_PLUGINS = ROOT / "docs" / "examples", ROOT / "tests" / "plugins"
TINY = [
    "--model",
    "tiny-random",
    "--no-progress",
    "--device",
    "cpu",
    "--lora-r",
    "8",
    "--lora-alpha",
    "16",
    "--grade-workers",
    "0",
]
# a tiny random model learns output preferences fastest through its head
RL = [
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
    "--lora-targets",
    "q_proj,v_proj,lm_head",
    "--plugin-dir",
    str(EXAMPLES),
]


def problems(path, n=8, answer_type="digit-share"):
    path.write_text(
        "".join(
            json.dumps(
                {
                    "problem_id": f"p{i}",
                    "problem": f"What is {i} + {i}?",
                    "answer": str(2 * i),
                    "solution": f"{i} + {i} = {2 * i}.",
                    "answer_type": answer_type,
                }
            )
            + "\n"
            for i in range(n)
        )
    )
    return path


def log_of(run):
    return [json.loads(line) for line in (Path(run) / "train_log.jsonl").read_text().splitlines()]


def rises(log, key="reward", by=0.3):
    first, last = np.mean([r[key] for r in log[:3]]), np.mean([r[key] for r in log[-3:]])
    assert last > first + by, [round(r[key], 3) for r in log]


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["--loss-type", "grpo", "--beta", "0.02", "--num-iterations", "2"]])
def test_grpo_learns_the_reward(cli, tmp_path, extra):
    data = problems(tmp_path / "p.jsonl")
    code, out, err = cli(
        "train", "--method", "grpo", "--data", data, "--out", tmp_path / "run", "--epochs", "10", *RL, *TINY, *extra
    )
    assert code == 0, err
    log = log_of(tmp_path / "run")
    rises(log)
    for key in (
        "reward",
        "reward_std",
        "frac_reward_zero_std",
        "solved_all",
        "solved_none",
        "completion_length",
        "clip_ratio",
        "sampling_tokens_per_s",
        "update_tokens_per_s",
    ):
        assert key in log[-1]
    if extra:
        assert "kl" in log[-1] and log[-1]["iteration"] == 1 and len(log) == 20


@pytest.mark.slow
def test_nurl_learns_and_logs_its_hints(cli, tmp_path):
    data = problems(tmp_path / "p.jsonl")
    hints = tmp_path / "hints.jsonl"
    hints.write_text(
        "".join(json.dumps({"problem_id": f"p{i}", "hint": "Answer with digits only."}) + "\n" for i in range(8))
    )
    code, out, err = cli(
        "train",
        "--method",
        "nurl",
        "--hints",
        hints,
        "--data",
        data,
        "--out",
        tmp_path / "run",
        "--epochs",
        "10",
        *RL,
        *TINY,
    )
    assert code == 0, err
    log = log_of(tmp_path / "run")
    rises(log)
    assert log[0]["hinted_groups"] > 0 and all(0 <= r["hinted_solve_rate"] <= 1 for r in log)


class FakeContext:
    """Stands in for the engine's context: canned completions, a grader that reads them, one process."""

    def __init__(self, answers):
        from dail_harness.training.config import TrainConfig

        self.cfg = TrainConfig(method="nurl", model="m", data="d", out="o", max_tokens=8, batch_size=4)
        self.answers, self.calls, self.prompts = answers, [], {}

    def sample(self, prompts, n, tag=""):
        from dail_harness.backends.base import Completion

        self.calls.append((tag, dict(prompts), n))
        out = {}
        for key in prompts:
            texts = self.answers[(tag, key)]
            out[key] = [Completion(f"{tag}{key}", i, texts[i], 3, 5, "stop", token_ids=[1, 2, 3]) for i in range(n)]
        return out

    def grade(self, completions, golds, types_):
        from dail_harness.verifiers.base import get_verifier

        return [get_verifier(t)(c.text, g) for c, g, t in zip(completions, golds, types_)]

    def gather(self, values):
        return list(values)

    def prompt_ids(self, prompt):
        self.prompts[len(self.prompts)] = prompt
        return [7, 8]

    def example(self, key, prompt_ids, completion, **extras):
        from dail_harness.training.examples import sampled_example

        return types.SimpleNamespace(
            key=key,
            prompt=self.prompts[len(self.prompts) - 1],
            inner=sampled_example(key, prompt_ids, completion.token_ids, extras),
        )


def test_nurl_hints_exactly_the_groups_that_all_fail_and_never_reveals_the_answer(tmp_path):
    from dail_harness.training.recipes import make_method

    rows = [
        {
            "problem_id": f"p{i}",
            "problem": f"Problem {i}.",
            "answer": str(10 + i),
            "answer_type": "integer",
            "_line": i + 1,
        }
        for i in range(3)
    ]
    hints = tmp_path / "hints.jsonl"
    hints.write_text(
        "".join(json.dumps({"problem_id": f"p{i}", "hint": f"Think about case {i}."}) + "\n" for i in range(3))
    )
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "_line"}) + "\n" for r in rows))
    method = make_method("nurl", {"hints": str(hints), "group_size": "3"})
    method.load_rows(data)
    right, wrong = "\\boxed{%d}", "\\boxed{0}"
    answers = {
        ("", "p0"): [right % 10, wrong, wrong],  # solved once: no hint
        ("", "p1"): [wrong, wrong, wrong],  # all fail: hinted
        ("", "p2"): [wrong] * 3,  # all fail: hinted
        ("hint", "p1"): [right % 11, wrong],
        ("hint", "p2"): [wrong, wrong],
    }
    ctx = FakeContext(answers)
    rollout = method.rollout(ctx, rows)
    hinted_calls = [(prompts, n) for tag, prompts, n in ctx.calls if tag == "hint"]
    assert [list(p) for p, _ in hinted_calls] == [["p1"], ["p2"]] and all(n == 2 for _, n in hinted_calls)
    assert rollout.stats["hinted_groups"] == pytest.approx(2 / 3)
    assert rollout.stats["hinted_solve_rate"] == pytest.approx(1 / 4)
    hinted = [e for e in rollout.examples if e.key.endswith("#hinted")]
    assert len(hinted) == 4 and len(rollout.examples) == 9  # one unhinted sample stays in each hinted group
    for e in rollout.examples:
        row = next(r for r in rows if e.key.startswith(r["problem_id"]))
        assert ("Hint: Think about case" in e.prompt) == e.key.endswith("#hinted")
        assert row["answer"] not in e.prompt
    # the hinted group's advantages are computed on its new members: the one correct hinted sample leads
    p1 = [e for e in rollout.examples if e.key.startswith("p1")]
    advantages = [e.inner.extras["advantage"][0] for e in p1]
    assert advantages[1] > 0 and advantages[0] < 0 and advantages[2] < 0


def test_nurl_refuses_hints_that_reveal_the_answer_or_are_missing(tmp_path):
    from dail_harness.errors import HarnessError
    from dail_harness.training.recipes import make_method

    data = problems(tmp_path / "p.jsonl", n=2, answer_type="integer")
    hints = tmp_path / "h.jsonl"
    hints.write_text(json.dumps({"problem_id": "p0", "hint": "Double it."}) + "\n")
    with pytest.raises(HarnessError, match="no hint for problem 'p1'"):
        make_method("nurl", {"hints": str(hints)}).load_rows(data)
    hints.write_text(
        json.dumps({"problem_id": "p0", "hint": "Double it."})
        + "\n"
        + json.dumps({"problem_id": "p1", "hint": "It is 2."})
        + "\n"
    )
    with pytest.raises(HarnessError, match=r"h\.jsonl:2, field 'hint': the hint of 'p1' reveals its answer"):
        make_method("nurl", {"hints": str(hints)}).load_rows(data)


def test_hints_are_redrawn_until_they_hide_the_answer_and_resume(tmp_path):
    """`--style solution`: one step from the problem, the expert solution and the answer (today's prompt and
    rows); leaks are drawn again; a rerun draws nothing."""
    from dail_harness.backends.base import Completion
    from dail_harness.dsyn.hints import HINT_PROMPT, HintsConfig, generate_hints, reveals_answer

    data = tmp_path / "e.jsonl"
    data.write_text(
        "".join(
            json.dumps({"problem_id": f"p{i}", "problem": f"Find {i}.", "solution": f"Sol {i}.", "answer": 100 + i})
            + "\n"
            for i in range(3)
        )
    )

    class Scripted:
        """Attempt 0 leaks p0's answer and boxes p1's; p2 always leaks."""

        def __init__(self):
            self.requests = []
            self.prompts = {}

        def generate(self, requests, params):
            self.requests.append([(r.request_id, r.sample_indices[0]) for r in requests])
            self.prompts.update({r.request_id: r.prompt for r in requests})
            texts = {
                ("p0", 0): "Hint: the answer is 100.",
                ("p1", 0): "Hint: \\boxed{7}",
                ("p2", 0): "Hint: 102",
                ("p0", 1): "Hint: consider parity.",
                ("p1", 1): "Hint: use symmetry.",
                ("p2", 1): "Hint: 102!",
            }
            yield [
                Completion(
                    r.request_id,
                    r.sample_indices[0],
                    texts[(r.request_id.split("/")[1], r.sample_indices[0])],
                    3,
                    3,
                    "stop",
                )
                for r in requests
            ]

    out = tmp_path / "h.jsonl"
    cfg = HintsConfig(data=str(data), model="m", out=str(out), attempts=2, progress=False, style="solution")
    backend = Scripted()
    stats = generate_hints(cfg, backend)
    rows = {r["problem_id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert rows["p0"] == {"problem_id": "p0", "hint": "consider parity.", "attempts": 2, "rejected": 1, "model": "m"}
    assert rows["p1"]["hint"] == "use symmetry." and rows["p2"]["hint"] is None and rows["p2"]["rejected"] == 2
    assert stats == {"problems": 3, "new": 3, "without_hint": 1, "rejected": 4}
    assert backend.requests[1] == [("hint/p0", 1), ("hint/p1", 1), ("hint/p2", 1)]
    assert backend.prompts["hint/p1"] == (
        HINT_PROMPT.replace("{problem}", "Find 1.").replace("{solution}", "Sol 1.").replace("{answer}", "101")
    )
    assert HINT_PROMPT.startswith("You are helping a student who is stuck on a competition mathematics problem.")
    assert not any(h["hint"] and reveals_answer(h["hint"], str(100 + i)) for i, h in enumerate(rows.values()))
    assert not (tmp_path / "h.jsonl.explanations.jsonl").exists()
    assert "style" not in json.loads((tmp_path / "h.jsonl.settings.json").read_text())  # as before the two steps
    assert generate_hints(cfg, Scripted())["new"] == 0  # a rerun resumes: nothing left to draw


def test_an_edited_template_file_is_a_changed_setting(cli, tmp_path):
    """Records held the template's path only: editing the file and resuming mixed hints of two prompts."""
    data = problems(tmp_path / "p.jsonl", n=2)
    template = tmp_path / "hint.txt"
    template.write_text("Give a hint for {problem} without the answer; explanation: {explanation}")
    args = ["data", "hints", "--data", data, "--model", "tiny-random", "--out", tmp_path / "h.jsonl"]
    args += ["--prompt-template", template, "--max-tokens", "4", "--explain-max-tokens", "4", "--no-progress"]
    assert cli(*args, "--limit", "1")[0] == 0
    template.write_text("A different hint prompt for {problem}; explanation: {explanation}")
    code, _, err = cli(*args)
    assert code == 2 and "different settings (prompt_template_sha256: '" in err, err


def test_data_hints_command_on_tiny_random(cli, tmp_path):
    data = tmp_path / "e.jsonl"
    data.write_text(
        "".join(
            json.dumps({"problem_id": f"p{i}", "problem": f"Find {i}.", "solution": "\\boxed{5}"}) + "\n"
            for i in range(2)
        )
    )
    code, out, err = cli(
        "data",
        "hints",
        "--data",
        data,
        "--model",
        "tiny-random",
        "--out",
        tmp_path / "h.jsonl",
        "--max-tokens",
        "8",
        "--explain-max-tokens",
        "8",
        "--attempts",
        "2",
        "--no-progress",
    )
    assert code == 0, err
    assert "2 problems, 2 new rows" in out
    explained = [json.loads(line) for line in (tmp_path / "h.jsonl.explanations.jsonl").read_text().splitlines()]
    assert {e["problem_id"] for e in explained} == {"p0", "p1"}  # NuRL's step 1 ran for each problem
    code, _, err = cli(
        "data",
        "hints",
        "--data",
        data,
        "--model",
        "tiny-random",
        "--out",
        tmp_path / "h.jsonl",
        "--max-tokens",
        "9",
        "--explain-max-tokens",
        "8",
        "--attempts",
        "2",
        "--no-progress",
    )
    assert code == 2 and "max_tokens: 8 -> 9" in err


@pytest.mark.slow
def test_star_keeps_only_verified_rationales_without_the_hint(cli, tmp_path):
    from dail_harness.verifiers.base import get_verifier

    data = problems(tmp_path / "p.jsonl", answer_type="coin")
    code, out, err = cli(
        "train",
        "--method",
        "star",
        "--iterations",
        "2",
        "--data",
        data,
        "--out",
        tmp_path / "run",
        "--max-tokens",
        "8",
        "--epochs",
        "1",
        "--grad-accum",
        "1",
        "--plugin-dir",
        TEST_PLUGINS,
        *TINY,
    )
    assert code == 0, err
    assert "iter-0:" in out and "iter-1:" in out  # numbered as their directories
    coin = get_verifier("coin")
    for it in (0, 1):
        it_dir = tmp_path / "run" / f"iter-{it}"
        generated = [json.loads(line) for line in (it_dir / "generated.jsonl").read_text().splitlines()]
        kept = [json.loads(line) for line in (it_dir / "train.jsonl").read_text().splitlines()]
        counts = json.loads((it_dir / "generated.json").read_text())
        assert len(generated) == 8 and counts["kept"] == len(kept) == sum(1 for g in generated if g["trace"])
        assert counts.get("direct", 0) + counts.get("rationalized", 0) + counts.get("dropped", 0) == 8
        assert counts.get("rationalized", 0) > 0 and counts.get("dropped", 0) > 0
        assert all(coin(k["trace"], k["answer"]).correct for k in kept)  # only verified rationales
        assert all("Hint" in g["hinted_prompt"] for g in generated if g["source"] != "direct")
        config = json.loads((it_dir / "train_config.json").read_text())
        assert config["iteration"] == it
    # training prompts are the plain prompt: the hint never reaches the student context
    from dail_harness.training.recipes import make_method

    method = make_method("star")
    for row in kept:
        prompt = method.prompts(row, (), None)["student"]
        assert "Hint" not in prompt and row["problem"] in prompt
    assert (tmp_path / "run" / "adapter_config.json").exists()
    assert len((tmp_path / "run" / "iterations.jsonl").read_text().splitlines()) == 2


@pytest.mark.slow
def test_grpo_killed_and_resumed_equals_the_uninterrupted_run(cli, tmp_path):
    data = problems(tmp_path / "p.jsonl")
    args = [
        "train",
        "--method",
        "grpo",
        "--data",
        str(data),
        "--epochs",
        "4",
        "--save-every",
        "2",
        "--group-size",
        "4",
        "--prompts-per-step",
        "4",
        "--num-iterations",
        "2",
        *[a for a in RL[4:]],
        *TINY[:-2],
    ]
    assert cli(*args, "--grade-workers", "0", "--out", tmp_path / "a")[0] == 0
    out = tmp_path / "b"
    cmd = [sys.executable, "-m", "dail_harness", *args, "--grade-workers", "0", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "checkpoints" / "step-8" / "state.pt").exists():
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert any((out / "checkpoints").glob("step-*"))
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    ref, got = log_of(tmp_path / "a"), log_of(out)
    assert [r["step"] for r in got] == [r["step"] for r in ref] == list(range(1, 17))
    for a, b in zip(ref, got):
        for key in ("loss", "reward", "clip_ratio"):
            assert b[key] == pytest.approx(a[key], rel=1e-6, abs=1e-9), key
    from safetensors.torch import load_file

    wa, wb = (
        load_file(str(tmp_path / "a" / "adapter_model.safetensors")),
        load_file(str(out / "adapter_model.safetensors")),
    )
    assert wa.keys() == wb.keys() and all(np.allclose(wa[k].numpy(), wb[k].numpy(), atol=1e-6) for k in wa)


@pytest.mark.slow
def test_grpo_on_two_ddp_processes_gives_the_single_process_curve(cli, tmp_path):
    data = problems(tmp_path / "p.jsonl")
    common = [
        "train",
        "--method",
        "grpo",
        "--data",
        str(data),
        "--epochs",
        "2",
        "--group-size",
        "4",
        "--prompts-per-step",
        "4",
        "--loss-type",
        "dapo",
        "--scale-rewards",
        "batch",
        *RL[4:],
        *TINY,
    ]
    assert cli(*common, "--out", tmp_path / "one")[0] == 0
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    subprocess.run(
        # --standalone: a free port (the suite runs two tests at a time)
        [
            torchrun,
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "dail_harness",
            *map(str, common),
            "--out",
            str(tmp_path / "two"),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=600,
    )
    one, two = log_of(tmp_path / "one"), log_of(tmp_path / "two")
    assert len(one) == len(two) == 4
    for a, b in zip(one, two):
        assert (a["tokens"], a["lr"]) == (b["tokens"], b["lr"])
        assert b["reward"] == pytest.approx(a["reward"], rel=1e-9)
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-8)


def test_grpo_with_every_weight_trained(cli, tmp_path):
    """--lora-r 0 (the paper's RL runs most likely trained all weights): no adapter, a full model saved."""
    data = problems(tmp_path / "p.jsonl", n=2)
    code, _, err = cli(
        "train",
        "--method",
        "grpo",
        "--data",
        data,
        "--out",
        tmp_path / "run",
        "--max-steps",
        "1",
        "--prompts-per-step",
        "2",
        "--group-size",
        "2",
        "--max-tokens",
        "4",
        "--plugin-dir",
        EXAMPLES,
        *TINY[:5],
        "--lora-r",
        "0",
        "--grade-workers",
        "0",
    )
    assert code == 0, err
    assert (tmp_path / "run" / "config.json").exists() and not (tmp_path / "run" / "adapter_config.json").exists()


@pytest.mark.parametrize("mu, steps", [(1, 5), (2, 3)])
def test_online_max_steps_counts_optimizer_steps_past_the_epochs(cli, tmp_path, mu, steps):
    """--max-steps overrides --epochs (3 prompts, 2 per step: an epoch is 2 generation batches) and counts
    optimizer steps, each generation batch serving mu of them."""
    data = problems(tmp_path / "p.jsonl", n=3)
    code, out, err = cli(
        "train",
        "--method",
        "grpo",
        "--data",
        data,
        "--out",
        tmp_path / "run",
        "--epochs",
        "1",
        "--max-steps",
        steps,
        "--num-iterations",
        mu,
        "--prompts-per-step",
        "2",
        "--group-size",
        "2",
        "--max-tokens",
        "2",
        "--plugin-dir",
        EXAMPLES,
        *TINY,
    )
    assert code == 0, err
    log = log_of(tmp_path / "run")
    assert [r["step"] for r in log] == list(range(1, steps + 1))
    assert [(r["epoch"], r["generation"]) for r in log] == [(g // 2, g) for g in range(steps) for _ in range(mu)][
        :steps
    ]
    batches = -(-steps // mu)  # generation batches of 2 prompts, then the epoch's last one
    epochs = sum(2 if g % 2 == 0 else 1 for g in range(batches)) / 3  # passes over the 3 prompts, partial ones too
    assert f"trained {steps} steps ({epochs:.3g} epoch{'s' * (epochs != 1)})" in out, out


def test_star_names_an_iteration_as_its_directory(cli, tmp_path):
    data = problems(tmp_path / "p.jsonl", n=2, answer_type="math")  # 2 tokens never hold a boxed answer
    code, _, err = cli(
        "train", "--method", "star", "--data", data, "--out", tmp_path / "run", "--max-tokens", "2", *TINY
    )
    assert code == 2 and "iter-0: the method kept nothing to train on" in err and "iteration 1" not in err
    assert (tmp_path / "run" / "iter-0" / "generated.jsonl").exists()
    # the generation holds rows of --max-tokens 2: a rerun with other settings would have trained on them
    code, _, err = cli(
        "train", "--method", "star", "--data", data, "--out", tmp_path / "run", "--max-tokens", "64", *TINY
    )
    assert code == 2 and "holds a training run with different settings (max_tokens: 2 -> 64)" in err, err


@pytest.mark.parametrize("drop, steps, samples", [(True, 4, 16), (False, 6, 20)])
def test_online_drop_last_leaves_out_each_epochs_partial_prompt_batch(cli, tmp_path, drop, steps, samples):
    """5 prompts, 2 a step, 2 epochs: verl's drop_last gives 2 steps an epoch (the fifth prompt waits for the
    next epoch's order), TRL's reading 3 (the last with one prompt)."""
    data = problems(tmp_path / "p.jsonl", n=5)
    code, out, err = cli(
        "train",
        "--method",
        "grpo",
        "--data",
        data,
        "--out",
        tmp_path / "run",
        "--epochs",
        "2",
        "--drop-last" if drop else "--no-drop-last",
        "--prompts-per-step",
        "2",
        "--group-size",
        "2",
        "--max-tokens",
        "2",
        "--plugin-dir",
        EXAMPLES,
        *TINY,
    )
    assert code == 0, err
    log = log_of(tmp_path / "run")
    assert [r["epoch"] for r in log] == [e for e in (0, 1) for _ in range(steps // 2)]
    assert f"trained {steps} steps on {samples} examples" in out  # 2 samples of each prompt a step took


def star_run(cli, tmp_path, monkeypatch, *flags):
    """A STaR run in this process that records each iteration's trainable weights right after they are set up,
    and the temperature and top-p of every sampling call."""
    from dail_harness.backends.hf import HFBackend
    from dail_harness.training.engine import Trainer

    starts, sampled = [], []
    build, generate = Trainer.build, HFBackend.generate

    def recording_build(self, total_steps):
        build(self, total_steps)
        starts.append({k: v.detach().clone() for k, v in self.policy.state_dict().items()})

    def recording_generate(self, requests, params):
        sampled.append((params.temperature, params.top_p))
        return generate(self, requests, params)

    monkeypatch.setattr(Trainer, "build", recording_build)
    monkeypatch.setattr(HFBackend, "generate", recording_generate)
    data = problems(tmp_path / "p.jsonl", n=4, answer_type="coin")
    args = ["train", "--method", "star", "--data", data, "--out", tmp_path / "run", "--max-tokens", "4"]
    code, out, err = cli(*args, "--grad-accum", "1", "--plugin-dir", TEST_PLUGINS, *TINY, *flags)
    assert code == 0, err
    return starts, sampled, out


def test_star_grows_its_steps_restarts_from_the_base_and_samples_as_configured(cli, tmp_path, monkeypatch):
    """STaR's schedule: iteration r trains int(first x growth^r) steps (2, 3, 4 for 2 and 1.5: int, not ceil),
    each from the base model (a fresh adapter: B = 0, the same initialisation every iteration), sampling at the
    configured temperature and top-p (STaR's near-greedy 0.01 / 0.9)."""
    flags = ["--iterations", "3", "--max-steps", "2", "--steps-growth", "1.5", "--temperature", "0.01"]
    starts, sampled, out = star_run(cli, tmp_path, monkeypatch, *flags, "--top-p", "0.9")
    run = tmp_path / "run"
    assert [len(log_of(run / f"iter-{r}")) for r in range(3)] == [2, 3, 4]
    history = [json.loads(line) for line in (run / "iterations.jsonl").read_text().splitlines()]
    assert [h["steps"] for h in history] == [2, 3, 4] and "iter-2:" in out and "; 4 steps" in out
    assert len(starts) == 3
    for start in starts[1:]:
        assert start.keys() == starts[0].keys()
        assert all(torch.equal(start[k], starts[0][k]) for k in start)
        assert all(not v.any() for k, v in start.items() if "lora_B" in k)  # the adapter adds nothing: the base
    assert sampled and set(sampled) == {(0.01, 0.9)}


def test_star_continues_from_the_previous_iteration_when_asked(cli, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    starts, _, _ = star_run(
        cli,
        tmp_path,
        monkeypatch,
        "--iterations",
        "2",
        "--max-steps",
        "1",
        "--warmup-steps",
        "0",
        "--train-from",
        "previous",
    )
    ended = load_file(str(tmp_path / "run" / "iter-0" / "adapter_model.safetensors"))
    assert starts[1].keys() == ended.keys()
    assert all(torch.equal(starts[1][k], ended[k]) for k in ended)
    assert any(not torch.equal(starts[1][k], starts[0][k]) for k in ended)  # iteration 0 moved the adapter


def test_star_steps_growth_needs_the_first_iterations_steps(cli, tmp_path):
    data = problems(tmp_path / "p.jsonl", n=2)
    code, _, err = cli(
        "train", "--method", "star", "--data", data, "--out", tmp_path / "run", "--steps-growth", "1.2",
        "--iterations", "2", *TINY,
    )  # fmt: skip
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: --steps-growth needs --max-steps")
    assert not (tmp_path / "run").exists()  # refused before anything is written
    for later in (["--steps-growth", "1.2", "--max-steps", "2"], ["--train-from", "previous"]):
        code, _, err = cli("train", "--method", "star", "--data", data, "--out", tmp_path / "run", *later, *TINY)
        assert code == 2 and "--iterations > 1 uses it" in err.strip().splitlines()[-1], err


def test_online_sampling_takes_top_k():
    """--top-k reaches the live policy's sampler: with k = 1 every sample of a group is the greedy one."""
    from dail_harness import registry
    from dail_harness.options import build
    from dail_harness.training.config import TrainConfig
    from dail_harness.training.online import OnlineContext

    cfg = build(
        TrainConfig,
        {"method": "grpo", "model": "tiny-random", "data": "x", "out": "y", "top_k": 1, "temperature": 1.3},
    )
    ctx = OnlineContext(cfg, registry.get("backends", "hf")("tiny-random", device="cpu"), None)
    ctx.cfg.max_tokens = 8
    sampled = [c.token_ids for c in ctx.sample({"a": "What is 1+1?"}, 3)["a"]]
    greedy = ctx.sample({"a": "What is 1+1?"}, 1, temperature=0.0)["a"][0].token_ids
    assert sampled == [greedy] * 3
    cfg.top_k = 0
    assert len({tuple(c.token_ids) for c in ctx.sample({"a": "What is 1+1?"}, 3)["a"]}) > 1


def test_stars_merge_orders_every_processes_rows_and_refuses_a_missing_problem(tmp_path, capsys):
    """The first process merges the per-process generation files after a barrier: rows in data order, the kept
    ones to train on, the counts; a problem no file holds (a method that broke its one-row-per-problem contract)
    stops the run, naming the process that owed it, where it was once dropped silently."""
    from dail_harness.errors import HarnessError
    from dail_harness.training.iterate import _merge

    rows = [{"problem_id": f"p{i}"} for i in range(3)]
    part = lambda p: tmp_path / f"generated.{p}-of-2.jsonl"
    part(0).write_text(json.dumps({"problem_id": "p2", "trace": None, "source": "dropped"}) + "\n")
    part(1).write_text(json.dumps({"problem_id": "p1", "trace": "t1", "source": "direct"}) + "\n")
    with pytest.raises(HarnessError, match="lack the problems"):
        _merge(tmp_path, 2, rows)
    assert "shard(s) 0/2 (1 left)" in capsys.readouterr().err  # p0 is process 0's (problems dealt round-robin)
    assert not (tmp_path / "generated.jsonl").exists()
    with part(0).open("a") as f:
        f.write(json.dumps({"problem_id": "p0", "trace": "t0", "source": "rationalized"}) + "\n")
    counts = _merge(tmp_path, 2, rows)
    merged = [json.loads(x) for x in (tmp_path / "generated.jsonl").read_text().splitlines()]
    assert [r["problem_id"] for r in merged] == ["p0", "p1", "p2"]
    kept = [json.loads(x)["problem_id"] for x in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert kept == ["p0", "p1"]
    assert counts == {"problems": 3, "kept": 2, "rationalized": 1, "direct": 1, "dropped": 1}
