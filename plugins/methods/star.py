"""`star`: STaR rationalization (Zelikman et al. 2022), the paper's self-generated baseline.

Each iteration: for every training problem the current model answers once; for the problems it gets
wrong it answers again with the gold answer given as a hint in the prompt ("rationalization"); only
rationales whose final answer the verifier accepts are kept, and the model is fine-tuned (NLL) on them
with the hint removed from the prompt. Each outer iteration regenerates with the latest model and
fine-tunes from the base model again (`--train-from previous` continues instead). The DAIL paper gives no
iteration count: `--iterations` is 1. STaR's own schedule (its `iteration_train.py`): up to 64 outer
iterations, 40 steps first and 20% more each (`--max-steps 40 --steps-growth 1.2`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from dail_harness import registry
from dail_harness.options import option
from dail_harness.training.recipes import GenerateMethod, OnlineOptions


@dataclass
class STaROptions:
    iterations: int = option(
        1,
        ge=1,
        help="STaR's outer loop: regenerate with the latest model, fine-tune again "
        "from the base model (the paper gives no count).",
    )
    steps_growth: float | None = option(
        None,
        gt=0,
        help="Iteration r trains int(--max-steps x G^r) steps (STaR: 40 steps, G 1.2); default: --max-steps or "
        "--epochs for every iteration.",
    )
    train_from: str = option(
        "base",
        choices=("base", "previous"),
        help="Where each iteration's fine-tuning starts: the base model (STaR) or the previous iteration's result.",
    )
    prompt: str = option(
        OnlineOptions.prompt,
        placeholders=("problem",),
        help="User-turn template of the model's prompt ({problem}); default: the evaluation prompt.",
    )
    rationalization: str = option(
        "{problem}\n\n(Hint: the final answer is {answer}. Derive it step by step without mentioning this hint.)",
        placeholders=("problem", "answer"),
        help="How the gold answer is given as a hint.",
    )
    reward: str | None = option(
        None, help="Verifier that accepts rationales (default: each row's answer_type, else math)."
    )


@registry.register("methods", "star")
class STaRMethod(GenerateMethod):
    """STaR rationalization: keep verified answers and answer-hinted rationales, train NLL without the hint."""

    name = "star"
    default_loss = "nll"
    Options = STaROptions
    required_fields: ClassVar[tuple[str, ...]] = ("problem_id", "problem", "answer")
    uses_templates = False  # its prompt is --prompt (the evaluation's by default)
    contexts: ClassVar[tuple[str, ...]] = ()  # its rows have no reference solution or waypoints

    def unused_options(self) -> dict[str, str]:
        """Settings of later iterations mean nothing in a run of one."""
        if self.options.iterations > 1:
            return {}
        return dict.fromkeys(("train_from", "steps_growth"), "--iterations > 1 uses it")

    def prompt_of(self, problem: str) -> str:
        return self.options.prompt.replace("{problem}", problem)

    def prompts(self, row, contexts, templates):
        return {"student": self.prompt_of(str(row["problem"]))}  # the hint is never part of a training prompt

    def generate(self, ctx, rows):
        o = self.options
        answer_type = {str(r["problem_id"]): o.reward or r.get("answer_type") or "math" for r in rows}
        by_id = {str(r["problem_id"]): r for r in rows}
        direct = ctx.sample({pid: self.prompt_of(str(r["problem"])) for pid, r in by_id.items()}, 1, tag="direct")
        out = {}
        wrong = {}
        for pid, (c,) in direct.items():
            (v,) = ctx.grade([c], [str(by_id[pid]["answer"])], [answer_type[pid]])
            if v.correct:
                out[pid] = {"source": "direct", "trace": c.text}
            else:
                hinted = o.rationalization.replace("{problem}", str(by_id[pid]["problem"]))
                wrong[pid] = self.prompt_of(hinted.replace("{answer}", str(by_id[pid]["answer"])))
        if wrong:
            for pid, (c,) in ctx.sample(wrong, 1, tag="rationalize").items():
                (v,) = ctx.grade([c], [str(by_id[pid]["answer"])], [answer_type[pid]])
                out[pid] = (
                    {"source": "rationalized", "trace": c.text, "hinted_prompt": wrong[pid]}
                    if v.correct
                    else {"source": "dropped", "trace": None, "hinted_prompt": wrong[pid]}
                )
        return [
            {"problem_id": pid, "problem": by_id[pid]["problem"], "answer": by_id[pid]["answer"], **out[pid]}
            for pid in by_id
        ]
