"""One registry for every pluggable kind: tasks, methods, losses, back-ends and verifiers.

Built-ins self-register when their modules are imported (a decorator per plugin file); third-party
plugins arrive through the `dail_harness.plugins` entry-point group or `--plugin-dir DIR`. Loading
is lazy: nothing is imported until a name is looked up or listed.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import pkgutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from dail_harness.errors import HarnessError, did_you_mean

KINDS = ("tasks", "methods", "losses", "backends", "rollouts", "verifiers")
ENTRY_POINT_GROUP = "dail_harness.plugins"
# Where each kind's built-ins live (plugins/ and tasks/ map into dail_harness.*). A lookup imports
# only its kind's package, so grading workers never import torch and `list tasks` stays fast.
KIND_PACKAGES = {
    "tasks": ("dail_harness.tasks",),
    "methods": ("dail_harness.plugins.methods",),
    "losses": ("dail_harness.plugins.losses",),
    "backends": ("dail_harness.backends",),
    "rollouts": ("dail_harness.rollout",),
    "verifiers": ("dail_harness.verifiers",),
}
BUILTIN_PACKAGES = tuple(dict.fromkeys(p for ps in KIND_PACKAGES.values() for p in ps))


@dataclass
class Entry:
    kind: str
    name: str
    obj: Any
    aliases: tuple[str, ...] = ()
    help: str = ""
    source: str = ""
    overrides: str | None = None
    """The source of the entry this one replaced (a plugin that set `override = True`)."""


@dataclass
class _State:
    entries: dict[str, dict[str, Entry]] = field(default_factory=lambda: {k: {} for k in KINDS})
    aliases: dict[str, dict[str, str]] = field(default_factory=lambda: {k: {} for k in KINDS})
    loaded_packages: set[str] = field(default_factory=set)
    entry_points_loaded: bool = False
    loaded_dirs: set[str] = field(default_factory=set)


_state = _State()


def singular(kind: str) -> str:
    """'losses' -> 'loss', 'tasks' -> 'task'."""
    return kind[:-2] if kind.endswith("sses") else kind[:-1]


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown registry kind {kind!r}; kinds are {', '.join(KINDS)}")


def register(kind: str, name: str, *, aliases: tuple[str, ...] | list[str] = (), help: str = "") -> Callable:
    """Decorator: register `obj` under `kind`/`name`. A name or alias another module already holds is an
    error naming both (whichever loads first), unless one of them sets `override = True`: that one wins,
    whatever the import order, and `list` marks it. The same module registering again (a reload) replaces."""
    _check_kind(kind)

    def deco(obj):
        doc = help or (obj.__doc__ or "").strip().split("\n")[0]
        entry = Entry(kind, name, obj, tuple(aliases), doc, getattr(obj, "__module__", ""))
        for key in (name, *aliases):
            held = _holder(kind, key)
            if held is None or held.source == entry.source:
                continue
            if _overrides(held) and not _overrides(entry):
                held.overrides = where_defined(entry)
                return obj  # the overriding plugin stays, though the built-in loaded after it
            if not _overrides(entry):
                raise HarnessError(
                    f"{singular(kind)} name '{key}' is registered twice: by {where_defined(held)} and by "
                    f"{where_defined(entry)}; "
                    "rename one, or set `override = True` on the class that should replace the other"
                )
            entry.overrides = where_defined(held)
            _forget(held)
        _state.entries[kind][name] = entry
        for a in aliases:
            _state.aliases[kind][a] = name
        return obj

    return deco


def _holder(kind: str, key: str) -> Entry | None:
    """The entry a name or alias resolves to now, if any."""
    name = _state.aliases[kind].get(key, key)
    return _state.entries[kind].get(name)


def _overrides(entry: Entry) -> bool:
    return getattr(entry.obj, "override", False) is True


def _forget(entry: Entry) -> None:
    _state.entries[entry.kind].pop(entry.name, None)
    for a in [a for a, n in _state.aliases[entry.kind].items() if n == entry.name]:
        del _state.aliases[entry.kind][a]


def where_defined(entry: Entry) -> str:
    """A registration's source for messages: the plugin file, or the module."""
    module = sys.modules.get(entry.source)
    path = getattr(module, "__file__", None)
    return f"{path}" if path and entry.source.startswith("dail_harness_user_plugins") else entry.source


def load_builtins(packages: tuple[str, ...] = BUILTIN_PACKAGES) -> None:
    """Import the built-in plugin modules of `packages` and every entry-point plugin, once each."""
    for pkg_name in packages:
        if pkg_name in _state.loaded_packages:
            continue
        _state.loaded_packages.add(pkg_name)
        pkg = importlib.import_module(pkg_name)
        for mod in pkgutil.iter_modules(pkg.__path__):
            if not mod.name.startswith("_"):
                importlib.import_module(f"{pkg_name}.{mod.name}")
    if _state.entry_points_loaded:
        return
    _state.entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as e:  # a broken third-party plugin must not hide the built-ins
            raise HarnessError(f"plugin entry point '{ep.name}' ({ep.value}) failed to load: {e}") from e


def load_plugin_dir(directory: str | Path) -> None:
    """Import every `*.py` file in `directory` as a plugin module (they register themselves)."""
    directory = Path(directory).resolve()
    if not directory.is_dir():
        raise HarnessError("plugin directory not found", path=str(directory))
    if str(directory) in _state.loaded_dirs:
        return
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith("_"):
            continue
        tag = hashlib.sha1(str(directory).encode()).hexdigest()[:8]  # two folders named alike stay two modules
        mod_name = f"dail_harness_user_plugins.{directory.name}_{tag}.{path.stem}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:
            raise HarnessError("cannot import this file as a plugin module", path=str(path))
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except HarnessError:
            raise
        except Exception as e:
            raise HarnessError(f"plugin failed to load: {e.__class__.__name__}: {e}", path=str(path)) from e
    _state.loaded_dirs.add(str(directory))  # only once every module loaded (workers reload these)


def load_plugin_dirs(directories: Iterable[str | Path] | None) -> None:
    """Load each `--plugin-dir` in order (None or none: nothing)."""
    for directory in directories or ():
        load_plugin_dir(directory)


def loaded_plugin_dirs() -> list[str]:
    """Plugin directories loaded so far (worker processes load the same ones)."""
    return sorted(_state.loaded_dirs)


def names(kind: str) -> list[str]:
    _check_kind(kind)
    load_builtins(KIND_PACKAGES[kind])
    return sorted(_state.entries[kind])


def knows(kind: str, name: str) -> bool:
    """Whether `name` is a registered name or alias of `kind` (built-ins and loaded plugins)."""
    _check_kind(kind)
    load_builtins(KIND_PACKAGES[kind])
    return name in _state.entries[kind] or name in _state.aliases[kind]


def entries(kind: str) -> list[Entry]:
    return [_state.entries[kind][n] for n in names(kind)]


def get_entry(kind: str, name: str) -> Entry:
    """Look up `name` (or an alias); unknown names fail with a "did you mean" suggestion."""
    _check_kind(kind)
    load_builtins(KIND_PACKAGES[kind])
    table = _state.entries[kind]
    key = _state.aliases[kind].get(name, name)
    if key in table:
        return table[key]
    candidates = list(table) + list(_state.aliases[kind])
    hint = did_you_mean(name, candidates, n=3, cutoff=0.5)
    hint = f"; {hint}" if hint else ""
    raise HarnessError(
        f"unknown {singular(kind)} '{name}'{hint}{plugin_hint(kind)} (run `dail-harness list {kind}` to see all)"
    )


def plugin_hint(kind: str) -> str:
    """For an unknown name when no plugin directory is loaded: it may be a plugin's, which a command sees only
    with --plugin-dir (worker processes and a later `grade` do not remember an earlier run's plugins)."""
    if _state.loaded_dirs:
        return ""
    return f"; if it is a plugin's {singular(kind)}, load it with --plugin-dir DIR"


def get(kind: str, name: str) -> Any:
    return get_entry(kind, name).obj
