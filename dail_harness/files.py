"""File I/O: JSONL with precise errors, atomic writes, whole-line appends, and user data files.

A kill at any moment must leave every file either complete or absent; appended stores may end in a
partial last line, which readers drop (it was never acknowledged as written).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from dail_harness.errors import HarnessError


def iter_jsonl(path: str | os.PathLike, *, allow_partial_tail: bool = False) -> Iterator[tuple[int, dict]]:
    """Yield (line_number, object) for each non-empty line; raise HarnessError on a bad line.

    With allow_partial_tail, a final line without a newline that fails to parse is skipped: it is
    the remains of an append interrupted by a kill.
    """
    path = Path(path)
    if not path.exists():
        raise HarnessError("file not found", path=str(path))
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    ends_with_newline = data.endswith(b"\n")
    for i, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        is_tail = i == len(lines) and not ends_with_newline
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            if is_tail and allow_partial_tail:
                return
            raise HarnessError(f"malformed JSON ({e.__class__.__name__}: {e})", path=str(path), line=i) from None
        if not isinstance(obj, dict):
            raise HarnessError("expected a JSON object per line", path=str(path), line=i)
        yield i, obj


def read_jsonl(path: str | os.PathLike, **kw) -> list[dict]:
    return [obj for _, obj in iter_jsonl(path, **kw)]


def current_umask() -> int:
    """This process's umask; read from /proc where it can be, since setting it to read it races with threads."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def umask_mode(*, directory: bool) -> int:
    """The mode `open` or `mkdir` would give a new file or directory: 0666 or 0777 less the umask."""
    return (0o777 if directory else 0o666) & ~current_umask()


def temp_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """`tempfile.mkdtemp` in `parent`, with the umask's mode instead of 0700: it becomes an output directory
    (a checkpoint, a merged model) by a rename, and other users and groups the umask allows must read it."""
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    os.chmod(tmp, umask_mode(directory=True))
    return tmp


def apply_umask_modes(root: str | os.PathLike) -> None:
    """Give every file and directory under `root` the umask's mode: libraries write some files 0600 (safetensors
    >= 0.6 saves through a private temp file), which would make adapters and merged weights unreadable to the
    group the umask shares them with. For data trees: nothing in them stays executable."""
    root = Path(root)
    os.chmod(root, umask_mode(directory=True))
    for p in root.rglob("*"):
        if not p.is_symlink():
            os.chmod(p, umask_mode(directory=p.is_dir()))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write text to path via a temp file in the same directory and a rename; the file gets the umask's mode
    (mkstemp's own 0600 would make every summary and settings file private)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, umask_mode(directory=False))
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def atomic_write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def append_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Append rows as whole lines in a single write, then fsync."""
    payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    if not payload:
        return
    with open(path, "ab") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())


def repair_partial_tail(path: str | os.PathLike) -> int:
    """Cut a trailing partial line (left by a kill mid-append); return the bytes removed."""
    path = Path(path)
    if not path.exists():
        return 0
    with open(path, "rb+") as f:
        data = f.read()
        if not data or data.endswith(b"\n"):
            return 0
        keep = data.rfind(b"\n") + 1
        f.truncate(keep)
        return len(data) - keep


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


FIELD_KINDS = {
    "text": (str,),
    "id": (str, int),
    "answer": (str, int, float),
}
"""What a row field may hold: text (problems, solutions, traces), an id (a string or an integer), an answer
(a string or a number). Anything else (a list, an object, a boolean) is refused, naming the type found."""


def type_name(value: object) -> str:
    return {list: "a list", dict: "an object", bool: "a boolean", int: "a number", float: "a number"}.get(
        type(value), f"a {type(value).__name__}"
    )


def require_field(
    row: dict, name: str, path: str | Path, line: int, *, kind: str = "text", allow_empty: bool = False
) -> str:
    """Return row[name] as a stripped string, or raise a HarnessError naming file, line and field (missing,
    empty, or of the wrong type for `kind`: see FIELD_KINDS)."""
    if name not in row or row[name] is None:
        raise HarnessError("missing field", path=str(path), line=line, field=name)
    return check_field(row[name], name, path, line, kind=kind, allow_empty=allow_empty)


def check_field(
    value: object, name: str, path: str | Path, line: int, *, kind: str = "text", allow_empty: bool = False
) -> str:
    """A present field's value as a stripped string, checked against `kind` (see FIELD_KINDS)."""
    allowed = FIELD_KINDS[kind]
    if isinstance(value, bool) or not isinstance(value, allowed):
        expected = {"text": "a string", "id": "a string or an integer", "answer": "a string or a number"}[kind]
        raise HarnessError(f"must be {expected}, found {type_name(value)}", path=str(path), line=line, field=name)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    value = str(value).strip()
    if not value and not allow_empty:
        raise HarnessError("empty field", path=str(path), line=line, field=name)
    return value


def check_string_list(value: object, name: str, path: str | Path, line: int) -> list[str]:
    """A field that must be a list of strings (waypoints)."""
    if not isinstance(value, list):
        raise HarnessError(
            f"must be a list of strings, found {type_name(value)}", path=str(path), line=line, field=name
        )
    bad = next((v for v in value if not isinstance(v, str)), None)
    if bad is not None:
        raise HarnessError(
            f"must be a list of strings, found an item that is {type_name(bad)}", path=str(path), line=line, field=name
        )
    return value
