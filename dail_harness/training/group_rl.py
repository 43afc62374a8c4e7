"""Group-relative policy optimisation (GRPO and its variants): advantages, loss weights, the rollout.

Definitions follow TRL's GRPOTrainer (1.16), so numbers compare with it:
- advantages: A_i = r_i - mean(group); divided by std + 1e-4 unless `scale_rewards` is "none"; "group"
  uses each group's std, "batch" the std of every reward in the step (std with Bessel's correction);
- loss types, as normalisations of the per-token surrogate over one optimizer step:
  grpo (each sequence's token mean, averaged over sequences), bnpo (each micro-batch's token mean,
  averaged over micro-batches), dr_grpo (sum / (sequences x max completion length)), dapo (sum /
  every active token of the step). They become per-token weights, so the `grpo` loss just sums;
- `mask_truncated`: completions cut at the length limit keep their reward (and their place in the group
  statistics) but add nothing to the loss.
Per-process values (token and sequence counts, batch statistics) are combined across DDP processes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dail_harness.options import option
from dail_harness.training.recipes import OnlineMethod, OnlineOptions, Rollout

if TYPE_CHECKING:
    from dail_harness.backends.base import Completion
    from dail_harness.training.online import OnlineContext

STD_EPS = 1e-4
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")


@dataclass
class GRPOOptions(OnlineOptions):
    """GRPO's options (TRL's names and defaults where TRL has them)."""

    reward: str | None = option(
        None,
        help="Verifier that scores samples (default: each row's answer_type, else "
        "math); any registered verifier, plugins included.",
    )
    scale_rewards: str = option(
        "group",
        choices=("group", "batch", "none"),
        help="Divide advantages by the group's reward std, the batch's, or not at all (Dr. GRPO).",
    )
    loss_type: str = option(
        "dapo", choices=LOSS_TYPES, help="How the surrogate is normalised (TRL's definitions; dapo is TRL's default)."
    )
    num_iterations: int = option(
        1, ge=1, help="Optimizer steps per generation batch (mu); old log-probs are stored for the ratio."
    )
    mask_truncated: bool = option(
        False,
        help="Completions cut at --max-tokens add nothing to the loss (they still count in the group statistics).",
    )


@dataclass
class Scored:
    """One sampled completion with its reward, ready to become a training example."""

    key: str
    """The problem's key (its id)."""
    prompt: str
    """The user-turn prompt it was sampled from (and is trained under)."""
    completion: Completion
    reward: float
    correct: bool
    hinted: bool = False


def group_advantages(rewards: list[list[float]], scale: str, batch_std: float | None = None) -> list[list[float]]:
    """Group-relative advantages (TRL): r - mean(group), divided by std + 1e-4 unless `scale` is none."""
    out = []
    for group in rewards:
        mean = sum(group) / len(group)
        if scale == "none":
            out.append([r - mean for r in group])
            continue
        std = bessel_std(group) if scale == "group" else (batch_std or 0.0)
        out.append([(r - mean) / (std + STD_EPS) for r in group])
    return out


def bessel_std(values: list[float]) -> float:
    """Sample standard deviation (n - 1), 0 for a single value (TRL uses 0 there too)."""
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def token_weights(
    lengths: list[int], loss_type: str, *, micro_batch: int, max_length: int, totals: dict[str, float]
) -> list[float]:
    """The per-token weight of each sequence's tokens under `loss_type`, given this process's sequence
    lengths (active tokens) in training order and the step's totals over all processes: `sequences`,
    `tokens` and `micro_batches`."""
    if loss_type == "grpo":
        return [1.0 / (max(n, 1) * totals["sequences"]) for n in lengths]
    if loss_type == "dapo":
        return [1.0 / max(totals["tokens"], 1.0)] * len(lengths)
    weights = []
    for start in range(0, len(lengths), micro_batch):
        chunk = lengths[start : start + micro_batch]
        if loss_type == "bnpo":
            w = 1.0 / (max(sum(chunk), 1) * totals["micro_batches"])
        else:  # dr_grpo
            w = 1.0 / (len(chunk) * max_length * totals["micro_batches"])
        weights += [w] * len(chunk)
    return weights


class GroupRLMethod(OnlineMethod):
    """GRPO's rollout: G samples per prompt, verifier rewards, group-relative advantages, weighted tokens.
    Subclasses may replace some samples before scoring (`revise`, NuRL's hints)."""

    default_loss = "grpo"
    Options = GRPOOptions
    needs_sampled_groups = True
    extras = ("advantage", "weight", "share")
    signal = ("advantage",)  # `weight` only normalises the step's sum

    def prompt_of(self, row: dict) -> str:
        return self.options.prompt.replace("{problem}", str(row["problem"]))

    def answer_type(self, row: dict) -> str:
        return self.options.reward or row.get("answer_type") or "math"

    def score(
        self, ctx: OnlineContext, row: dict, prompt: str, completions: list[Completion], hinted: bool = False
    ) -> list[Scored]:
        verdicts = ctx.grade(
            completions, [str(row["answer"])] * len(completions), [self.answer_type(row)] * len(completions)
        )
        return [
            Scored(str(row["problem_id"]), prompt, c, v.reward, v.correct, hinted)
            for c, v in zip(completions, verdicts)
        ]

    def revise(self, ctx: OnlineContext, rows: list[dict], groups: list[list[Scored]]) -> dict[str, float]:
        """Hook: change groups before the advantages are computed; returns stats to log."""
        return {}

    def rollout(self, ctx: OnlineContext, rows: list[dict]) -> Rollout:
        o = self.options
        prompts = {str(row["problem_id"]): self.prompt_of(row) for row in rows}
        samples = ctx.sample(prompts, o.group_size)
        groups = [
            self.score(ctx, row, prompts[str(row["problem_id"])], samples[str(row["problem_id"])]) for row in rows
        ]
        stats = self.revise(ctx, rows, groups)
        rewards = [[s.reward for s in g] for g in groups]
        flat = ctx.gather([r for g in rewards for r in g])
        batch_std = bessel_std(flat)
        advantages = group_advantages(rewards, o.scale_rewards, batch_std)
        scored = [s for g in groups for s in g]
        adv = [a for g in advantages for a in g]
        active = [
            0 if (o.mask_truncated and s.completion.finish_reason == "length") else len(s.completion.token_ids)
            for s in scored
        ]
        micro = max(1, ctx.cfg.batch_size)
        totals = dict(
            zip(
                ("sequences", "tokens", "micro_batches"),
                _sum_over_processes(
                    ctx, [float(len(scored)), float(sum(active)), float(math.ceil(len(scored) / micro))]
                ),
            )
        )
        weights = token_weights(active, o.loss_type, micro_batch=micro, max_length=ctx.cfg.max_tokens, totals=totals)
        share = 1.0 / max(totals["tokens"], 1.0)
        examples = []
        prompt_ids: dict[str, list[int]] = {}
        for s, a, w, n in zip(scored, adv, weights, active):
            ids = prompt_ids.setdefault(s.prompt, ctx.prompt_ids(s.prompt))
            length = len(s.completion.token_ids)
            on = 1.0 if n else 0.0
            examples.append(
                ctx.example(
                    s.key + ("#hinted" if s.hinted else ""),
                    ids,
                    s.completion,
                    advantage=[a] * length,
                    weight=[w * on] * length,
                    share=[share * on] * length,
                )
            )
        stats.update(self.group_stats(ctx, groups, rewards, flat, batch_std))
        return Rollout(examples, stats)

    def group_stats(self, ctx: OnlineContext, groups, rewards, flat: list[float], batch_std: float) -> dict:
        """The step's logged statistics over every process: rewards, shares of solved and unsolved groups, groups
        with no reward spread, completion lengths and the share cut at --max-tokens."""
        scored = [s for g in groups for s in g]
        batch = self.options.scale_rewards == "batch"
        group_stds = [batch_std] * len(rewards) if batch else [bessel_std(g) for g in rewards]
        solved_all = ctx.gather([float(all(s.correct for s in g)) for g in groups])
        solved_none = ctx.gather([float(not any(s.correct for s in g)) for g in groups])
        zero_std = ctx.gather([float(math.isclose(sd, 0.0, abs_tol=1e-12)) for sd in group_stds])
        lengths = ctx.gather([float(len(s.completion.token_ids)) for s in scored])
        truncated = ctx.gather([float(s.completion.finish_reason == "length") for s in scored])
        return {
            "reward": sum(flat) / len(flat),
            "reward_std": batch_std,
            "frac_reward_zero_std": _mean(zero_std),
            "solved_all": _mean(solved_all),
            "solved_none": _mean(solved_none),
            "completion_length": sum(lengths) / len(lengths),
            "clipped_ratio": sum(truncated) / len(truncated),
        }


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _sum_over_processes(ctx: Any, values: list[float]) -> list[float]:
    gathered = ctx.gather(values)
    k = len(values)
    return [sum(gathered[i::k]) for i in range(k)]
