"""`dail-harness grade`: (re-)grade a JSONL file of completions; output written atomically."""

from __future__ import annotations

from pathlib import Path

from dail_harness import registry
from dail_harness.errors import HarnessError
from dail_harness.eval.grading import DEFAULT_TIMEOUT_S, GradeJob, grade_jobs
from dail_harness.files import atomic_write_jsonl, check_field, iter_jsonl
from dail_harness.verifiers.simple import simple_correct


def read_grade_jobs(path: str | Path) -> tuple[list[dict], list[GradeJob]]:
    rows, jobs = [], []
    known = registry.names("verifiers")
    for line, row in iter_jsonl(path):
        for f in ("completion", "gold", "answer_type"):
            if f not in row:
                raise HarnessError("missing field", path=str(path), line=line, field=f)
        check_field(row["completion"], "completion", path, line, allow_empty=True)
        gold = check_field(row["gold"], "gold", path, line, kind="answer")
        check_field(row["answer_type"], "answer_type", path, line)
        if row.get("finish_reason") is not None:
            check_field(row["finish_reason"], "finish_reason", path, line)
        if row["answer_type"] not in known:
            raise HarnessError(
                f"must be one of {', '.join(known)}, got {row['answer_type']!r}{registry.plugin_hint('verifiers')}",
                path=str(path),
                line=line,
                field="answer_type",
            )
        rows.append(row)
        jobs.append(GradeJob(row["completion"], gold, row["answer_type"], row.get("finish_reason")))
    if not rows:
        raise HarnessError("no rows to grade (empty file)", path=str(path))
    return rows, jobs


def grade_file(
    input_path: str | Path,
    output_path: str | Path,
    *,
    workers: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    progress: bool = True,
) -> dict:
    """Grade every row; returns counts (rows, correct, no_answer, timeouts)."""
    from tqdm import tqdm

    rows, jobs = read_grade_jobs(input_path)
    with tqdm(total=len(jobs), desc="grade", unit="row", disable=not progress) as bar:
        verdicts = grade_jobs(jobs, workers=workers, timeout_s=timeout_s, on_done=bar.update)
    out = []
    for row, job, v in zip(rows, jobs, verdicts):
        out.append(
            {
                **row,
                "correct": v.correct,
                "extracted": v.extracted,
                "no_answer": v.no_answer,
                "grading_timed_out": v.timed_out,
                "simple_correct": simple_correct(row["completion"], job.gold),
            }
        )
    atomic_write_jsonl(output_path, out)
    return {
        "rows": len(out),
        "correct": sum(v.correct for v in verdicts),
        "simple_agreement": sum(r["simple_correct"] == r["correct"] for r in out) / len(out),
        "no_answer": sum(v.no_answer for v in verdicts),
        "timeouts": sum(v.timed_out for v in verdicts),
    }
