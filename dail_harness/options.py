"""Typed options: config dataclasses are the one source of defaults, help texts and valid ranges.

A command's settings are a dataclass whose fields are declared with `option(...)`. The CLI builds its
flags from those fields (`dail_harness.cli.options`), YAML config files set the same fields, and
`build` coerces and checks every value once: a bad value is one error naming the flag (or the file
and key) and what is allowed. Plugins (methods, losses) declare their own options the same way and
receive them through `plugin_options`, which rejects options they do not have and lists the ones
they do.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import operator
import os
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any

from dail_harness.errors import HarnessError, did_you_mean


@dataclass(frozen=True)
class Spec:
    """How one field is shown and checked (kept in the field's metadata)."""

    help: str = ""
    flag: str | None = None
    """Command-line flag, e.g. `--top-p`, `--output -o` (a short form too), or `--static-cache/--dynamic-cache`
    for a boolean pair (default: the field name with dashes)."""
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple | None = None
    placeholders: tuple[str, ...] = ()
    """A template's fields that must appear in it, e.g. ("problem",) for `{problem}`: one left out would leave
    that text out of every prompt."""
    parse: Callable[[str], Any] | None = None
    """Turns the command-line (or config-file) text into the value, e.g. `0/4` -> (0, 4)."""
    repeat: bool = False
    """A list given by repeating the flag (`--stop a --stop b`); other lists are comma-separated."""
    positional: bool = False
    """A command-line argument rather than an option."""
    cli: bool = True
    """False: not a flag (set by code or by a config file only)."""
    panel: str | None = None
    """The `--help` section the flag is listed in."""
    metavar: str | None = None
    content: bool = False
    """A file whose text determines the output (a template): settings records hold its SHA-256 beside the path
    (`NAME_sha256`), so a file edited between a run and its resume is a changed setting."""
    path: str | None = None
    """PATH: a file or directory (each item of a list): relative in a config file, it is relative to that file's
    directory. PATH_OR_NAME: the same where it names an existing path there or begins with `./` or `../`, else a
    name (a hub id, a task, `tiny-random`) kept as written. Command-line values stay relative to the cwd."""


PATH = "path"
PATH_OR_NAME = "path-or-name"


def option(default: Any = MISSING, *, default_factory: Any = MISSING, **spec: Any) -> Any:
    """A dataclass field with its help, flag and valid range (see `Spec`)."""
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"spec": Spec(**spec)})


def spec_of(f: dataclasses.Field) -> Spec:
    return f.metadata.get("spec") or Spec()


def flag_of(f: dataclasses.Field) -> str:
    """The flag that names this field in messages (the first of a `--a/--b` pair)."""
    s = spec_of(f)
    if s.flag:
        return s.flag.split()[0].split("/")[0]
    return f.name.upper() if s.positional else "--" + f.name.replace("_", "-")


def has_default(f: dataclasses.Field) -> bool:
    return f.default is not MISSING or f.default_factory is not MISSING


def default_of(f: dataclasses.Field) -> Any:
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None if f.default is MISSING else f.default


def fields_of(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    """(field, resolved type) for each field of a config dataclass."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else functools.reduce(operator.or_, rest)), True
    return tp, False


def base_type(tp: Any) -> tuple[Any, Any, bool]:
    """(container origin or None, element or plain type, optional) of a field type."""
    tp, optional = _unwrap_optional(tp)
    origin = typing.get_origin(tp)
    if origin in (list, tuple, dict):
        args = typing.get_args(tp)
        return origin, (args[-1] if args else str), optional
    return None, tp, optional


class Where:
    """Names the place a value came from, for error messages."""

    def __init__(self, flag: str, path: str | None = None, key: str | None = None):
        self.flag, self.path, self.key = flag, path, key

    def error(self, message: str) -> HarnessError:
        if self.path is not None:
            return HarnessError(message, path=self.path, field=self.key)
        return HarnessError(f"{self.flag}: {message}")


def _scalar(value: Any, tp: Any, where: Where) -> Any:
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise where.error(f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise where.error(f"expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise where.error(f"expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise where.error(f"expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise where.error(f"expected text, got {value!r}")
    return value


def coerce(value: Any, f: dataclasses.Field, tp: Any, where: Where) -> Any:
    """The field's value from command-line text or a config-file value, type-checked. A YAML list given to a text
    field is its command-line form, comma-separated (`k: [1, 2, 4]` is `--k 1,2,4`)."""
    spec = spec_of(f)
    origin, elem, optional = base_type(tp)
    if value is None:
        if optional or not has_default(f):
            return None
        raise where.error("a value is required")
    if origin is None and elem is str and isinstance(value, (list, tuple)):
        value = ",".join(_scalar(v, str, where) for v in value)
    if spec.parse is not None and isinstance(value, str):
        try:
            return spec.parse(value)
        except HarnessError as e:
            raise where.error(str(e).split(": ", 1)[-1]) from None
        except ValueError as e:
            raise where.error(str(e)) from None
    if origin is dict:
        pairs: list[tuple[Any, Any]] = []
        if isinstance(value, dict):
            pairs = list(value.items())
        else:
            for p in [value] if isinstance(value, str) else list(value):
                if not isinstance(p, str) or "=" not in p:
                    raise where.error(f"expected KEY=VALUE, got {p!r}")
                k, v = p.split("=", 1)
                pairs.append((k.strip(), v))
        keys = [str(k) for k, _ in pairs]
        twice = next((k for k in keys if keys.count(k) > 1), None)
        if twice is not None:  # the last one would win without a word
            raise where.error(f"{twice} is given twice")
        return {str(k): _scalar(v, elem, where) for k, v in pairs}
    if origin in (list, tuple):
        if isinstance(value, str):
            parts = [value] if spec.repeat else [x for x in value.split(",") if x.strip()]
        elif isinstance(value, (list, tuple)):
            parts = list(value)
        else:
            parts = [value]
        if not parts:
            raise where.error("empty list")
        values = [_scalar(x.strip() if isinstance(x, str) and not spec.repeat else x, elem, where) for x in parts]
        return list(dict.fromkeys(values)) if not spec.repeat else values
    return _scalar(value, elem, where)


def from_config_dir(value: Any, config_dir: Path, kind: str) -> Any:
    """A path field's value (or each item of a list) as read from a config file in `config_dir`: relative paths
    are joined to that directory (lexically: `configs/x/../../runs` is `runs`), so a config and the files it
    names move together; see `Spec.path` for names that are not paths."""
    if isinstance(value, list):
        return [from_config_dir(v, config_dir, kind) for v in value]
    if not isinstance(value, str) or not value.strip():
        return value
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    joined = os.path.normpath(config_dir / path)
    explicit = value.startswith(("./", "../")) or value in (".", "..")
    if kind == PATH_OR_NAME and not explicit and not Path(joined).exists():
        return value
    return joined


def _describe_range(s: Spec) -> str:
    parts = []
    for op, v in ((">=", s.ge), (">", s.gt), ("<=", s.le), ("<", s.lt)):
        if v is not None:
            parts.append(f"{op} {v:g}")
    return " and ".join(parts)


def missing_placeholder(template: str, names: Sequence[str]) -> str | None:
    """The first of `names` whose `{name}` the template lacks (its text would be left out of every prompt)."""
    return next((n for n in names if "{" + n + "}" not in template), None)


def read_template(path_text: str, names: Sequence[str], what: str = "prompt template") -> str:
    """A template file's text, with one error for a missing file or placeholder."""
    path = Path(path_text)
    if not path.exists():
        raise HarnessError(f"{what} file not found", path=str(path))
    text = path.read_text(encoding="utf-8")
    missing = missing_placeholder(text, names)
    if missing:
        raise HarnessError(f"{what} has no {{{missing}}} placeholder", path=str(path))
    return text


def check_value(value: Any, f: dataclasses.Field, where: Where) -> None:
    """Range and choice checks, for a value or each element of a list."""
    s = spec_of(f)
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if v is None:
            continue
        if s.choices is not None and v not in s.choices:
            hint = did_you_mean(str(v), [str(c) for c in s.choices]) if isinstance(v, str) else ""
            allowed = ", ".join(str(c) for c in s.choices)
            raise where.error(f"must be one of {allowed}, got {v!r}" + (f"; {hint}" if hint else ""))
        missing = missing_placeholder(v, s.placeholders) if isinstance(v, str) else None
        if missing:
            names = " and ".join("{" + p + "}" for p in s.placeholders)
            raise where.error(f"the template must contain {names}; {{{missing}}} is missing from {v!r}")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            bad = (
                (s.ge is not None and v < s.ge)
                or (s.gt is not None and v <= s.gt)
                or (s.le is not None and v > s.le)
                or (s.lt is not None and v >= s.lt)
            )
            if bad or v != v:  # NaN fails every range
                raise where.error(f"must be {_describe_range(s)}, got {v:g}")


def refuse_unused(unused: dict[str, str], chosen: dict[str, Where], context: str = "") -> None:
    """A setting the run would not use (`unused`: name -> who would use it) is refused when a flag gives it, and
    named in a warning when a config file does (a flag may have made the file's key moot, e.g. --lora-r 0 over
    a LoRA config's lora_alpha): either way nothing is ignored silently."""
    import sys

    for name, where in chosen.items():
        if name not in unused:
            continue
        if where.path is None:
            raise where.error(f"this run does not use it{context}: {unused[name]}")
        print(
            f"warning: {where.path}, key '{where.key}' is not used by this run{context}: {unused[name]}",
            file=sys.stderr,
        )


def build(cls: type, values: dict[str, Any], wheres: dict[str, Where] | None = None) -> Any:
    """A validated config from raw values (command line and/or config file); missing fields keep
    their defaults. Raises one HarnessError naming the first bad value."""
    wheres = wheres or {}
    kwargs = {}
    for f, tp in fields_of(cls):
        where = wheres.get(f.name) or Where(flag_of(f))
        if f.name in values:
            value = coerce(values[f.name], f, tp, where)
            kind = spec_of(f).path
            if where.path is not None and kind is not None:
                value = from_config_dir(value, Path(where.path).parent, kind)
        elif has_default(f):
            value = default_of(f)
        else:
            raise HarnessError(f"missing {flag_of(f)} (required)")
        check_value(value, f, where)
        kwargs[f.name] = value
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if callable(check):
        check()
    return obj


def replace_checked(cfg: Any, **changes: Any) -> Any:
    """`dataclasses.replace` that validates the changed values like `build` does."""
    return build(type(cfg), {**dataclasses.asdict(cfg), **changes})


@dataclass
class NoOptions:
    """For plugins without options."""


def plugin_options(
    cls: type, given: dict[str, Any], *, kind: str, name: str, wheres: dict[str, Where] | None = None
) -> Any:
    """Build a plugin's options dataclass from the options the user gave it (flags, config keys or
    `--KIND-opt KEY=VALUE`); an option the plugin does not have is one error listing the valid ones."""
    known = {f.name for f in dataclasses.fields(cls)}
    for key in given:
        if key not in known:
            valid = ", ".join(sorted(known)) or "none"
            hint = did_you_mean(key, known)
            where = (wheres or {}).get(key)
            label = where.flag if where is not None else key
            raise HarnessError(
                f"{label} is not an option of {kind} '{name}'"
                + (f" ({hint})" if hint else "")
                + f"; its options: {valid}"
            )
    return build(cls, given, wheres)


def describe(cls: type) -> list[tuple[str, str, str]]:
    """(flag, default, help) rows of a config dataclass, for docs and `--help`."""
    rows = []
    for f, _ in fields_of(cls):
        s = spec_of(f)
        rows.append((flag_of(f), repr(default_of(f)) if has_default(f) else "required", s.help))
    return rows


def as_settings(cfg: Any, exclude: Sequence[str] = ()) -> dict:
    """The config as a JSON-able dict (tuples as lists), without the excluded fields."""
    out = {}
    for f in dataclasses.fields(cfg):
        if f.name in exclude:
            continue
        v = getattr(cfg, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
        if spec_of(f).content and v is not None and Path(v).is_file():
            out[f"{f.name}_sha256"] = hashlib.sha256(Path(v).read_bytes()).hexdigest()[:16]
    return out


def parse_shard(spec: str) -> tuple[int, int]:
    """`i/N` -> (i, N): the problems with index % N == i."""
    try:
        i, n = (int(x) for x in str(spec).split("/"))
    except ValueError:
        raise ValueError(f"expected i/N (e.g. 0/4), got {spec!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"need 0 <= i < N, got {spec!r}")
    return i, n


def on_off(spec: str) -> bool:
    """`on` / `off` (also true/false) -> bool."""
    value = str(spec).strip().lower()
    if value in ("on", "true", "yes", "1"):
        return True
    if value in ("off", "false", "no", "0"):
        return False
    raise ValueError(f"must be 'on' or 'off', got {spec!r}")
