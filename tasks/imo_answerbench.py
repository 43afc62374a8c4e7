"""IMO-AnswerBench v1 (Luong et al. 2025, CC-BY 4.0): 400 olympiad problems with short answers."""

from __future__ import annotations

from dail_harness import registry
from dail_harness.files import iter_rows, require_field
from dail_harness.records import Problem
from dail_harness.eval.task import Task, data_path


@registry.register("tasks", "imo-answerbench", aliases=("imo_answerbench", "imobench", "answerbench"))
class ImoAnswerBench(Task):
    """IMO-AnswerBench v1: 400 problems; 228 integer answers, the rest LaTeX or text (graded as math)."""

    name = "imo-answerbench"
    answer_type = "math"
    expected_count = 400

    def load_problems(self) -> list[Problem]:
        path = data_path("imo_answerbench_v1.csv")
        out = []
        for line, row in iter_rows(path):
            out.append(Problem(
                id=require_field(row, "Problem ID", path, line),
                problem=require_field(row, "Problem", path, line),
                answer=require_field(row, "Short Answer", path, line),
                answer_type="math",
                metadata={k: row.get(k, "") for k in ("Category", "Subcategory", "Source")},
            ))
        return out
