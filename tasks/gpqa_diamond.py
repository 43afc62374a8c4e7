"""GPQA-Diamond (198 questions), loaded from a user-supplied copy: it is never vendored.

The GPQA authors ask that examples not be revealed online, so the harness ships no data. Point it at
the official `gpqa_diamond.csv` (or the password-protected `dataset.zip` from the GPQA repository)
with `--data PATH` or the `DAIL_GPQA_PATH` environment variable. Options are shuffled
deterministically per question (seeded by `shuffle_seed` and the Record ID) and the gold letter is
tracked, so every run and every back-end sees the same order.
"""

from __future__ import annotations

import csv
import io
import os
import random
import zipfile
from pathlib import Path

from dail_harness import registry
from dail_harness.errors import HarnessError
from dail_harness.eval.task import Task
from dail_harness.files import iter_rows, require_field
from dail_harness.records import Problem

ENV_VAR = "DAIL_GPQA_PATH"
LETTERS = "ABCD"
ZIP_PASSWORD = b"deserted-untie-orchid"  # published in the GPQA README, meant for this use
ZIP_MEMBER = "dataset/gpqa_diamond.csv"

HOW_TO_GET = (
    "GPQA-Diamond is not shipped with dail-harness (its authors ask that examples not be posted "
    "online). Download `dataset.zip` from https://github.com/idavidrein/gpqa (password in its "
    f"README) or `gpqa_diamond.csv` from the Hugging Face dataset Idavidrein/gpqa, then pass "
    f"`--data /path/to/gpqa_diamond.csv` (or dataset.zip) or set {ENV_VAR}."
)

# simple-evals' multiple-choice template, so numbers compare with the usual GPQA reports.
GPQA_PROMPT = (
    "Answer the following multiple choice question. The last line of your response should be of the "
    "following format: 'Answer: $LETTER' (without quotes) where LETTER is one of ABCD. Think step by "
    "step before answering.\n\n{problem}"
)


def shuffle_options(record_id: str, correct: str, incorrect: list[str], seed: int) -> tuple[list[str], str]:
    """Return the four options in a deterministic per-question order and the gold letter."""
    options = [correct] + list(incorrect)
    order = list(range(4))
    random.Random(f"gpqa:{seed}:{record_id}").shuffle(order)
    shuffled = [options[i] for i in order]
    return shuffled, LETTERS[order.index(0)]


@registry.register("tasks", "gpqa-diamond", aliases=("gpqa", "gpqa_diamond"))
class GpqaDiamond(Task):
    """GPQA-Diamond: 198 multiple-choice science questions (user-supplied CSV; options shuffled)."""

    options_used = frozenset({"data", "shuffle_seed"})

    name = "gpqa-diamond"
    answer_type = "choice"
    expected_count = 198
    prompt_template = GPQA_PROMPT

    def _rows(self) -> tuple[str, list[tuple[int, dict]]]:
        path = self.options.get("data") or os.environ.get(ENV_VAR)
        if not path:
            raise HarnessError("gpqa-diamond needs its data file. " + HOW_TO_GET)
        p = Path(path)
        if not p.exists():
            raise HarnessError("GPQA-Diamond file not found. " + HOW_TO_GET, path=str(p))
        if p.suffix.lower() == ".zip":
            with zipfile.ZipFile(p) as z:
                try:
                    text = z.read(ZIP_MEMBER, pwd=ZIP_PASSWORD).decode("utf-8")
                except KeyError:
                    raise HarnessError(f"zip has no member {ZIP_MEMBER}", path=str(p)) from None
            reader = csv.DictReader(io.StringIO(text))
            return str(p), [(reader.line_num, row) for row in reader]
        return str(p), list(iter_rows(p))

    def load_problems(self) -> list[Problem]:
        path, rows = self._rows()
        seed = int(self.options.get("shuffle_seed", 0))
        out = []
        for line, row in rows:
            rid = require_field(row, "Record ID", path, line)
            question = require_field(row, "Question", path, line)
            correct = require_field(row, "Correct Answer", path, line)
            incorrect = [require_field(row, f"Incorrect Answer {i}", path, line) for i in (1, 2, 3)]
            options, gold = shuffle_options(rid, correct, incorrect, seed)
            text = question + "\n\n" + "\n".join(f"{L}) {o}" for L, o in zip(LETTERS, options))
            out.append(
                Problem(
                    id=rid,
                    problem=text,
                    answer=gold,
                    answer_type="choice",
                    metadata={"options": options, "shuffle_seed": seed, "domain": row.get("High-level domain", "")},
                )
            )
        return out
