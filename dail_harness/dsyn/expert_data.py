"""Expert data (x, s): loading user files, building an e1-verifiable-style set from HARP, dedup, and
problem rows from DeepScaleR.

Rows have `problem_id, problem, solution` and optionally `answer`. HARP (Yue et al. 2024, MIT) ships
zipped inside the package and is read from the zip, never unzipped: its AIME 1985-2023 problems
become rows whose solution is the AoPS solutions concatenated as `Solution N:` blocks. DeepScaleR
(Luo et al. 2025, MIT; the paper's large RLVR set) is user-supplied and becomes GRPO's problem rows.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import asdict, dataclass
from difflib import SequenceMatcher
from importlib import resources
from pathlib import Path

from dail_harness.dsyn.prompts import join_solutions
from dail_harness.errors import HarnessError
from dail_harness.files import check_field, iter_rows, require_field

HARP_MEMBER = "HARD-Math.jsonl"


@dataclass
class ExpertRecord:
    problem_id: str
    problem: str
    solution: str
    answer: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def load_expert_data(path: str | Path) -> list[ExpertRecord]:
    """Read expert rows from JSONL/JSON/CSV/Parquet; bad rows are one clear error (file, line, field)."""
    records: list[ExpertRecord] = []
    seen: dict[str, int] = {}
    for line, row in iter_rows(path):
        pid = require_field(row, "problem_id", path, line, kind="id")
        if pid in seen:
            raise HarnessError(
                f"duplicate problem_id '{pid}' (first on line {seen[pid]})",
                path=str(path),
                line=line,
                field="problem_id",
            )
        seen[pid] = line
        answer = row.get("answer")
        records.append(
            ExpertRecord(
                pid,
                require_field(row, "problem", path, line),
                require_field(row, "solution", path, line),
                None if answer in (None, "") else check_field(answer, "answer", path, line, kind="answer"),
            )
        )
    if not records:
        raise HarnessError("no expert rows (empty data set)", path=str(path))
    return records


def harp_path() -> Path:
    return Path(str(resources.files("dail_harness").joinpath("data", "HARP.jsonl.zip")))


def build_harp_aime(
    first_year: int = 1985, last_year: int = 2023, path: str | Path | None = None
) -> list[ExpertRecord]:
    """AIME problems of HARP between the years, solutions concatenated, answers without `$`."""
    with zipfile.ZipFile(path or harp_path()) as z:
        lines = z.read(HARP_MEMBER).decode("utf-8").splitlines()
    out = []
    for line in lines:
        if not line.strip():
            continue
        row = json.loads(line)
        if not row["contest"].startswith("AIME") or not first_year <= int(row["year"]) <= last_year:
            continue
        solutions = [row.get(f"solution_{i}") for i in range(1, int(row["num_solutions"]) + 1)]
        out.append(
            ExpertRecord(
                problem_id=f"{row['year']}-{row['contest']}-{row['number']}",
                problem=row["problem"].strip(),
                solution=join_solutions([s for s in solutions if s]),
                answer=row["answer"].strip().strip("$").strip(),
            )
        )
    return out


def _normalize(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^a-z0-9]+", " ", text.lower())).strip()


def find_overlaps(records: list[ExpertRecord], benchmark: dict[str, str], threshold: float = 0.7) -> list[dict]:
    """Pairs (training problem, benchmark problem) whose normalised texts are similar (difflib ratio).

    A cheap word-set Jaccard prefilter keeps this fast; the ratio decides.
    """
    bench = [(bid, _normalize(text), set(_normalize(text).split())) for bid, text in benchmark.items()]
    hits = []
    for r in records:
        norm = _normalize(r.problem)
        words = set(norm.split())
        for bid, btext, bwords in bench:
            if not words or not bwords or len(words & bwords) / len(words | bwords) < threshold / 2:
                continue
            ratio = SequenceMatcher(None, norm, btext, autojunk=False).ratio()
            if ratio >= threshold:
                hits.append({"problem_id": r.problem_id, "benchmark_id": bid, "similarity": round(ratio, 3)})
    return hits


def toy_arithmetic(n: int, seed: int = 0, low: int = 1, high: int = 9, skip: int = 0) -> list[ExpertRecord]:
    """A synthetic expert set for demos and smoke runs (offline, deterministic): sums of two numbers in
    [low, high] with a worked solution and a boxed answer. A toy, not a benchmark.

    The problems are distinct, taken in a fixed seeded order of all pairs: `skip` leaves out the first ones,
    so sets built with the same seed and non-overlapping ranges of that order share no problem."""
    import random

    pairs = [(a, b) for a in range(low, high + 1) for b in range(low, high + 1)]
    if n + skip > len(pairs):
        raise HarnessError(
            f"only {len(pairs)} distinct problems with operands {low}..{high}; asked for {n} after {skip}"
        )
    random.Random(f"toy-arithmetic:{seed}").shuffle(pairs)
    return [
        ExpertRecord(
            problem_id=f"toy-{i}",
            problem=f"What is {a} + {b}?",
            solution=f"We add {a} and {b}: {a} + {b} = {a + b}. The answer is \\boxed{{{a + b}}}.",
            answer=str(a + b),
        )
        for i, (a, b) in enumerate(pairs[skip : skip + n], start=skip)
    ]


def _unwrap_box(s: str) -> str:
    """`\\boxed{X}` / `\\fbox{X}` -> X when the box spans the whole text (braces balanced)."""
    m = re.match(r"\\(?:boxed|fbox)\s*\{", s)
    if not m:
        return s
    depth = 0
    for i in range(m.end() - 1, len(s)):
        depth += {"{": 1, "}": -1}.get(s[i], 0)
        if depth == 0:
            return s[m.end() : i] if i == len(s) - 1 else s
    return s


def _unwrap_math(s: str) -> str:
    """`$X$`, `$$X$$`, `\\(X\\)`, `\\[X\\]` -> X when the delimiters enclose the whole text (`$a$ or $b$` stays)."""
    for left, right in (("$$", "$$"), ("\\(", "\\)"), ("\\[", "\\]"), ("$", "$")):
        inner = s[len(left) : len(s) - len(right)]
        if s.startswith(left) and s.endswith(right) and len(s) > len(left) + len(right) and "$" not in inner:
            return inner
    return s


def normalize_answer(text: str) -> str:
    """A gold answer as our verifiers read it: math delimiters and a whole-answer box removed (repeatedly, so
    `$\\boxed{5}$` is 5), whitespace collapsed."""
    s = " ".join(text.split())
    while True:
        unwrapped = " ".join(_unwrap_box(_unwrap_math(s)).split())
        if unwrapped == s:
            return s
        s = unwrapped


def answer_type_of(answer: str) -> str:
    """`integer` for a plain integer, thousands separators allowed (the integer verifier: zero padding, separators,
    units in the completion), else `math` (symbolic equivalence)."""
    return "integer" if re.fullmatch(r"[+-]?(?:\d+|\d{1,3}(?:,\d{3})+)", answer) else "math"


DEEPSCALER_DROPS = ("empty_problem", "empty_answer", "duplicate")


def convert_deepscaler(path: str | Path) -> tuple[list[dict], dict[str, int]]:
    """DeepScaleR rows (`problem, answer, solution`, as published) -> problem rows for GRPO's `--data`
    (`problem_id, problem, answer, answer_type`, and `solution` when given), with counts of rows read, kept and
    dropped by reason: an empty problem or answer, or a problem whose whitespace-normalised text came earlier.
    A row without a `problem` or `answer` column, or with a value that is not text, is one clear error."""
    rows: list[dict] = []
    counts = dict.fromkeys(("read", "kept", *DEEPSCALER_DROPS, "integer", "math"), 0)
    seen: set[str] = set()
    for line, row in iter_rows(path):
        counts["read"] += 1
        for name in ("problem", "answer"):
            if name not in row:
                raise HarnessError("missing field", path=str(path), line=line, field=name)
        problem = "" if row["problem"] is None else check_field(row["problem"], "problem", path, line, allow_empty=True)
        answer = row["answer"]
        answer = "" if answer is None else check_field(answer, "answer", path, line, kind="answer", allow_empty=True)
        answer = normalize_answer(answer)
        key = " ".join(problem.split())
        reason = "empty_problem" if not problem else "empty_answer" if not answer else ""
        reason = reason or ("duplicate" if key in seen else "")
        if reason:
            counts[reason] += 1
            continue
        seen.add(key)
        out = {"problem_id": f"deepscaler-{line}", "problem": problem, "answer": answer}
        out["answer_type"] = answer_type_of(answer)
        solution = row.get("solution")
        if solution is not None and check_field(solution, "solution", path, line, allow_empty=True):
            out["solution"] = check_field(solution, "solution", path, line)
        counts[out["answer_type"]] += 1
        rows.append(out)
    counts["kept"] = len(rows)
    if not rows:
        raise HarnessError(f"no usable rows ({counts['read']} read, every one dropped)", path=str(path))
    return rows, counts
