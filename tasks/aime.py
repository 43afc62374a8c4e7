"""AIME 2024 and AIME 2025 (30 problems each; integer answers 0-999)."""

from __future__ import annotations

from dail_harness import registry
from dail_harness.eval.task import VendoredTask


@registry.register("tasks", "aime24", aliases=("aime2024", "aime-2024"))
class Aime24(VendoredTask):
    """AIME 2024 I and II (30 problems)."""

    name = "aime24"
    filename = "aime24.jsonl"
    expected_count = 30


@registry.register("tasks", "aime25", aliases=("aime2025", "aime-2025"))
class Aime25(VendoredTask):
    """AIME 2025 I and II (30 problems)."""

    name = "aime25"
    filename = "aime25.jsonl"
    expected_count = 30
