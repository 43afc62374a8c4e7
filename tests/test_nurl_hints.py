"""`data hints`, NuRL's two steps (the default): an explanation given the gold answer, then an abstract hint from
that explanation; the expert solution never reaches either prompt, leaks are redrawn from a new explanation,
and both steps resume without drawing anything again."""

import json

import pytest

from dail_harness.backends.base import Completion
from dail_harness.dsyn.hints import EXPLAIN_PROMPT, NURL_HINT_PROMPT, HintsConfig, generate_hints
from dail_harness.errors import HarnessError

SOLUTION = "EXPERT-SOLUTION: the well-known trick."


class Scripted:
    """A sampling back-end that answers from fixed texts and records every request and its max tokens.
    Hints: p0's first one states its answer (100); every other one is abstract. `fail_on` raises on that call
    (a kill between the two steps)."""

    def __init__(self, fail_on: int | None = None):
        self.calls: list[list[tuple[str, int, str, int]]] = []
        self.fail_on = fail_on

    def text(self, request_id: str, attempt: int) -> str:
        kind, pid = request_id.split("/")
        if kind == "explain":
            return f"Explanation {attempt} of {pid}: use parity, which gives {100 + int(pid[1:])}."
        return "Hint: the answer is 100." if (pid, attempt) == ("p0", 0) else f"Hint: think about parity ({attempt})."

    def generate(self, requests, params):
        if self.fail_on == len(self.calls):
            raise KeyboardInterrupt
        self.calls.append([(r.request_id, r.sample_indices[0], r.prompt, params.max_tokens) for r in requests])
        yield [
            Completion(r.request_id, r.sample_indices[0], self.text(r.request_id, r.sample_indices[0]), 3, 3, "stop")
            for r in requests
        ]


def write_data(path):
    path.write_text(
        "".join(
            json.dumps({"problem_id": f"p{i}", "problem": f"Find {i}.", "solution": SOLUTION, "answer": str(100 + i)})
            + "\n"
            for i in range(2)
        )
    )
    return path


def config(tmp_path, **kw):
    data = write_data(tmp_path / "e.jsonl")
    return HintsConfig(
        data=str(data), model="m", out=str(tmp_path / "h.jsonl"), attempts=3, progress=False, max_tokens=7, **kw
    )


def rows_of(path):
    return {r["problem_id"]: r for r in map(json.loads, path.read_text().splitlines())}


def test_the_hint_comes_from_the_explanation_not_the_expert_solution(tmp_path):
    cfg = config(tmp_path, explain_max_tokens=11)
    backend = Scripted()
    stats = generate_hints(cfg, backend)
    order = [[(rid, attempt, tokens) for rid, attempt, _, tokens in call] for call in backend.calls]
    assert order == [
        [("explain/p0", 0, 11), ("explain/p1", 0, 11)],  # step 1 for every problem, then step 2
        [("hint/p0", 0, 7), ("hint/p1", 0, 7)],
        [("explain/p0", 1, 11)],  # p0's hint leaked: a new explanation, then a new hint
        [("hint/p0", 1, 7)],
    ]
    prompts = {(rid, attempt): prompt for call in backend.calls for rid, attempt, prompt, _ in call}
    assert prompts[("explain/p1", 0)] == EXPLAIN_PROMPT.replace("{problem}", "Find 1.").replace("{answer}", "101")
    assert prompts[("hint/p1", 0)] == NURL_HINT_PROMPT.replace("{problem}", "Find 1.").replace(
        "{explanation}", "Explanation 0 of p1: use parity, which gives 101."
    )
    assert "Explanation 1 of p0" in prompts[("hint/p0", 1)] and "Explanation 0" not in prompts[("hint/p0", 1)]
    assert not any(SOLUTION in p for p in prompts.values())  # NuRL never shows the expert solution
    rows = rows_of(tmp_path / "h.jsonl")
    assert rows["p0"] == {
        "problem_id": "p0",
        "hint": "think about parity (1).",
        "attempts": 2,
        "rejected": 1,
        "model": "m",
        "explanation": "Explanation 1 of p0: use parity, which gives 100.",
    }
    assert rows["p1"]["hint"] == "think about parity (0)." and rows["p1"]["rejected"] == 0
    assert stats == {"problems": 2, "new": 2, "without_hint": 0, "rejected": 1}
    explained = [json.loads(line) for line in (tmp_path / "h.jsonl.explanations.jsonl").read_text().splitlines()]
    assert [(e["problem_id"], e["attempt"]) for e in explained] == [("p0", 0), ("p1", 0), ("p0", 1)]


def test_a_rerun_draws_nothing_and_a_killed_run_keeps_its_explanations(tmp_path):
    cfg = config(tmp_path)
    generate_hints(cfg, Scripted())
    again = Scripted()
    assert generate_hints(cfg, again)["new"] == 0 and again.calls == []
    whole = rows_of(tmp_path / "h.jsonl")

    (tmp_path / "k").mkdir()
    killed = config(tmp_path / "k")
    with pytest.raises(KeyboardInterrupt):
        generate_hints(killed, Scripted(fail_on=1))  # dies after step 1 of attempt 0, before any hint
    resumed = Scripted()
    generate_hints(killed, resumed)
    assert [c[0][0].split("/")[0] for c in resumed.calls] == ["hint", "explain", "hint"]  # no step 1 drawn twice
    assert [(rid, attempt) for rid, attempt, _, _ in resumed.calls[1]] == [("explain/p0", 1)]
    assert rows_of(tmp_path / "k" / "h.jsonl") == whole  # the same rows as the uninterrupted run


def test_a_step_two_template_must_take_the_explanation(cli, tmp_path):
    data = write_data(tmp_path / "e.jsonl")
    template = tmp_path / "hint.txt"
    template.write_text("{problem}\n{solution}\nHint:")
    args = ["data", "hints", "--data", data, "--model", "tiny-random", "--out", tmp_path / "h.jsonl"]
    code, _, err = cli(*args, "--prompt-template", template)
    assert code == 2 and err.strip() == f"error: {template}: hint prompt template has no {{explanation}} placeholder"
    assert not (tmp_path / "h.jsonl").exists() and not (tmp_path / "h.jsonl.settings.json").exists()
    template.write_text("{answer}")
    backend = Scripted()
    with pytest.raises(HarnessError, match=r"explanation prompt template has no \{problem\} placeholder"):
        generate_hints(config(tmp_path, explain_template=str(template)), backend)
    assert backend.calls == []


@pytest.mark.parametrize("name", ["EXPLAIN_PROMPT", "NURL_HINT_PROMPT", "HINT_PROMPT"])
def test_the_readme_shows_each_hint_prompt(name):
    """README's "Baselines" quotes the three prompts (placeholders elided): their first and last sentences."""
    from pathlib import Path

    from dail_harness.dsyn import hints

    readme = " ".join((Path(__file__).resolve().parent.parent / "README.md").read_text().split())
    lines = [line for line in getattr(hints, name).splitlines() if line and "{" not in line and "#" not in line]
    first, last = lines[0].split(". ")[0], lines[-1].split(". ")[-1]
    assert first in readme and last in readme


def test_hints_sample_with_the_given_top_k(tmp_path):
    class Recording(Scripted):
        def generate(self, requests, params):
            self.seen = [*getattr(self, "seen", []), (params.top_k, params.top_p, params.temperature)]
            yield from super().generate(requests, params)

    backend = Recording()
    generate_hints(config(tmp_path, top_k=20, top_p=0.9), backend)
    assert backend.seen and set(backend.seen) == {(20, 0.9, HintsConfig.temperature)}
