"""Training recipes: what a method is, told by where its examples come from.

- `FileMethod` (offline): a fixed file of rows, each turned into a response and the prompts of the
  contexts its loss needs (dail and nll on D_syn, sft on expert solutions).
- `GenerateMethod` (generate, then train): a generation phase with the current model writes the rows,
  then offline training on them (STaR's rationalization).
- `OnlineMethod`: the live policy samples every step; the method scores the samples and turns them
  into examples with per-token weights (GRPO, NuRL, REINFORCE).

The engine (`training/engine.py`) owns everything else: the loop, LoRA, accumulation, DDP sharding,
checkpoints and resume, logging. A method declares its options as a dataclass (`Options`); the
user's values arrive checked in `self.options`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from dail_harness.dsyn.prompts import Templates, negative_prompt, privileged_prompt, student_prompt
from dail_harness.errors import HarnessError
from dail_harness.files import check_field, check_string_list, iter_rows
from dail_harness.options import NoOptions, option, plugin_options

if TYPE_CHECKING:
    from dail_harness.training.examples import Example
    from dail_harness.training.online import OnlineContext


FIELD_KIND = {"problem_id": "id", "answer": "answer"}
"""The kind of each known row field (see `files.FIELD_KINDS`); every other field is text."""
TYPED_FIELDS = ("problem_id", "problem", "solution", "privileged_solution", "trace", "answer", "answer_type")
"""Fields whose type is checked wherever they are present (required ones must also be non-empty)."""


class Method:
    """Base class; subclasses register with `@registry.register("methods", NAME)`."""

    name = ""
    default_loss = "nll"
    source: ClassVar[str] = "file"
    """Where examples come from: "file", "generate" or "online"."""
    uses_templates: ClassVar[bool] = False
    """Whether `prompts` renders the D_syn templates (--templates); a run of a method that does not refuses them."""
    needs_sampled_groups: ClassVar[bool] = False
    """Whether the method learns only from differences within a prompt's samples (GRPO), so that --temperature 0
    (identical samples) is refused."""
    contexts: ClassVar[tuple[str, ...]] = ()
    """The reference contexts `prompts` can build for a loss ("privileged", "negative"); "reference" (the
    student's prompt, adapter off) is the engine's. A loss that needs another is refused."""
    extras: ClassVar[tuple[str, ...]] = ()
    """The per-token values the method's examples carry (e.g. "weight"); a loss that reads another is refused."""
    signal: ClassVar[tuple[str, ...]] = ()
    """The extras that carry what the method learns from (its reward): a loss that reads none of them would
    train on every sample alike, so it is refused."""
    Options: ClassVar[type] = NoOptions
    required_fields: ClassVar[tuple[str, ...]] = ("problem_id", "problem")

    def __init__(self, options: Any = None):
        self.options = options if options is not None else self.Options()

    def unused_options(self) -> dict[str, str]:
        """The options this run of the method would not use, each with who would: refused when a flag gives one,
        a warning when a config file does; a resume may change them."""
        return {}

    def load_rows(self, path: str | Path) -> list[dict]:
        """The data rows (each with `_line`, its line in the file); missing fields are one clear error."""
        rows: list[dict] = []
        empty: dict[str, list[int]] = {}  # the lines of each required field found empty, reported together
        for line, row in iter_rows(path):
            for f in self.required_fields:
                if row.get(f) is None:
                    raise HarnessError("missing field", path=str(path), line=line, field=f)
            for f in dict.fromkeys([*self.required_fields, *TYPED_FIELDS]):
                if f != "waypoints" and row.get(f) is not None:
                    value = check_field(row[f], f, path, line, kind=FIELD_KIND.get(f, "text"), allow_empty=True)
                    if not value and f in self.required_fields:
                        empty.setdefault(f, []).append(line)
            if "waypoints" in row:
                check_string_list(row["waypoints"], "waypoints", path, line)
            rows.append({**row, "_line": line})
        if empty:
            raise empty_rows_error(path, empty)
        if not rows:
            raise HarnessError("no training rows (empty data set)", path=str(path))
        return rows


def empty_rows_error(path: str | Path, empty: dict[str, list[int]]) -> HarnessError:
    """One line for every row whose required field is empty: which lines, how many, and how to drop them."""
    found = "; ".join(
        f"{len(lines)} row{'s' * (len(lines) > 1)} with an empty '{f}' (line{'s' * (len(lines) > 1)} "
        f"{', '.join(map(str, lines[:10]))}{', ...' if len(lines) > 10 else ''})"
        for f, lines in empty.items()
    )
    keep = " and ".join(f'(.{f} | tostring | test("\\\\S"))' for f in empty)
    hint = f"drop them: jq -c 'select({keep})' {path} > kept.jsonl"
    if "trace" in empty:  # a D_syn file: a rerun of `generate` re-selects without regenerating, leaving them out
        hint += "; or rerun the `dail-harness generate` command that wrote it (it re-selects without empty traces)"
    return HarnessError(f"{found}: nothing to train on; {hint}", path=str(path))


class FileMethod(Method):
    """Offline: examples from a fixed file of rows."""

    source = "file"
    uses_templates = True
    contexts: ClassVar[tuple[str, ...]] = ("privileged", "negative")
    required_fields: ClassVar[tuple[str, ...]] = ("problem_id", "problem", "trace")

    def response(self, row: dict) -> str:
        return row["trace"]

    def prompts(self, row: dict, contexts: tuple[str, ...], templates: Templates) -> dict[str, str]:
        """The user-turn text of the student context and of each reference context the loss needs."""
        out = {"student": student_prompt(row["problem"], templates)}
        if "privileged" in contexts:
            solution = row.get("privileged_solution") or row.get("solution")
            if not solution:
                raise HarnessError(
                    f"row '{row['problem_id']}' (line {row['_line']}) has no solution for the privileged context",
                    field="solution",
                )
            out["privileged"] = privileged_prompt(row["problem"], solution, templates)
        if "negative" in contexts:
            if "waypoints" not in row:
                raise HarnessError(
                    f"row '{row['problem_id']}' (line {row['_line']}) has no waypoints for the negative reference",
                    field="waypoints",
                )
            out["negative"] = negative_prompt(row["problem"], row["waypoints"], row.get("answer"), templates)
        return out


class GenerateMethod(FileMethod):
    """Generate, then train: each iteration, `generate` turns problem rows into training rows with the current
    model (sampling and grading through `ctx`); the engine stores them (resumably, one file per process) and
    trains offline on the rows that have a `trace`, from the base model."""

    source = "generate"

    def generate(self, ctx: OnlineContext, rows: list[dict]) -> list[dict]:
        """One output row per input row (`problem_id`, `source`, and the `trace` to train on, None to drop)."""
        raise NotImplementedError


@dataclass
class OnlineOptions:
    """What every online method shares: how many prompts a step takes and how many samples each gets."""

    prompts_per_step: int = option(8, ge=1, help="Prompts per optimizer step (the paper's GRPO: 64).")
    group_size: int = option(
        8,
        ge=2,
        help="Samples per prompt, at least 2: the advantage compares a prompt's samples (the paper's GRPO: 32).",
    )
    prompt: str = option(
        "{problem}\n\nPlease reason step by step, and put your final answer within \\boxed{}.",
        placeholders=("problem",),
        help="User-turn template of the policy's prompt ({problem} is replaced); default: the evaluation prompt.",
    )


@dataclass
class Rollout:
    """One step's examples from the live policy, with what the method wants logged about them."""

    examples: list[Example]
    stats: dict[str, float] = field(default_factory=dict)


class OnlineMethod(Method):
    """Online: every step the live policy samples through a back-end, the verifiers score the samples,
    and `rollout` turns them into weighted examples."""

    source = "online"
    default_loss = "pg"
    extras: ClassVar[tuple[str, ...]] = ("weight",)
    signal: ClassVar[tuple[str, ...]] = ("weight",)
    Options: ClassVar[type] = OnlineOptions
    required_fields: ClassVar[tuple[str, ...]] = ("problem_id", "problem", "answer")

    def rollout(self, ctx: OnlineContext, rows: list[dict]) -> Rollout:
        raise NotImplementedError


def make_method(name: str, given: dict | None = None, wheres: dict | None = None) -> Method:
    """The registered method `name` with its options built (and checked) from `given`."""
    from dail_harness import registry

    cls = registry.get("methods", name)
    return cls(plugin_options(cls.Options, given or {}, kind="method", name=name, wheres=wheres))
