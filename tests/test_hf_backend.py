"""The hf back-end: static-cache path equals eager; benchmarks stay runnable."""

import subprocess
import sys
from pathlib import Path

import pytest

from dail_harness.backends.base import GenerationRequest
from dail_harness.backends.hf import HFBackend
from dail_harness.sampling import SamplingParams

ROOT = Path(__file__).resolve().parents[1]


def _texts(backend, params):
    reqs = [
        GenerationRequest("t/a", "What is 1+1?", [0, 1, 2]),
        GenerationRequest("t/b", "Find the area of a circle of radius 2.", [0, 1]),
    ]
    return {
        (c.request_id, c.sample_index): (c.text, c.num_tokens, c.finish_reason)
        for batch in backend.generate(reqs, params)
        for c in batch
    }


def test_static_cache_path_matches_eager_and_batch_size_does_not_matter():
    params = SamplingParams(temperature=1.0, top_p=0.9, presence_penalty=0.5, max_tokens=12, seed=3)
    eager = HFBackend("tiny-random", device="cpu", batch_size=4, static_cache=False)
    static = HFBackend("tiny-random", device="cpu", batch_size=4, static_cache=True)  # bucketed + padded rows
    single = HFBackend("tiny-random", device="cpu", batch_size=1, static_cache=False)
    a, b, c = _texts(eager, params), _texts(static, params), _texts(single, params)
    assert a == b == c
    assert len(a) == 5 and len({t for t, _, _ in a.values()}) == 5


@pytest.mark.parametrize("temperature, penalty", [(0.0, 0.0), (0.9, 1.5)], ids=["greedy", "keyed-penalty"])
def test_asked_log_probs_are_the_models_own_log_softmax_of_each_generated_token(temperature, penalty):
    """Against a float64 forward pass over prompt + completion: the raw distribution (before penalty, temperature,
    top-p), one value per returned token, and the same samples as without asking (asking changes nothing)."""
    import torch

    backend = HFBackend("tiny-random", device="cpu", batch_size=3)
    params = SamplingParams(temperature=temperature, top_p=0.9, presence_penalty=penalty, max_tokens=10, seed=5)
    asked = SamplingParams(**{**params.__dict__, "logprobs": True})
    reqs = [GenerationRequest("t/a", "What is 1+1?", [0, 1]), GenerationRequest("t/b", "Find the area.", [0])]
    plain = {(c.request_id, c.sample_index): c for b in backend.generate(reqs, params) for c in b}
    got = {(c.request_id, c.sample_index): c for b in backend.generate(reqs, asked) for c in b}
    assert {k: c.token_ids for k, c in got.items()} == {k: c.token_ids for k, c in plain.items()}
    assert all(c.logprobs is None for c in plain.values()) and asked.to_dict() == params.to_dict()
    model = backend.model.double()
    for (rid, _), c in got.items():
        prompt = backend.render(next(r for r in reqs if r.request_id == rid))
        ids = torch.tensor([prompt + c.token_ids])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, len(prompt) - 1 : -1].double(), -1)
        want = logp.gather(1, torch.tensor(c.token_ids)[:, None]).squeeze(1)
        assert c.logprobs is not None and len(c.logprobs) == len(c.token_ids) == c.num_tokens
        assert torch.allclose(torch.tensor(c.logprobs, dtype=torch.float64), want, atol=1e-4), (rid, c.logprobs)


@pytest.mark.slow
def test_benchmarks_run_on_cpu(tmp_path):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    import os

    env.update({k: v for k, v in os.environ.items() if k.startswith(("DAIL_", "HF_", "TRANSFORMERS_", "HOME"))})
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "hf_decode.py"),
            "--preset",
            "tiny",
            "--batches",
            "1,2",
            "--device",
            "cpu",
            "--short",
            "4",
            "--long",
            "8",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "eager   batch   2" in out.stdout and "static  batch   1" in out.stdout
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "grading_throughput.py"), "--samples", "60", "--workers", "0,1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "samples/s" in out.stdout


@pytest.mark.slow
def test_grpo_benchmark_runs_against_trl(tmp_path):
    import json
    import os

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "grpo_step.py"),
            "--steps",
            "1",
            "--prompts",
            "2",
            "--group",
            "2",
            "--max-tokens",
            "4",
            "--micro-batch",
            "2",
            "--json",
            str(tmp_path / "r.json"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    results = json.loads((tmp_path / "r.json").read_text())
    assert [r["tool"] for r in results] == ["dail-harness", "trl GRPOTrainer"]
    assert all(r["samples_per_s"] > 0 and r["steps"] == 1 for r in results)


def test_back_ends_take_only_their_own_settings_and_swallow_nothing(tmp_path, cli):
    """No back-end takes **kwargs: `open_backend` refuses an option the chosen back-end has no parameter for (one
    line naming it), passes an engine seed only to a back-end that has one, and leaves unset (None) options out."""
    from dail_harness.backends.base import open_backend
    from dail_harness.errors import HarnessError

    with pytest.raises(HarnessError, match="--tensor-parallel-size: the 'hf' back-end does not use it"):
        open_backend("hf", "tiny-random", 0, tensor_parallel_size=2)
    with pytest.raises(TypeError):
        HFBackend("tiny-random", device="cpu", tensor_parallel_size=2)  # type: ignore[call-arg]
    backend = open_backend("hf", "tiny-random", 7, device="cpu", batch_size=None)  # hf draws keyed: no engine seed
    assert isinstance(backend, HFBackend) and backend.batch_size == 8  # its own default
    data = tmp_path / "d.jsonl"
    data.write_text('{"problem_id": "a", "problem": "1+1?", "solution": "2", "answer": "2"}\n')
    code, _, err = cli(
        "data",
        "hints",
        "--data",
        data,
        "--model",
        "tiny-random",
        "--out",
        tmp_path / "v.jsonl",
        "--backend",
        "vllm",
        "--batch-size",
        "4",
    )
    assert code == 2 and "--batch-size: the 'vllm' back-end does not use it" in err, err
