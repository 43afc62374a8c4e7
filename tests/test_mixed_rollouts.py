"""Mixed-policy rollouts: the drafted engine against the token-by-token definition."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from references import reference
from scipy import stats

from dail_harness.backends.base import render_prompt_ids
from dail_harness.dsyn.prompts import privileged_prompt, student_prompt
from dail_harness.eval.thinking import think_end_id
from dail_harness.models.loading import load_causal_lm, load_tokenizer, resolve_model
from dail_harness.rollout.base import RolloutConfig, RolloutRequest
from dail_harness.rollout.hf import MixedPolicyEngine

PROBLEMS = [
    ("What is 1+1?", "1+1=2 so \\boxed{2}"),
    ("Find the area of a circle of radius 2.", "Area is 4pi."),
    ("Let n be 5. Find n+1.", "Solution 1: n+1 = 6.\n\nSolution 2: 2n-4 = 6"),
]


@pytest.fixture(scope="module")
def setup():
    path = resolve_model("tiny-random")
    tok = load_tokenizer(path)
    model64 = load_causal_lm(path, device="cpu").double()  # float64: the engine and the reference agree bitwise
    model32 = load_causal_lm(path, device="cpu")
    reqs = [
        RolloutRequest(
            f"p{i}#{k}", render_prompt_ids(tok, student_prompt(x)), render_prompt_ids(tok, privileged_prompt(x, s))
        )
        for i, (x, s) in enumerate(PROBLEMS)
        for k in range(2)
    ][:5]
    return tok, model64, model32, reqs


def median_raw_prob(model, tok, reqs):
    """A tau that gives roughly half acceptance for tiny-random (its probabilities sit near 1/512)."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([reqs[0].privileged_ids])).logits[0, -1].double()
    return float(torch.softmax(logits, -1).median())


@pytest.mark.parametrize(
    "K,static,fuse",
    [
        (1, False, True),
        (3, False, True),
        *(
            pytest.param(*p, marks=pytest.mark.slow)
            for p in [
                (1, True, True),
                (1, False, False),
                (8, False, True),
                (0, False, True),
                (3, True, True),
                (0, True, True),
            ]
        ),
    ],
)
def test_engine_traces_equal_token_by_token_reference(setup, K, static, fuse):
    """Lockstep (K = 1 fused), unfused K = 1, drafting and adaptive K, dynamic and static caches."""
    tok, model, _, reqs = setup
    mid = median_raw_prob(model, tok, reqs)
    engine = MixedPolicyEngine(model, tok, [tok.eos_token_id])
    for tau in (0.0, mid, 2 * mid, 1.5):
        cfg = RolloutConfig(
            tau=tau,
            draft_tokens=K,
            max_tokens=16,
            temperature=1.0,
            top_p=0.95,
            seed=5,
            batch_size=4,
            static_cache=static,
            fuse_contexts=fuse,
        )
        got = [r for batch in engine.run(reqs, cfg) for r in batch]
        for g, req in zip(got, reqs):
            ref = reference(model, req, cfg, [tok.eos_token_id])
            assert g.token_ids == ref.token_ids, (tau, K, req.row_id)
            assert (g.student_tokens, g.privileged_tokens, g.finish_reason) == (
                ref.student_tokens,
                ref.privileged_tokens,
                ref.finish_reason,
            )
        n_student = sum(g.student_tokens for g in got)
        if tau == 0:
            assert all(g.privileged_tokens == 0 for g in got)  # pure student rollout
        if tau > 1:
            assert n_student == 0  # pure privileged rollout
        if tau == mid:
            assert 0.2 < n_student / sum(len(g.token_ids) for g in got) < 0.8


@pytest.mark.parametrize("K", [4, 1])
def test_tau_extremes_equal_plain_sampling_of_each_context(setup, K):
    """tau = 0 samples the student alone, tau > 1 the privileged student alone (keyed, position by position)."""
    from dail_harness.rollout.base import role_keys
    from dail_harness.sampling import keyed_gumbel_sample

    tok, model, _, reqs = setup
    engine = MixedPolicyEngine(model, tok, [tok.eos_token_id])
    for tau, role, prompt_of in ((0.0, 0, lambda r: r.student_ids), (1.5, 1, lambda r: r.privileged_ids)):
        cfg = RolloutConfig(batch_size=16, tau=tau, draft_tokens=K, max_tokens=10, temperature=0.8, top_p=0.9, seed=1)
        got = [r for batch in engine.run(reqs[:2], cfg) for r in batch]
        for g, req in zip(got, reqs[:2]):
            key = role_keys(cfg.seed, req.row_id)[role]
            seq = []
            for i in range(10):
                with torch.no_grad():
                    logits = model(input_ids=torch.tensor([prompt_of(req) + seq])).logits[:, -1]
                seq.append(int(keyed_gumbel_sample(logits, torch.tensor([key]), torch.tensor([i]), 0.8, 0.9)[0]))
            assert g.token_ids == seq


@pytest.mark.slow
def test_drafting_preserves_the_distribution_chi_square(setup):
    """K = 1 and K = 8 with different seeds: the same joint law of the first two tokens."""
    tok, _, model, _ = setup
    engine = MixedPolicyEngine(model, tok, [tok.eos_token_id])
    # short raw contexts keep thousands of rollouts cheap; the engine does not care what they hold
    req = RolloutRequest("r", tok("Solve: x")["input_ids"], tok("Hint: the answer is 4. Solve: x")["input_ids"])
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([req.privileged_ids])).logits[0, -1].double()
    tau = float(torch.softmax(logits, -1).quantile(0.93))  # mixes student and privileged tokens (checked below)
    n = 3000
    samples = {}
    for K, seed in ((1, 11), (8, 22)):
        cfg = RolloutConfig(
            tau=tau, draft_tokens=K, max_tokens=2, temperature=0.05, top_p=1.0, seed=seed, batch_size=1000
        )
        rows = [RolloutRequest(f"r{i}", req.student_ids, req.privileged_ids) for i in range(n)]
        results = [r for batch in engine.run(rows, cfg) for r in batch]
        acceptance = sum(r.student_tokens for r in results) / (2 * n)
        assert 0.1 < acceptance < 0.95, acceptance
        samples[K] = Counter(tuple(r.token_ids) for r in results)
    keys = sorted(set(samples[1]) | set(samples[8]))
    table = np.array([[samples[K].get(k, 0) for k in keys] for K in (1, 8)], dtype=float)
    big = table.sum(0) >= 20
    table = np.column_stack([table[:, big], table[:, ~big].sum(1)])
    assert big.sum() >= 4  # several outcomes: the test has power
    assert stats.chi2_contingency(table)[1] > 1e-3


def test_think_end_is_suppressed_and_eos_ends_a_trace(setup):
    tok, model, _, reqs = setup
    end = think_end_id(tok)
    engine = MixedPolicyEngine(model, tok, [tok.eos_token_id])
    with torch.no_grad():  # make </think> the privileged model's favourite: suppression must still hold
        bias = torch.zeros(model.config.vocab_size, dtype=model.dtype)
        bias[end] = 50.0
        model.lm_head.bias = torch.nn.Parameter(bias)
    try:
        cfg = RolloutConfig(
            temperature=1.0,
            top_p=1.0,
            batch_size=16,
            tau=1.5,
            draft_tokens=2,
            max_tokens=12,
            seed=0,
            suppress_token_ids=[end],
        )
        assert all(end not in r.token_ids for b in engine.run(reqs, cfg) for r in b)
        cfg = RolloutConfig(temperature=1.0, top_p=1.0, batch_size=16, tau=1.5, draft_tokens=2, max_tokens=12, seed=0)
        assert all(r.token_ids[0] == end for b in engine.run(reqs, cfg) for r in b)
        model.lm_head.bias.data[tok.eos_token_id] = 100.0  # EOS is now certain: traces end at once
        got = [
            r
            for b in engine.run(
                reqs, RolloutConfig(temperature=1.0, top_p=1.0, batch_size=16, tau=0.5, max_tokens=12, seed=0)
            )
            for r in b
        ]
        assert all(r.token_ids == [tok.eos_token_id] and r.finish_reason == "stop" for r in got)
    finally:
        model.lm_head.bias = None


def write_expert(tmp_path):
    path = tmp_path / "expert.jsonl"
    path.write_text(
        "".join(
            json.dumps({"problem_id": f"p{i}", "problem": x, "solution": s, **({"answer": "6"} if i == 2 else {})})
            + "\n"
            for i, (x, s) in enumerate(PROBLEMS)
        )
    )
    return path


def test_generate_mixed_rows_resume_and_settings(tmp_path, cli):
    data = write_expert(tmp_path)
    out = tmp_path / "d_syn.jsonl"
    args = [
        "generate",
        "--data",
        data,
        "--model",
        "tiny-random",
        "--out",
        out,
        "--mode",
        "mixed",
        "--tau",
        "0.002",
        "--draft-tokens",
        "4",
        "--samples-per-problem",
        "2",
        "--max-tokens",
        "16",
        "--select",
        "all",
        "--no-progress",
    ]
    code, stdout, err = cli(*args)
    assert code == 0, err
    assert "acceptance rate" in stdout
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    traces = Path(str(out) + ".traces.jsonl")
    assert [json.loads(l) for l in traces.read_text().splitlines()] == rows  # --select all keeps every trace
    assert len(rows) == 6
    for r in rows:
        for f in (
            "problem_id",
            "problem",
            "solution",
            "waypoints",
            "trace",
            "tau",
            "draft_tokens",
            "student_tokens",
            "privileged_tokens",
            "acceptance_rate",
        ):
            assert f in r
        assert r["student_tokens"] + r["privileged_tokens"] == r["num_tokens"] and r["tau"] == 0.002
    p2 = next(r for r in rows if r["problem_id"] == "p2")
    assert p2["answer"] == "6" and "6" not in p2["waypoints"] and "2n-4" not in p2["waypoints"]  # numbers only
    # a kill mid-append: cut the traces inside their last row, rerun, get the same rows back
    full = traces.read_bytes()
    traces.write_bytes(full[: full.rfind(b"\n", 0, len(full) - 1) + 10])
    assert cli(*args)[0] == 0
    assert traces.read_bytes() == full
    code, _, err = cli(*[a if a != "0.002" else "0.5" for a in args])
    assert code == 2 and "tau: 0.002 -> 0.5" in err
    # a smaller --limit selects from its own problems (it selected from every stored trace); the traces stay
    assert cli(*args, "--limit", "2")[0] == 0
    assert {json.loads(l)["problem_id"] for l in out.read_text().splitlines()} == {"p0", "p1"}
    assert traces.read_bytes() == full


def test_generate_direct_and_tau_extremes_via_cli(tmp_path, cli):
    data = write_expert(tmp_path)
    common = [
        "--data",
        data,
        "--model",
        "tiny-random",
        "--max-tokens",
        "8",
        "--no-progress",
        "--n",
        "1",
        "--select",
        "all",
    ]
    assert cli("generate", *common, "--mode", "direct", "--out", tmp_path / "direct.jsonl")[0] == 0
    rows = [json.loads(l) for l in (tmp_path / "direct.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["mode"] == "direct" and r["acceptance_rate"] is None for r in rows)
    assert cli("generate", *common, "--tau", "0", "--out", tmp_path / "t0.jsonl")[0] == 0
    assert all(json.loads(l)["acceptance_rate"] == 1.0 for l in (tmp_path / "t0.jsonl").read_text().splitlines())
    settings = json.loads((tmp_path / "t0.jsonl.settings.json").read_text())
    assert settings["draft_tokens"] == 1  # the hf default: lockstep
    assert cli("generate", *common, "--tau", "1.01", "--out", tmp_path / "t1.jsonl")[0] == 0
    assert all(json.loads(l)["acceptance_rate"] == 0.0 for l in (tmp_path / "t1.jsonl").read_text().splitlines())


def test_prompts_command(tmp_path, cli):
    data = write_expert(tmp_path)
    code, out, _ = cli("prompts", "--data", data, "--problem-id", "p2")
    assert code == 0 and "===== NEGATIVE REFERENCE =====" in out and "The final answer is 6." in out
    code, _, err = cli("prompts", "--data", data, "--problem-id", "p22")
    assert code == 2 and "did you mean" in err


def test_best_draft_length():
    from dail_harness.rollout.base import best_draft_length

    assert best_draft_length(0.0) == 1 and best_draft_length(0.3) == 1
    assert best_draft_length(0.9) == 4  # (0.9+0.81+0.729+0.656+0.344)/5 = 0.688 beats K=3 and K=5
    assert best_draft_length(0.99) > best_draft_length(0.9)
    assert best_draft_length(0.9, (1, 8, 16)) == 8  # rates 0.5, 0.633, 0.479: compiled runs pick from few shapes


@pytest.mark.parametrize("K,static", [(4, True), (1, True), (1, False)])
def test_rows_that_finish_early_stay_exact(setup, K, static):
    """Finished rows stay in a static batch and leave a dynamic one: traces of all lengths still equal
    the reference (lockstep checks for finished rows every 8 steps, so rows run on past their EOS)."""
    tok, model, _, reqs = setup
    engine = MixedPolicyEngine(model, tok, [tok.eos_token_id])
    with torch.no_grad():
        bias = torch.zeros(model.config.vocab_size, dtype=model.dtype)
        bias[tok.eos_token_id] = 4.0  # EOS now ends traces at scattered lengths
        model.lm_head.bias = torch.nn.Parameter(bias)
    try:
        mid = median_raw_prob(model, tok, reqs)
        cfg = RolloutConfig(
            temperature=1.0,
            top_p=1.0,
            tau=mid,
            draft_tokens=K,
            max_tokens=24,
            seed=2,
            batch_size=5,
            static_cache=static,
        )
        got = [r for b in engine.run(reqs, cfg) for r in b]
        lengths = {len(r.token_ids) for r in got}
        assert len(lengths) > 1 and any(r.finish_reason == "stop" for r in got)
        for g, req in zip(got, reqs):
            ref = reference(model, req, cfg, [tok.eos_token_id], variant="eos bias 4")
            assert (g.token_ids, g.student_tokens, g.finish_reason) == (
                ref.token_ids,
                ref.student_tokens,
                ref.finish_reason,
            )
    finally:
        model.lm_head.bias = None


@pytest.mark.slow
def test_compiled_static_engine_has_one_graph_per_step_shape(setup):
    """The --compile path on CPU: the decode forward traces as one full graph (no breaks), batches and the
    padded last batch reuse it (no recompiles), and the traces still equal the reference. On CUDA the same
    graphs are what mode="reduce-overhead" captures with CUDA graphs."""
    tok, model, _, reqs = setup
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    engine = MixedPolicyEngine(
        model, tok, [tok.eos_token_id], compile_options={"backend": counting_backend, "fullgraph": True}
    )
    mid = median_raw_prob(model, tok, reqs)
    for K, expected in ((1, 1), (3, 2)):  # lockstep: [2B, 1]; drafting: [B, 1] drafts and [B, K+1] verifies
        graphs.clear()
        cfg = RolloutConfig(
            temperature=1.0,
            top_p=1.0,
            tau=mid,
            draft_tokens=K,
            max_tokens=16,
            seed=5,
            batch_size=4,
            static_cache=True,
            compile=True,
        )
        got = [r for b in engine.run(reqs, cfg) for r in b]  # 5 requests: a full batch and a padded one
        assert len(got) == len(reqs) and len(graphs) == expected, (K, len(graphs))
        for g, req in zip(got, reqs):
            assert g.token_ids == reference(model, req, cfg, [tok.eos_token_id]).token_ids


@pytest.mark.parametrize("static", [False, True])
def test_authors_top20_proposal_equals_its_token_by_token_definition(setup, static):
    """--proposal top20x5: up to 5 student draws from its top-20, the authors' acceptance, else a privileged
    top-20 draw; the engine's traces equal an explicit per-token implementation (float64)."""
    tok, model, _, reqs = setup
    engine = MixedPolicyEngine(model, tok, [tok.eos_token_id])
    with torch.no_grad():  # the top-20 probabilities of tiny-random: pick taus that accept some drafts
        logits = model(input_ids=torch.tensor([reqs[0].privileged_ids])).logits[0, -1].double()
    top = torch.topk(torch.softmax(logits, -1), 20).values
    accepted = 0
    for tau in (0.0, float(top[3]), 1.5):
        cfg = RolloutConfig(
            tau=tau,
            max_tokens=10,
            temperature=0.7,
            top_p=0.9,
            seed=4,
            batch_size=5,
            proposal="top20x5",
            static_cache=static,
        )
        got = [r for b in engine.run(reqs, cfg) for r in b]
        for g, req in zip(got, reqs):
            ref = reference(model, req, cfg, [tok.eos_token_id])
            assert g.token_ids == ref.token_ids
            assert (g.student_tokens, g.privileged_tokens) == (ref.student_tokens, ref.privileged_tokens)
        accepted += sum(g.student_tokens for g in got)
        if tau > 1:
            assert all(g.student_tokens == 0 for g in got)
    assert accepted > 0


def test_authors_proposal_needs_token_by_token(setup):
    from dail_harness.errors import HarnessError

    tok, model, _, reqs = setup
    engine = MixedPolicyEngine(model, tok, [tok.eos_token_id])
    cfg = RolloutConfig(
        tau=0.5, max_tokens=4, temperature=1.0, top_p=1.0, seed=0, batch_size=2, draft_tokens=4, proposal="top20x5"
    )
    with pytest.raises(HarnessError, match="token by token"):
        next(engine.run(reqs, cfg))


def test_selection_rules_and_counts():
    from dail_harness.dsyn.select import select_traces

    def row(pid, i, ours, authors):
        return {"problem_id": pid, "sample_index": i, "correct": ours, "authors_correct": authors, "trace": "t"}

    rows = [
        row("a", 2, True, True),
        row("a", 0, False, False),
        row("a", 1, True, False),
        row("b", 0, False, False),
        row("b", 1, False, True),
        row("c", 0, True, True),
    ]
    kept, counts = select_traces(rows, "first-correct", "ours", 0)
    assert [(r["problem_id"], r["sample_index"]) for r in kept] == [("a", 1), ("c", 0)]  # the first correct one
    assert counts["dropped_problems"] == 1 and counts["correct_per_problem"] == {"0": 1, "1": 1, "2": 1}
    kept, _ = select_traces(rows, "first-correct", "authors", 0)
    assert [(r["problem_id"], r["sample_index"]) for r in kept] == [("a", 2), ("b", 1), ("c", 0)]
    kept, counts = select_traces(rows, "all-correct", "ours", 0)
    assert len(kept) == 3 and counts["kept_problems"] == 2
    first, _ = select_traces(rows, "random", "ours", 7)
    again, _ = select_traces(list(reversed(rows)), "random", "ours", 7)

    def key(r):
        return r["problem_id"]

    # one per problem, whatever the row order, with or without a correct one
    assert sorted(first, key=key) == sorted(again, key=key) and len(first) == 3
    assert len(select_traces(rows, "all", "ours", 0)[0]) == 6


@pytest.mark.parametrize("rule", ["all", "random", "first-correct", "all-correct"])
def test_no_selection_keeps_an_empty_trace(rule):
    from dail_harness.dsyn.select import select_traces

    rows = [
        {"problem_id": "a", "sample_index": 0, "trace": "", "correct": True, "authors_correct": True},
        {"problem_id": "a", "sample_index": 1, "trace": " \n", "correct": False, "authors_correct": False},
        {"problem_id": "b", "sample_index": 0, "trace": "\\boxed{1}", "correct": True, "authors_correct": True},
        {"problem_id": "b", "sample_index": 1, "trace": None, "correct": True, "authors_correct": True},
    ]
    kept, counts = select_traces(rows, rule, "ours", 0)
    assert [(r["problem_id"], r["sample_index"]) for r in kept] == [("b", 0)]
    assert (counts["empty_traces"], counts["dropped_problems"], counts["kept_problems"]) == (3, 1, 1)


def test_generate_grades_every_trace_and_selects(tmp_path, cli):
    from dail_harness.verifiers.base import get_verifier

    plugins = Path(__file__).resolve().parent / "plugins"
    data = write_expert(tmp_path)
    out = tmp_path / "d.jsonl"
    args = [
        "generate",
        "--data",
        data,
        "--model",
        "tiny-random",
        "--out",
        out,
        "--n",
        "4",
        "--max-tokens",
        "6",
        "--answer-type",
        "coin",
        "--plugin-dir",
        plugins,
        "--no-progress",
    ]
    code, stdout, err = cli(*args)
    assert code == 0, err
    traces = [json.loads(l) for l in Path(str(out) + ".traces.jsonl").read_text().splitlines()]
    assert len(traces) == 12 and all("correct" in t and "authors_correct" in t for t in traces)
    coin = get_verifier("coin")
    # a problem without an answer (no `answer`, no box in its solution) cannot be verified: never correct
    assert all(t["correct"] == (t["answer"] is not None and coin(t["trace"], t["answer"]).correct) for t in traces)
    assert any(t["correct"] for t in traces) and any(t["answer"] is None for t in traces)
    kept = [json.loads(l) for l in out.read_text().splitlines()]
    by_problem = {}
    for t in traces:
        by_problem.setdefault(t["problem_id"], []).append(t)
    expected = [
        min((t for t in ts if t["correct"]), key=lambda t: t["sample_index"])
        for ts in by_problem.values()
        if any(t["correct"] for t in ts)
    ]
    assert kept == expected and "problems kept" in stdout
    counts = json.loads(Path(str(out) + ".selection.json").read_text())
    assert counts["rule"] == "first-correct" and counts["kept_traces"] == len(kept)
    before = Path(str(out) + ".traces.jsonl").read_bytes()
    code, _, err = cli(*args, "--select", "all")  # re-selection: no generation, all traces kept
    assert code == 0, err
    assert Path(str(out) + ".traces.jsonl").read_bytes() == before
    assert len(out.read_text().splitlines()) == 12
    settings = json.loads(Path(str(out) + ".settings.json").read_text())
    assert settings["max_tokens"] == 6 and settings["n"] == 4 and "select" not in settings


def test_generate_defaults_follow_the_model_type():
    from dail_harness.dsyn.generate import GenerateConfig
    from dail_harness.options import build

    plain = build(GenerateConfig, {"data": "d", "model": "m", "out": "o"})
    thinking = build(GenerateConfig, {"data": "d", "model": "m", "out": "o", "thinking": "on"})
    assert (plain.n, plain.max_tokens, plain.select, plain.tau) == (32, 2048, "first-correct", 0.8)
    assert (thinking.max_tokens, thinking.select) == (256, "random")


def test_dsyn_summary_across_tau_with_plots(tmp_path, cli):
    plugins = Path(__file__).resolve().parent / "plugins"
    data = write_expert(tmp_path)
    files = []
    for tau in ("0.001", "0.01"):
        out = tmp_path / f"d{tau}.jsonl"
        code, _, err = cli(
            "generate",
            "--data",
            data,
            "--model",
            "tiny-random",
            "--out",
            out,
            "--n",
            "2",
            "--max-tokens",
            "6",
            "--tau",
            tau,
            "--answer-type",
            "coin",
            "--plugin-dir",
            plugins,
            "--select",
            "all",
            "--no-progress",
        )
        assert code == 0, err
        files.append(out)
    code, out, err = cli("data", "summary", *files, "--plot", tmp_path / "s.png", "--plugin-dir", plugins)
    assert code == 0, err
    assert "d0.001.jsonl" in out and "d0.01.jsonl" in out
    for name in ("s_tau.png", "s_lengths.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    code, out, err = cli("data", "summary", files[0], "--json", "--plot", "")  # no plot
    summary = json.loads(out)[0]
    rows = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert summary["traces"] == 6 and summary["tau"] == 0.001
    assert summary["correct"] == pytest.approx(sum(r["correct"] for r in rows) / 6)
    assert summary["acceptance"] == pytest.approx(sum(r["acceptance_rate"] for r in rows) / 6)
    code, out, err = cli("data", "summary", files[1], "--no-plot", "--plugin-dir", plugins)  # as `report` takes it
    assert code == 0 and not (tmp_path / "dsyn_tau.png").exists() and not Path("dsyn_tau.png").exists(), err
    code, _, err = cli("data", "summary", data)  # expert data, not D_syn: said before any --model is asked for
    assert code == 2 and f"{data}:1: not a D_syn row (needs problem_id and trace)" in err, err


def test_generate_drops_empty_traces_so_train_accepts_what_it_selects(tmp_path, cli):
    """A trace that ended at once is never selected: counted and reported as dropped, and `train` takes the file."""
    data, out = write_expert(tmp_path), tmp_path / "d.jsonl"
    args = ["generate", "--data", data, "--model", "tiny-random", "--out", out, "--mode", "direct", "--n", "2"]
    args += ["--max-tokens", "3", "--no-progress", "--grade-workers", "0"]
    assert cli(*args, "--select", "all")[0] == 0
    traces_file = Path(str(out) + ".traces.jsonl")
    traces = [json.loads(l) for l in traces_file.read_text().splitlines()]
    for t in traces:
        if t["problem_id"] == "p0" or t["sample_index"] == 0:  # as if the model had ended at once
            t["trace"] = ""
    traces_file.write_text("".join(json.dumps(t) + "\n" for t in traces))
    empty = sum(1 for t in traces if not t["trace"].strip())
    code, stdout, err = cli(*args, "--select", "all")  # re-selects, generates nothing
    assert code == 0, err
    kept = [json.loads(l) for l in out.read_text().splitlines()]
    assert len(kept) == len(traces) - empty and all(k["trace"].strip() for k in kept)
    counts = json.loads(Path(str(out) + ".selection.json").read_text())
    assert counts["empty_traces"] == empty and counts["dropped_problems"] == 1  # p0 had only empty traces
    assert f"{empty} empty traces dropped" in stdout
    code, _, err = cli(
        "train",
        "--method",
        "nll",
        "--data",
        out,
        "--model",
        "tiny-random",
        "--out",
        tmp_path / "run",
        "--max-steps",
        "1",
        "--lora-r",
        "2",
        "--no-progress",
        "--device",
        "cpu",
    )
    assert code == 0, err


@pytest.mark.parametrize("static", [False, True])
def test_prefill_computes_no_logits_over_the_prompt(setup, static):
    """The prompt's logits are never used (its last token is fed at the first step): the head runs on one position,
    not on every prompt position (at 64 rows x 640 tokens x a 151,669-token vocabulary that was ~25 GB)."""
    from transformers import StaticCache

    from dail_harness.rollout.contexts import KVContext, StaticKVContext

    _, _, model, reqs = setup
    widths = []
    hook = model.lm_head.register_forward_hook(lambda mod, args, out: widths.append(args[0].shape[1]))
    try:
        prompts = [r.privileged_ids for r in reqs]
        if static:
            cache = StaticCache(config=model.config, max_cache_len=1024)
            StaticKVContext(model, prompts, 0, "cpu", cache)
        else:
            KVContext(model, prompts, 0, "cpu")
    finally:
        hook.remove()
    assert widths == [1] and max(len(p) for p in prompts) > 100
