"""Thinking models, budget forcing (shared vs independent), temperature sweeps and shards."""

import json
from collections import Counter

import numpy as np
import pytest
from scipy import stats

from dail_harness.backends.base import Completion, GenerationRequest, SamplingBackend
from dail_harness.backends.hf import HFBackend
from dail_harness.eval.report import budget_matches
from dail_harness.eval.store import RunStore
from dail_harness.eval.thinking import FORCE_CLOSE, generate_budgeted, think_end_id
from dail_harness.models.loading import load_tokenizer, resolve_model
from dail_harness.sampling import SamplingParams


class ScriptedBackend(SamplingBackend):
    """Phase 1 returns scripted thinking tokens; phase 2 answers with 3 fixed tokens."""

    name = "scripted"

    def __init__(self, traces):
        self.tokenizer = load_tokenizer(resolve_model("tiny-random"))
        self.traces, self.calls = traces, []

    def generate(self, requests, params):
        self.calls.append((params.max_tokens, [(r.request_id, tuple(r.prefix_ids)) for r in requests]))
        out = []
        for r in requests:
            for i in r.sample_indices:
                if params.stop_token_ids:  # thinking phase
                    t = self.traces[i][: params.max_tokens]
                    end = next((j for j, x in enumerate(t) if x in params.stop_token_ids), None)
                    t = t[: end + 1] if end is not None else t
                    reason = "stop" if end is not None else "length"
                else:
                    t, reason = [40, 41, 42][: params.max_tokens], "length"
                out.append(
                    Completion(
                        r.request_id, i, self.tokenizer.decode(t), len(t), 10 + len(r.prefix_ids), reason, token_ids=t
                    )
                )
        yield out


def test_budget_forcing_cuts_closes_and_branches_exactly():
    b = ScriptedBackend({})
    end = think_end_id(b.tokenizer)
    close_ids = b.tokenizer(FORCE_CLOSE, add_special_tokens=False)["input_ids"]
    b.traces = {0: [50, 51, 52, 53, end, 99, 99], 1: list(range(60, 80))}  # 0 closes after 5 tokens; 1 never
    req = GenerationRequest("t/p", "x", [0, 1])
    rows = [
        s
        for batch in generate_budgeted(
            b,
            [req],
            SamplingParams(temperature=0.6, top_p=0.95, presence_penalty=0.0, max_tokens=100, seed=0),
            [3, 8, 16],
            answer_tokens=3,
        )
        for s in batch
    ]
    got = {(s.sample_index, s.budget): s for s in rows}
    assert len(rows) == 6
    # sample 0: cut at 3 (forced), natural close at 5 for budgets 8 and 16
    s = got[(0, 3)]
    assert (s.thinking_tokens, s.forced_close, s.answer_tokens, s.num_tokens) == (3, True, 3, 3 + len(close_ids) + 3)
    assert s.text == b.tokenizer.decode([50, 51, 52] + close_ids) + b.tokenizer.decode([40, 41, 42])
    for budget in (8, 16):
        s = got[(0, budget)]
        assert (s.thinking_tokens, s.forced_close, s.num_tokens) == (5, False, 8)
        assert s.text == b.tokenizer.decode([50, 51, 52, 53, end, 40, 41, 42])
    # sample 1 never closes: cut at each budget
    for budget in (3, 8, 16):
        s = got[(1, budget)]
        assert (s.thinking_tokens, s.forced_close) == (budget, True)
        assert s.text.startswith(b.tokenizer.decode(list(range(60, 60 + budget)) + close_ids))
    # shared mode: one thinking call at the largest budget, one answer per distinct cut (0@3, 0@5, 1@3/8/16)
    assert b.calls[0][0] == 16 and len(b.calls) == 2
    assert len(b.calls[1][1]) == 5


def test_independent_mode_samples_each_budget():
    b = ScriptedBackend({0: [50] * 20})
    req = GenerationRequest("t/p", "x", [0])
    rows = [
        s
        for batch in generate_budgeted(
            b,
            [req],
            SamplingParams(temperature=0.6, top_p=0.95, presence_penalty=0.0, max_tokens=8000, seed=0),
            [4, 8],
            answer_tokens=2,
            mode="independent",
        )
        for s in batch
    ]
    assert sorted(s.thinking_tokens for s in rows) == [4, 8]
    assert [c[0] for c in b.calls[:2]] == [4, 8] and b.calls[0][1][0][0] == "t/p#budget=4"


@pytest.fixture(scope="module")
def hf():
    return HFBackend("tiny-random", device="cpu", batch_size=64, chat_template_kwargs={"enable_thinking": True})


def test_shared_prefix_is_the_budget_trace_and_modes_agree_in_distribution(hf):
    """Shared branching and independent sampling: same thinking law, same answer law (chi-square)."""
    n, budgets = 400, [2, 6]
    params = SamplingParams(temperature=1.0, top_p=1.0, presence_penalty=0.0, max_tokens=8000, seed=7)
    req = [GenerationRequest("t/p", "Find the area of a circle.", list(range(n)))]
    rows = {}
    for mode in ("shared", "independent"):
        rows[mode] = [
            s for batch in generate_budgeted(hf, req, params, budgets, answer_tokens=1, mode=mode) for s in batch
        ]
        assert len(rows[mode]) == n * len(budgets)
    shared = {(s.sample_index, s.budget): s for s in rows["shared"]}
    for i in range(n):  # the budget-2 thinking is the first 2 tokens of the budget-6 trace
        small, large = shared[(i, 2)], shared[(i, 6)]
        if small.forced_close:
            assert small.token_ids[:2] == large.token_ids[:2]
    tok = hf.tokenizer
    for budget in budgets:
        # law of the first answer token at this budget, from the two modes
        counts = []
        for mode in ("shared", "independent"):
            firsts = [
                tok(s.text.rsplit("</think>", 1)[-1], add_special_tokens=False)["input_ids"][:1]
                for s in rows[mode]
                if s.budget == budget
            ]
            counts.append(Counter(tuple(f) for f in firsts))
        keys = sorted(set(counts[0]) | set(counts[1]))
        table = np.array([[c.get(k, 0) for k in keys] for c in counts], dtype=float)
        big = table.sum(0) >= 10
        table = np.column_stack([table[:, big], table[:, ~big].sum(1)]) if (~big).any() else table[:, big]
        p = stats.chi2_contingency(table)[1]
        assert p > 1e-3, (budget, p)
        think = [Counter(s.thinking_tokens for s in rows[m] if s.budget == budget) for m in ("shared", "independent")]
        assert abs(think[0][budget] - think[1][budget]) < 0.1 * n


def test_thinking_without_budget_forces_an_answer_phase(tmp_path, cli):
    code, _, err = cli(
        "eval",
        "--task",
        "aime24",
        "--model",
        "tiny-random",
        "--n",
        "2",
        "--limit",
        "2",
        "--thinking",
        "on",
        "--max-tokens",
        "6",
        "--answer-tokens",
        "3",
        "--no-progress",
        "--grade-workers",
        "0",
        "--out",
        tmp_path / "t",
    )
    assert code == 0, err
    for r in RunStore(tmp_path / "t").load_samples():
        assert r["budget"] is None and r["thinking_tokens"] <= 6 and r["answer_tokens"] <= 3
        if r["forced_close"]:
            assert r["thinking_tokens"] == 6 and FORCE_CLOSE in r["completion"]


def test_budget_eval_resumes_and_reports_curves(tmp_path, cli):
    args = [
        "eval",
        "--task",
        "aime24",
        "--model",
        "tiny-random",
        "--n",
        "2",
        "--limit",
        "2",
        "--budgets",
        "2,4",
        "--answer-tokens",
        "2",
        "--no-progress",
        "--grade-workers",
        "0",
        "--out",
        tmp_path / "b",
    ]
    assert cli(*args)[0] == 0
    before = (tmp_path / "b" / "samples.jsonl").read_bytes()
    assert len(before.splitlines()) == 2 * 2 * 2
    assert cli(*args)[0] == 0 and (tmp_path / "b" / "samples.jsonl").read_bytes() == before
    s = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert [c["budget"] for c in s["conditions"]] == [2, 4] and s["primary_condition"]["budget"] == 4
    code, out, _ = cli("report", tmp_path / "b", "--plot", tmp_path / "p.png")
    assert code == 0 and (tmp_path / "p_budgets.png").exists()


def test_temperature_sweep_conditions(tmp_path, cli):
    code, out, err = cli(
        "eval",
        "--task",
        "aime24",
        "--model",
        "tiny-random",
        "--n",
        "2",
        "--limit",
        "2",
        "--max-tokens",
        "4",
        "--temperatures",
        "0.6,1.2",
        "--no-progress",
        "--grade-workers",
        "0",
        "--out",
        tmp_path / "t",
    )
    assert code == 0, err
    rows = RunStore(tmp_path / "t").load_samples()
    assert Counter(r["temperature"] for r in rows) == {0.6: 4, 1.2: 4}
    s = json.loads((tmp_path / "t" / "summary.json").read_text())
    assert [c["temperature"] for c in s["conditions"]] == [0.6, 1.2]
    by_t = {
        t: {(r["problem_id"], r["sample_index"]): r["completion"] for r in rows if r["temperature"] == t}
        for t in (0.6, 1.2)
    }
    assert by_t[0.6] != by_t[1.2]


def test_shards_partition_problems_and_merge_to_the_unsharded_run(tmp_path, cli):
    common = [
        "eval",
        "--task",
        "aime24,aime25",
        "--model",
        "tiny-random",
        "--n",
        "2",
        "--limit",
        "3",
        "--max-tokens",
        "6",
        "--temperature",
        "1.0",
        "--no-progress",
        "--grade-workers",
        "0",
    ]
    assert cli(*common, "--out", tmp_path / "full")[0] == 0
    for i in range(3):
        assert cli(*common, "--shard", f"{i}/3", "--out", tmp_path / f"s{i}")[0] == 0
    shard_ids = [{(r["task"], r["problem_id"]) for r in RunStore(tmp_path / f"s{i}").load_samples()} for i in range(3)]
    assert sum(len(s) for s in shard_ids) == 6 and len(set.union(*shard_ids)) == 6
    full = {
        (r["task"], r["problem_id"], r["sample_index"]): r["completion"]
        for r in RunStore(tmp_path / "full").load_samples()
    }
    merged = {
        (r["task"], r["problem_id"], r["sample_index"]): r["completion"]
        for i in range(3)
        for r in RunStore(tmp_path / f"s{i}").load_samples()
    }
    assert merged == full  # keyed sampling: a sample does not depend on which shard drew it
    code, out, _ = cli("report", *(tmp_path / f"s{i}" for i in range(3)), "--json", "--no-plot")
    reps = json.loads(out)
    assert len(reps) == 1 and reps[0]["shards"] == [[0, 3], [1, 3], [2, 3]] and reps[0]["num_problems"] == 6
    code, out, _ = cli("report", tmp_path / "full", "--json", "--no-plot")
    assert json.loads(out)[0]["pass_at_k"] == reps[0]["pass_at_k"]
    code, _, err = cli(*common, "--shard", "3/3", "--out", tmp_path / "bad")
    assert code == 2 and "0 <= i < N" in err


def test_budget_match_statement():
    def rep(name, curve, n=4):
        return {
            "run": name,
            "n": n,
            "primary_condition": {"temperature": 0.6, "budget": max(curve)},
            "conditions": [
                {"temperature": 0.6, "budget": b, "pass_at_k": {"1": v, str(n): v}} for b, v in curve.items()
            ],
        }

    a = rep("dail", {512: 0.2, 1024: 0.4, 2048: 0.5, 4096: 0.5})
    b = rep("base", {512: 0.1, 1024: 0.2, 2048: 0.4, 4096: 0.45})
    lines = budget_matches([a, b])
    assert "dail matches base's best pass@1 (45.0% at budget 4096) from budget 2048: 2x the thinking tokens" in lines
    assert any(l.startswith("base does not reach dail's best pass@1") for l in lines)


def test_force_answer_appends_the_authors_prompt_with_100_tokens(tmp_path, cli):
    import json

    from dail_harness.eval.thinking import FORCE_ANSWER, FORCE_CLOSE

    code, _, err = cli(
        "eval",
        "--task",
        "aime24",
        "--model",
        "tiny-random",
        "--limit",
        "1",
        "--n",
        "2",
        "--budgets",
        "4",
        "--force-answer",
        "--no-progress",
        "--grade-workers",
        "0",
        "--out",
        tmp_path / "r",
    )
    assert code == 0, err
    settings = json.loads((tmp_path / "r" / "run.json").read_text())
    assert settings["answer_tokens"] == 100 and settings["force_answer"] is True
    rows = [json.loads(line) for line in (tmp_path / "r" / "samples.jsonl").read_text().splitlines()]
    for r in rows:
        assert FORCE_ANSWER in r["completion"] and r["answer_tokens"] <= 100
        if r["forced_close"]:
            assert FORCE_CLOSE + FORCE_ANSWER in r["completion"]
