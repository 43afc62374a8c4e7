"""BeyondAIME (ByteDance Seed, CC0): 100 problems with integer answers up to 33,124,147."""

from __future__ import annotations

from dail_harness import registry
from dail_harness.eval.task import VendoredTask


@registry.register("tasks", "beyondaime", aliases=("beyond-aime",))
class BeyondAime(VendoredTask):
    """BeyondAIME: 100 AIME-style problems with larger integer answers."""

    name = "beyondaime"
    filename = "beyondaime.jsonl"
    expected_count = 100
