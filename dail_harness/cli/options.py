"""Commands built from config dataclasses: one flag per field, `--config FILE.yaml`, one validation.

`config_command(app, "eval", EvalConfig)` registers a Typer command whose flags are the fields of
`EvalConfig` (help, defaults, flag names and valid ranges come from the fields' `option(...)`).
Values come from the field defaults, then a YAML `--config` file, then the flags the user typed, in
that order of precedence; `dail_harness.options.build` checks them all before the command runs.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

import typer

from dail_harness.errors import HarnessError, did_you_mean
from dail_harness.options import (
    Where,
    base_type,
    build,
    default_of,
    fields_of,
    flag_of,
    has_default,
    refuse_unused,
    spec_of,
)

CONFIG_HELP = (
    "YAML file of settings (keys are the option names, e.g. `temperature: 0.6`); flags override it. Relative paths "
    "in it (data, out, templates, ...) are relative to the file's own directory; a model or task is read as a path "
    "only if it exists there or begins with ./ or ../ (else it is a hub id or a name). Paths given as flags are "
    "relative to the current directory. Settings may be grouped in sections instead of flat keys (train: "
    "`method: {name: grpo, group_size: 8}`, `loss:`, `sampling:`, `eval: {task: aime24, n: 16}`, `lora: {r: 32}`; "
    "eval and generate: `sampling:`)."
)


@dataclasses.dataclass
class ExtraOptions:
    """Flags that belong to plugins rather than to the command's config (e.g. a method's options):
    the command receives the ones the user gave, with where each came from."""

    fields: list[tuple[dataclasses.Field, Any]]
    values: dict[str, Any] = dataclasses.field(default_factory=dict)
    wheres: dict[str, Where] = dataclasses.field(default_factory=dict)
    chosen: dict[str, Where] = dataclasses.field(default_factory=dict)
    """The config's own fields the user set (flag or config key), for refusing the ones the run would ignore."""


def _param(f: dataclasses.Field, tp: Any, *, show_default: bool = True, hidden: bool = False) -> tuple[Any, Any]:
    """The (annotation, typer.Option/Argument) of one field."""
    s = spec_of(f)
    origin, elem, _ = base_type(tp)
    default = default_of(f) if has_default(f) else None
    if elem is bool and origin is None and s.parse is None:
        annotation: Any = bool | None
        decls = s.flag.split() if s.flag else [f"--{f.name.replace('_', '-')}/--no-{f.name.replace('_', '-')}"]
    else:
        if origin is dict or s.repeat:
            annotation, default = list[str] | None, None
        elif origin in (list, tuple) or s.parse is not None:
            annotation = str | None
            default = ",".join(map(str, default)) if isinstance(default, (list, tuple)) and default else None
        else:
            annotation = (elem | None) if elem in (int, float, str) else (str | None)
        decls = s.flag.split() if s.flag else [f"--{f.name.replace('_', '-')}"]
    if s.positional:
        return annotation, typer.Argument(None, help=s.help, show_default=False, metavar=s.metavar or f.name.upper())
    return annotation, typer.Option(
        default,
        *decls,
        help=s.help,
        show_default=show_default and default is not None,
        rich_help_panel=s.panel,
        metavar=s.metavar or _metavar(origin, elem, s),
        hidden=hidden,
    )


def _metavar(origin: Any, elem: Any, s: Any) -> str | None:
    if elem is bool and origin is None:
        return None
    if origin is dict:
        return "KEY=VALUE"
    name = {int: "INT", float: "FLOAT"}.get(elem, "TEXT")
    if origin in (list, tuple) and not s.repeat and s.parse is None:
        return f"{name}[,{name}...]"
    return name


PLUGIN_SECTION = "*"
"""A section for a plugin kind (`method:`, `loss:`): `name` is the field itself, every other key one of the chosen
plugin's options."""


def load_yaml(text: str) -> Any:
    """YAML as `yaml.safe_load` reads it, except that a key given twice in one mapping is an error (PyYAML keeps the
    last silently, so `method: grpo` ... `method: nll` would train nll)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen: set = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key '{key}' appears twice in one mapping", key_node.start_mark
                    )
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return yaml.load(text, Loader=UniqueKeyLoader)


def _read_mapping(path: Path) -> dict:
    """A YAML config file's top-level mapping ({} for an empty file); anything else is one error naming the file."""
    import yaml

    if not path.exists():
        raise HarnessError("config file not found", path=str(path))
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise HarnessError(
            f"malformed YAML: {getattr(e, 'problem', e)}", path=str(path), line=mark.line + 1 if mark else None
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise HarnessError("expected a mapping of option names to values", path=str(path))
    return data


def load_config_file(
    path: Path,
    allowed: dict[str, Any],
    sections: dict[str, str | tuple[str, ...]] | None = None,
    written: dict[str, str] | None = None,
    plugin_keys: AbstractSet[str] = frozenset(),
) -> dict[str, Any]:
    """Keys and values of a YAML config file; an unknown key is one error naming the valid ones. `allowed` maps
    each accepted key (a field's name, or its flag's, e.g. `samples_per_problem` for `n`) to the field name
    (None: the key itself). `sections` are nested mappings a config may use instead of flat keys: a prefix
    (`eval: {n: 8}` is `eval_n`), the field names a section holds (`sampling: {temperature: 0.6}`), or
    PLUGIN_SECTION (its keys: `name` and `plugin_keys`, the plugins' options). `written` receives each field's key
    as the file spells it (`eval.n`), for messages."""
    data = _read_mapping(path)
    sections = sections or {}
    out: dict[str, Any] = {}
    spelled: dict[str, str] = {}

    def put(name: str, value: Any, key: str, valid: Any) -> None:
        if name not in valid:
            hint = did_you_mean(name, valid)
            raise HarnessError(
                f"unknown key{(' (' + hint + ')') if hint else ''}; valid keys: " + ", ".join(sorted(valid)),
                path=str(path),
                field=key,
            )
        field = valid[name] or name
        if field in out:
            raise HarnessError(f"given twice (also as '{spelled[field]}')", path=str(path), field=key)
        out[field], spelled[field] = value, key

    for key, value in data.items():
        name = str(key).replace("-", "_")
        rule = sections.get(name)
        if rule is None or not isinstance(value, dict):
            put(name, value, str(key), allowed)
            continue
        for sub, sub_value in value.items():
            sub_name, where = str(sub).replace("-", "_"), f"{key}.{sub}"
            if rule == PLUGIN_SECTION:
                _refuse_non_plugin_key(name, sub_name, plugin_keys, path, where)
                put(name if sub_name == "name" else sub_name, sub_value, where, allowed)
            elif isinstance(rule, tuple):
                put(sub_name, sub_value, where, {k: None for k in rule})
            else:
                put(
                    sub_name,
                    sub_value,
                    where,
                    {k[len(rule) :]: v or k for k, v in allowed.items() if k.startswith(rule)},
                )
    if written is not None:
        written.update(spelled)
    return out


def _refuse_non_plugin_key(section: str, key: str, plugin_keys: AbstractSet[str], path: Path, where: str) -> None:
    """`method: {name: grpo, lr: 1e-5}` would set the run's lr from inside the method's section."""
    if key == "name" or key in plugin_keys:
        return
    hint = did_you_mean(key, plugin_keys)
    raise HarnessError(
        f"not an option of a {section} plugin{(' (' + hint + ')') if hint else ''}; a setting of the run itself "
        "goes outside the section",
        path=str(path),
        field=where,
    )


def refuse_ignored(cfg: Any, chosen: dict[str, Where]) -> None:
    """One error for a setting the user chose that this run would not use (the config's `ignored()` says which
    and who would use them): an accepted setting is a used one."""
    ignored = getattr(cfg, "ignored", None)
    if callable(ignored):
        refuse_unused(ignored(), chosen)


def _use_threads(cfg: Any) -> None:
    """A command that computes sets torch's threads before it loads anything (see `models/cpu.py`)."""
    from dail_harness.eval.grading import default_workers
    from dail_harness.models.cpu import use_threads

    workers = getattr(cfg, "grade_workers", 0)
    use_threads(cfg.threads, default_workers() if workers is None else workers)


def flag_values(argv: list[str], flag: str) -> list[str]:
    """The values a command line gives `flag` (`--flag V` or `--flag=V`), in order."""
    out = []
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            out.append(argv[i + 1])
        elif arg.startswith(flag + "="):
            out.append(arg[len(flag) + 1 :])
    return out


def config_values(path: str, keys: tuple[str, ...]) -> dict[str, list[str]]:
    """Some keys of a YAML config file, read ahead of the command (paths relative to the file); a file that cannot
    be read gives nothing here (the command itself reports it)."""
    import yaml

    try:
        data = load_yaml(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    if not isinstance(data, dict):
        return {}
    out: dict[str, list[str]] = {}
    for key in keys:
        value = data.get(key, data.get(key.replace("_", "-")))
        if isinstance(value, dict):  # a section, e.g. `method: {name: grpo, group_size: 8}`
            value = value.get("name")
        if value is None:
            continue
        values = [str(v) for v in value] if isinstance(value, list) else [str(value)]
        if key.endswith("dir"):
            values = [str(Path(path).parent / v) for v in values]
        out[key] = values
    return out


SCOPED: dict[str, Callable[[list[str]], None]] = {}
"""Commands whose flags depend on the command line itself (train: the chosen method's options), rebuilt by
`scope_commands` before each parse."""


def scope_commands(argv: list[str]) -> None:
    """Rebuild the scoped command named by `argv` for this command line (its flags and what --help lists)."""
    if argv and argv[0] in SCOPED:
        SCOPED[argv[0]](argv[1:])


def config_command(
    app: typer.Typer,
    name: str,
    cls: type,
    *,
    extra: Callable[[list[str] | None], list] | None = None,
    hidden: tuple[str, ...] = (),
    scope: Callable[[list[str]], tuple[set[str], str | None]] | None = None,
) -> Callable:
    """Decorator: register `fn(cfg)` (or `fn(cfg, extras)` when `extra` lists plugin option fields) as
    the command `name`, with one flag per field of `cls` plus `--config`.

    `extra(argv)` gives the plugin option fields for a command line (None: at import, before any is known).
    With `scope`, the command is rebuilt for each command line: `scope(argv)` names the fields --help leaves out
    (they still parse, so a misplaced one gets its own error) and a line for the help text."""

    def deco(fn: Callable) -> Callable:
        def build_command(argv: list[str] | None) -> Callable:
            left_out, note = scope(argv) if scope and argv is not None else (set(), None)
            return _command(fn, cls, extra(argv) if extra else None, hidden, left_out, note)

        app.command(name)(build_command(None))
        if scope is not None:

            def rebuild(argv: list[str]) -> None:
                command = build_command(argv)
                for info in app.registered_commands:
                    if info.name == name:
                        info.callback = command

            SCOPED[name] = rebuild
        return fn

    return deco


def _command(
    fn: Callable,
    cls: type,
    extra_fields: list | None,
    hidden: tuple[str, ...],
    left_out: set[str],
    note: str | None,
) -> Callable:
    """The Typer callback of a config command: its signature is the flags, its body builds and checks the config."""
    fields = [(f, tp) for f, tp in fields_of(cls) if spec_of(f).cli and f.name not in hidden]
    names = {f.name for f, _ in fields}
    plugin_fields = [(f, tp) for f, tp in (extra_fields or []) if f.name not in names]
    params, annotations = _signature(fields, plugin_fields, left_out)

    def command(ctx: typer.Context, **kwargs: Any) -> Any:
        from dail_harness.scale.launch import remembered

        with remembered():  # the launcher's ranks, read before any engine changes the environment
            return run(ctx, **kwargs)

    def run(ctx: typer.Context, **kwargs: Any) -> Any:
        by_name = {f.name: (f, tp) for f, tp in fields + plugin_fields}
        values: dict[str, Any] = {}
        wheres: dict[str, Where] = {}
        if kwargs.get("config") is not None:
            values, wheres = _config_values(kwargs["config"], cls, plugin_fields)
        for key, value in kwargs.items():
            if key == "config" or key not in by_name:
                continue
            source = ctx.get_parameter_source(key)
            if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT"):
                values[key] = list(value) if isinstance(value, tuple) else value
                wheres[key] = Where(flag_of(by_name[key][0]))
        extra_names = {f.name for f, _ in plugin_fields}
        cfg = build(
            cls,
            {k: v for k, v in values.items() if k not in extra_names},
            {k: w for k, w in wheres.items() if k not in extra_names},
        )
        refuse_ignored(cfg, {k: w for k, w in wheres.items() if k not in extra_names})
        if "threads" in names:
            _use_threads(cfg)
        if extra_fields is None:
            return fn(cfg)
        given = {k: v for k, v in values.items() if k in extra_names}
        chosen = {k: w for k, w in wheres.items() if k not in extra_names}
        return fn(cfg, ExtraOptions(plugin_fields, given, {k: wheres[k] for k in given}, chosen))

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = annotations
    command.__doc__ = inspect.cleandoc(fn.__doc__ or "") + (f"\n\n{note}" if note else "")
    command.__name__ = fn.__name__
    return command


def _config_values(path: Path, cls: type, plugin_fields: list) -> tuple[dict[str, Any], dict[str, Where]]:
    """A --config file's values by field name, and where each came from (the file and its key as written)."""
    every = [f for f, _ in fields_of(cls)] + [f for f, _ in plugin_fields]
    allowed: dict[str, Any] = {f.name: None for f in every}
    for f in every:  # a flag's own name works as a key too
        for decl in (spec_of(f).flag or "").split():  # of a `--on/--off` pair, the first
            decl = decl.split("/")[0]
            if decl.startswith("--"):
                allowed.setdefault(decl[2:].replace("-", "_"), f.name)
    spelled: dict[str, str] = {}
    plugin_keys = {f.name for f, _ in plugin_fields}
    values = load_config_file(path, allowed, getattr(cls, "SECTIONS", None), spelled, plugin_keys)
    by_name = {f.name: f for f in every}
    wheres = {key: Where(flag_of(by_name[key]), path=str(path), key=spelled.get(key, key)) for key in values}
    return values, wheres


def _signature(fields: list, plugin_fields: list, left_out: set[str]) -> tuple[list[inspect.Parameter], dict]:
    """The parameters (and annotations) Typer reads a command's flags from: one per field, then --config."""
    params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)]
    annotations: dict[str, Any] = {"ctx": typer.Context}
    for f, tp in fields + plugin_fields:
        annotation, info = _param(f, tp, show_default=(f, tp) not in plugin_fields, hidden=f.name in left_out)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=annotation))
        annotations[f.name] = annotation
    config = typer.Option(None, "--config", help=CONFIG_HELP, rich_help_panel="Config")
    params.append(inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Path | None, default=config))
    annotations["config"] = Path | None
    return params, annotations
