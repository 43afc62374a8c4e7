"""IMO-AnswerBench v1 (Luong et al. 2025, CC-BY 4.0): 400 olympiad problems with short answers."""

from __future__ import annotations

from typing import ClassVar

from dail_harness import registry
from dail_harness.eval.task import VendoredTask


@registry.register("tasks", "imo-answerbench", aliases=("imo_answerbench", "imobench", "answerbench"))
class ImoAnswerBench(VendoredTask):
    """IMO-AnswerBench v1: 400 problems; 228 integer answers, the rest LaTeX or text (graded as math)."""

    name = "imo-answerbench"
    answer_type = "math"
    expected_count = 400
    filename = "imo_answerbench_v1.csv"
    columns: ClassVar[dict[str, str | None]] = {"id": "Problem ID", "problem": "Problem", "answer": "Short Answer"}
    metadata_columns: ClassVar[tuple[str, ...]] = ("Category", "Subcategory", "Source")
