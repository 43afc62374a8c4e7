"""`nurl`: GRPO with self-generated hints for the problems the policy cannot solve (Chen et al. 2025).

As GRPO, except that for a group whose G samples all fail, G - 1 samples are drawn again with the
problem's hint appended to the problem (one stays unhinted) and trained under the hinted prompt (as
SAGE, an open implementation of the idea, does). Hints come from `dail-harness data hints` (`--hints
FILE`); no hints at test time. The paper ran it from a 15-epoch GRPO checkpoint (`--init runs/grpo`).
"""

from __future__ import annotations

from dataclasses import dataclass

from dail_harness import registry
from dail_harness.dsyn.hints import load_hints
from dail_harness.errors import HarnessError
from dail_harness.options import PATH, option
from dail_harness.training.group_rl import GroupRLMethod, GRPOOptions


@dataclass
class NuRLOptions(GRPOOptions):
    hints: str | None = option(
        None, path=PATH, help="Hints file from `dail-harness data hints` (one hint per problem)."
    )
    hint_template: str = option(
        "{problem}\n\nHint: {hint}", placeholders=("problem", "hint"), help="How a hint is appended to the problem."
    )


@registry.register("methods", "nurl")
class NuRLMethod(GroupRLMethod):
    """NuRL: GRPO, with hinted regeneration for groups whose samples all fail."""

    name = "nurl"
    Options = NuRLOptions
    needs_sampled_groups = False  # an all-wrong greedy group is redrawn with hints, so its rewards can differ

    def load_rows(self, path):
        rows = super().load_rows(path)
        if not self.options.hints:
            raise HarnessError("nurl needs --hints FILE (make one with `dail-harness data hints`)")
        self.hints = load_hints(self.options.hints, rows)
        return rows

    def revise(self, ctx, rows, groups):
        hinted_groups, solved = 0, []
        for row, group in zip(rows, groups):
            hint = self.hints.get(str(row["problem_id"]))
            if any(s.correct for s in group) or not hint or len(group) < 2:
                continue
            hinted_groups += 1
            problem = self.options.hint_template.replace("{problem}", str(row["problem"])).replace("{hint}", hint)
            prompt = self.prompt_of({**row, "problem": problem})
            redrawn = ctx.sample({str(row["problem_id"]): prompt}, len(group) - 1, tag="hint")
            rescored = self.score(ctx, row, prompt, redrawn[str(row["problem_id"])], hinted=True)
            group[1:] = rescored
            solved += [float(s.correct) for s in rescored]
        counts = ctx.gather([float(hinted_groups), float(len(groups))])
        solved_all = ctx.gather(solved)
        return {
            "hinted_groups": sum(counts[0::2]) / max(sum(counts[1::2]), 1.0),
            "hinted_solve_rate": sum(solved_all) / len(solved_all) if solved_all else 0.0,
        }
