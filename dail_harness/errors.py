"""One exception type for bad user input, so the CLI can print one clear line and exit non-zero."""

from __future__ import annotations


def did_you_mean(name: str, candidates, *, n: int = 1, cutoff: float = 0.6) -> str:
    """ "did you mean 'a' or 'b'?" for the closest candidates, or "" when none is close."""
    import difflib

    close = difflib.get_close_matches(name, list(candidates), n=n, cutoff=cutoff)
    return f"did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


class HarnessError(Exception):
    """A problem the user can fix (bad file, unknown name, inconsistent settings).

    The message names the file, line and field where they are known.
    """

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None, field: str | None = None):
        where = []
        if path is not None:
            where.append(str(path) + (f":{line}" if line is not None else ""))
        if field is not None:
            where.append(f"field '{field}'")
        prefix = (", ".join(where) + ": ") if where else ""
        super().__init__(prefix + message)
        self.path, self.line, self.field = path, line, field
