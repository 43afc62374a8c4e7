"""The `dail-harness` command line: one Typer app, its shared option helpers, and `main`.

Commands live in sibling modules by area (evaluation, lm-eval bridge, D_syn); each registers itself
on `app` when imported. Bad input: one `error:` line, exit code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from dail_harness import registry
from dail_harness.errors import HarnessError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Evaluate and train language models from expert solutions (DAIL and baselines).")

PluginDir = typer.Option(None, "--plugin-dir", help="Directory of extra plugin modules (*.py) to load.")

def _load_plugins(dirs: Optional[List[Path]]) -> None:
    for d in dirs or []:
        registry.load_plugin_dir(d)

def _parse_kv(pairs: Optional[List[str]], flag: str) -> dict:
    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise HarnessError(f"{flag}: expected KEY=VALUE, got '{p}'")
        k, v = p.split("=", 1)
        out[k.strip()] = v
    return out

def _task_options(task_opt, data, fields, answer_type, prompt_template) -> dict:
    """Options every task receives, from the shared task flags."""
    task_options = _parse_kv(task_opt, "--task-opt")
    for key, value in (("data", data), ("fields", fields), ("answer_type", answer_type)):
        if value is not None:
            task_options[key] = value
    if prompt_template is not None:
        if not prompt_template.exists():
            raise HarnessError("prompt template file not found", path=str(prompt_template))
        text = prompt_template.read_text(encoding="utf-8")
        if "{problem}" not in text:
            raise HarnessError("prompt template has no {problem} placeholder", path=str(prompt_template))
        task_options["prompt_template"] = text
    return task_options

def _parse_list(spec: str, kind, flag: str) -> list:
    try:
        values = [kind(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise HarnessError(f"{flag}: expected a comma-separated list of numbers, got '{spec}'") from None
    if not values:
        raise HarnessError(f"{flag}: empty list")
    return list(dict.fromkeys(values))

def _parse_shard(spec: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise HarnessError(f"--shard: expected i/N (e.g. 0/4), got '{spec}'") from None
    if not 0 <= i < n:
        raise HarnessError(f"--shard: need 0 <= i < N, got '{spec}'")
    return i, n

def main() -> None:
    # importing the command modules registers their commands, in this order in --help
    from dail_harness.cli import eval  # noqa: F401
    from dail_harness.cli import lmeval  # noqa: F401
    from dail_harness.cli import dsyn  # noqa: F401
    from dail_harness.cli import train  # noqa: F401

    try:
        app(standalone_mode=False)
    except HarnessError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted: finished samples are saved; rerun the same command to resume", err=True)
        sys.exit(130)
    except Exception as e:  # click usage errors and friends
        import click

        if isinstance(e, click.exceptions.Exit):
            sys.exit(e.exit_code)
        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Abort):
            sys.exit(130)
        raise

