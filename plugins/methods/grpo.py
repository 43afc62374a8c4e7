"""`grpo`: Group Relative Policy Optimization (Shao et al. 2024) on the live policy, TRL's definitions.

Each step: `--prompts-per-step` problems, `--group-size` samples each from the model being trained,
rewards from a verifier, group-relative advantages, and the clipped surrogate (`grpo` loss). The paper's
settings ship as `configs/paper/grpo-*.yaml` (README, "Baselines").
"""

from __future__ import annotations

from dail_harness import registry
from dail_harness.training.group_rl import GroupRLMethod


@registry.register("methods", "grpo")
class GRPOMethod(GroupRLMethod):
    """GRPO: G samples per prompt from the live policy, verifier rewards, group-relative advantages."""

    name = "grpo"
