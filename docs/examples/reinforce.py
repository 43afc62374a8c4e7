"""An online method: REINFORCE with a verifier reward and a per-prompt baseline (see CONTRIBUTING.md).

Every step the engine hands the method its share of the step's prompts. The method samples
`group_size` completions per prompt from the live policy (`ctx.sample`), scores them with the row's
verifier (`ctx.grade`), and gives every sampled token the weight (reward - group mean) / (tokens this
step); the built-in `pg` loss then descends -sum(weight x log-probability), the REINFORCE gradient.
LoRA, accumulation, checkpoints, resume and logging are the engine's.

    dail-harness train --plugin-dir docs/examples --method reinforce --data problems.jsonl --model tiny-random ...
"""

from __future__ import annotations

from dail_harness import registry
from dail_harness.training.recipes import OnlineMethod, Rollout


@registry.register("methods", "reinforce")
class Reinforce(OnlineMethod):
    """REINFORCE with a verifier reward and a per-prompt mean baseline (an example online method)."""

    name = "reinforce"
    default_loss = "pg"

    def rollout(self, ctx, rows):
        prompts = {row["problem_id"]: self.options.prompt.replace("{problem}", row["problem"]) for row in rows}
        samples = ctx.sample(prompts, self.options.group_size)
        tokens = sum(len(c.token_ids) for group in samples.values() for c in group)
        examples, rewards = [], []
        for row in rows:
            group = samples[row["problem_id"]]
            verdicts = ctx.grade(group, [row["answer"]] * len(group), [row.get("answer_type", "math")] * len(group))
            group_rewards = [v.reward for v in verdicts]
            baseline = sum(group_rewards) / len(group_rewards)
            prompt_ids = ctx.prompt_ids(prompts[row["problem_id"]])
            for completion, reward in zip(group, group_rewards):
                weight = (reward - baseline) / tokens
                examples.append(
                    ctx.example(row["problem_id"], prompt_ids, completion, weight=[weight] * len(completion.token_ids))
                )
            rewards += group_rewards
        return Rollout(examples, {"reward": sum(rewards) / len(rewards)})
