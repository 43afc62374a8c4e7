"""The authors' final-answer pass for non-thinking models (`eval --force-answer`): which samples get it, the
exact continuation prompt, the graded text, and that it is keyed like every other sample."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from dail_harness.backends.base import Completion, GenerationRequest, SamplingBackend
from dail_harness.eval.force_answer import FINAL_ANSWER_SUFFIX, JOINER, continuation_request, force_final_answers
from dail_harness.eval.thinking import Sampled
from dail_harness.models.loading import load_tokenizer, resolve_model
from dail_harness.sampling import SamplingParams


@pytest.fixture(scope="module")
def qwen_tok():
    return load_tokenizer(resolve_model("tiny-random-qwen"))


class Rendering(SamplingBackend):
    """A back-end that only renders prompts (the shared code every back-end uses)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def generate(self, requests, params) -> Iterator[list[Completion]]:
        raise AssertionError("not used")


@pytest.mark.parametrize(
    "first",
    ["Let me compute 1+1. It is 2.", "We need the sum: 3 + 4 = 7, so", "Compute.\n\nThe answer is 12"],
)
def test_continuation_prompt_is_the_template_prefix_the_first_pass_and_the_suffix(qwen_tok, first):
    request = GenerationRequest("aime24/1", "What is $1+1$?", [0, 1, 2])
    sample = Completion("aime24/1", 2, first, 9, 20, "stop")
    cont = continuation_request(request, sample, qwen_tok)
    assert cont.sample_indices == [2] and cont.request_id == "aime24/1#final-answer"
    ids = Rendering(qwen_tok).render(cont)
    messages = [{"role": "user", "content": request.prompt}]
    template = qwen_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert template.endswith("<|im_start|>assistant\n")
    # what the authors' llm.chat(continue_final_message=True) tokenizes: the rendered text, token for token
    expected = qwen_tok(template + first + FINAL_ANSWER_SUFFIX, add_special_tokens=False)["input_ids"]
    assert ids == expected
    assert qwen_tok.decode(ids) == template + first + "\n The final answer (in \\boxed{}):"


class Scripted(SamplingBackend):
    """Answers every request with a fixed text and records what it was asked."""

    def __init__(self, tokenizer, text: str):
        self.tokenizer, self.text, self.asked = tokenizer, text, []

    def generate(self, requests, params) -> Iterator[list[Completion]]:
        self.asked.append((requests, params))
        yield [
            Completion(r.request_id, i, self.text, 3, 10, "stop", [1, 2, 3]) for r in requests for i in r.sample_indices
        ]


def sampled(rid: str, i: int, text: str) -> Sampled:
    return Sampled(rid, i, text, 5, 10, "stop", token_ids=[7] * 5, answer_tokens=5)


def test_only_samples_without_a_box_get_the_pass_and_the_graded_text_joins_both(qwen_tok):
    backend = Scripted(qwen_tok, " \\boxed{7}")
    requests = {"t/1": GenerationRequest("t/1", "p1", [0, 1]), "t/2": GenerationRequest("t/2", "p2", [0])}
    batch = [sampled("t/1", 0, "so \\boxed{3}."), sampled("t/1", 1, "no box here"), sampled("t/2", 0, "")]
    params = SamplingParams(
        n=2, temperature=0.7, top_p=0.95, presence_penalty=1.5, max_tokens=8000, stop=["</think>"], seed=0
    )
    out = force_final_answers(backend, requests, batch, params, 100)
    ((asked, second_params),) = backend.asked
    assert [(r.request_id, r.sample_indices, r.prompt) for r in asked] == [
        ("t/1#final-answer", [1], "p1"),
        ("t/2#final-answer", [0], "p2"),
    ]
    assert second_params == replace(params, max_tokens=100, stop=[], stop_token_ids=[])
    assert out[0] == batch[0] and not out[0].forced_answer
    assert out[1].text == "no box here" + JOINER + " \\boxed{7}" and out[1].forced_answer
    assert out[1].num_tokens == 8 and out[1].answer_tokens == 8 and out[1].token_ids == [7] * 5 + [1, 2, 3]
    assert out[2].text == JOINER + " \\boxed{7}"


def test_an_empty_continuation_keeps_the_first_pass(qwen_tok):
    out = force_final_answers(
        Scripted(qwen_tok, ""),
        {"t/1": GenerationRequest("t/1", "p", [0])},
        [sampled("t/1", 0, "x")],
        SamplingParams(temperature=1.0, top_p=1.0, presence_penalty=0.0, max_tokens=9, seed=0),
        100,
    )
    assert out[0].text == "x" and out[0].forced_answer


EVAL = ["eval", "--task", "aime24", "--model", "tiny-random", "--max-tokens", "8", "--temperature", "1.0"]
EVAL += ["--no-progress", "--grade-workers", "0", "--limit", "2", "--force-answer"]
EVAL += ["--batch-size", "1"]  # one row per forward: the runs below differ in batch composition, not in numerics


def rows(run) -> dict:
    return {(r["problem_id"], r["sample_index"]): r for r in map(json.loads, (run / "samples.jsonl").open())}


def test_eval_force_answer_without_thinking_end_to_end(tmp_path, cli):
    grown, fresh = tmp_path / "grown", tmp_path / "fresh"
    assert cli(*EVAL, "--n", "2", "--out", grown)[0] == 0
    assert cli(*EVAL, "--n", "4", "--out", grown)[0] == 0  # extended: the new samples keyed like the rest
    code, out, err = cli(*EVAL, "--n", "4", "--out", fresh)
    assert code == 0, err
    settings = json.loads((fresh / "run.json").read_text())
    assert settings["thinking"] is False and settings["force_answer"] is True and settings["answer_tokens"] == 100
    assert settings["sampling"]["stop"] == ["</think>"]
    got = rows(fresh)
    assert len(got) == 8 and {k: r["completion"] for k, r in rows(grown).items()} == {
        k: r["completion"] for k, r in got.items()
    }
    for r in got.values():  # a random model never boxes: every sample got the pass
        assert (
            r["forced_answer"] is True
            and JOINER in r["completion"]
            and "\\boxed{" not in r["completion"].split(JOINER)[0]
        )
    assert "8 of 8 samples got the final-answer pass" in out


def test_top_k_1_is_greedy_in_eval_and_direct_generation(tmp_path, cli):
    """--top-k reaches every sampler: with k = 1 a sampled run is the greedy run, token for token."""
    base = ["eval", "--task", "aime24", "--model", "tiny-random", "--max-tokens", "12", "--no-progress"]
    base += ["--grade-workers", "0", "--limit", "2", "--n", "1", "--presence-penalty", "0"]
    assert cli(*base, "--temperature", "0", "--out", tmp_path / "greedy")[0] == 0
    assert cli(*base, "--temperature", "1.3", "--top-k", "1", "--out", tmp_path / "topk")[0] == 0
    assert {k: r["completion"] for k, r in rows(tmp_path / "greedy").items()} == {
        k: r["completion"] for k, r in rows(tmp_path / "topk").items()
    }
    assert all(r["top_k"] == 1 for r in rows(tmp_path / "topk").values())
    data = tmp_path / "expert.jsonl"
    data.write_text(
        "".join(
            json.dumps({"problem_id": f"p{i}", "problem": f"What is {i}+{i}?", "solution": f"It is {2 * i}."}) + "\n"
            for i in range(2)
        )
    )
    gen = ["generate", "--model", "tiny-random", "--data", data, "--n", "2", "--max-tokens", "10", "--no-progress"]
    gen += ["--grade-workers", "0", "--select", "all"]
    for mode in ("direct", "mixed"):
        traces = []
        for name, extra in (("greedy", ["--temperature", "0"]), ("topk", ["--top-k", "1", "--temperature", "1.0"])):
            out = tmp_path / f"{mode}-{name}.jsonl"
            tau = ["--tau", "0.5"] if mode == "mixed" else []  # direct sampling has no tau (it would be refused)
            code, _, err = cli(*gen, "--mode", mode, *tau, *extra, "--out", out)
            assert code == 0, err
            traces.append([json.loads(line)["trace"] for line in Path(f"{out}.traces.jsonl").read_text().splitlines()])
        assert traces[0] == traces[1], mode
