"""Read user data files (JSONL, JSON list, CSV, Parquet) into dict rows with line numbers.

Every row comes with the line (JSONL, CSV) or row index (Parquet, JSON) it came from, so errors can
point at the exact place to fix.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterator

from dail_harness.errors import HarnessError
from dail_harness.jsonio import iter_jsonl

SUPPORTED = (".jsonl", ".json", ".csv", ".parquet")


def iter_rows(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield (line_or_row_number, row) from a JSONL/JSON/CSV/Parquet file."""
    path = Path(path)
    if not path.exists():
        raise HarnessError("file not found", path=str(path))
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        yield from iter_jsonl(path)
    elif suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise HarnessError(f"malformed JSON: {e}", path=str(path), line=e.lineno) from None
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise HarnessError("expected a JSON list of objects", path=str(path))
        yield from enumerate(data, start=1)
    elif suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None:
                return
            for row in reader:
                # reader.line_num is the line where this record ends; records may span lines.
                if None in row:
                    raise HarnessError("row has more cells than the header", path=str(path), line=reader.line_num)
                yield reader.line_num, row
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as e:
            raise HarnessError(f"cannot read Parquet: {e}", path=str(path)) from None
        for i, row in enumerate(table.to_pylist(), start=1):
            yield i, row
    else:
        raise HarnessError(f"unsupported file type '{suffix}' (use one of {', '.join(SUPPORTED)})", path=str(path))


def require_field(row: dict, name: str, path: str | Path, line: int, *, allow_empty: bool = False) -> str:
    """Return row[name] as a stripped string, or raise a HarnessError naming file, line and field."""
    if name not in row or row[name] is None:
        raise HarnessError("missing field", path=str(path), line=line, field=name)
    value = row[name]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    value = str(value).strip()
    if not value and not allow_empty:
        raise HarnessError("empty field", path=str(path), line=line, field=name)
    return value
