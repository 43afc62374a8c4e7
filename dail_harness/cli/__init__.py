"""The `dail-harness` command line: one Typer app, and `main`, which turns every failure into one line.

Commands live in sibling modules by area (evaluation, lm-eval bridge, D_syn, training); each registers
itself on `app` when imported, with its flags built from its config dataclass (`cli/options.py`).

Exit codes: 0 success; 2 a usage error or bad input (one `error:` line, after the usage line for
usage errors); 130 interrupted (finished work is saved); 1 a bug, shown with its traceback and a line
that says so.
"""

from __future__ import annotations

import contextlib
import sys
from typing import NoReturn

import typer

from dail_harness.errors import HarnessError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Evaluate and train language models from expert solutions (DAIL and baselines).",
)

INTERRUPTED = "interrupted: rerun the same command to resume"
INTERRUPTED_CODE = 130  # 128 + SIGINT, what shells report for a ctrl-C


def _print_version(value: bool) -> None:
    if value:
        import dail_harness
        from dail_harness import worklog

        commit = worklog.git_commit()
        typer.echo(f"dail-harness {dail_harness.__version__}" + (f" (git {commit})" if commit else ""))
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version, help="Print the version."),
) -> None:
    """Evaluate and train language models from expert solutions (DAIL and baselines)."""


BUG_REPORT = (
    "this is a bug in dail-harness, not a problem with your input: please report it with the "
    "command line and the traceback above"
)


COMMAND_MODULES = ("eval", "lmeval", "dsyn", "data", "train")


def _click_errors() -> tuple[type[BaseException], ...]:
    """Click's usage-error base class(es): Typer >= 0.20 vendors its own click."""
    found: list[type[BaseException]] = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        with contextlib.suppress(ImportError, AttributeError):
            found.append(__import__(module, fromlist=["ClickException"]).ClickException)
    return tuple(found)


def _usage_error(e: BaseException) -> int:
    """Print a click usage error as a command-line tool does: the usage line, then one error line."""
    ctx = getattr(e, "ctx", None)
    if type(e).__name__ == "NoArgsIsHelpError" and ctx is not None:
        typer.echo(ctx.get_help(), err=True)
        return 2
    if ctx is not None:
        typer.echo(ctx.get_usage(), err=True)
        typer.echo(f"Try '{ctx.command_path} --help' for help.", err=True)
    message = e.format_message() if hasattr(e, "format_message") else str(e)
    typer.echo(f"error: {message}", err=True)
    return int(getattr(e, "exit_code", 2) or 2)


def main() -> None:
    import importlib

    for module in COMMAND_MODULES:  # importing a module registers its commands, in this order in --help
        importlib.import_module(f"dail_harness.cli.{module}")

    try:
        from dail_harness.cli.options import scope_commands

        scope_commands(sys.argv[1:])  # e.g. train's flags and --help follow its --method
        code = app(standalone_mode=False)  # Typer turns a ctrl-C into a returned 130, not an exception
    except HarnessError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        _interrupted()
    except _click_errors() as e:
        sys.exit(_usage_error(e))
    except Exception as e:
        if type(e).__name__ == "Abort":  # click's ctrl-C at a prompt
            _interrupted()
        if type(e).__name__ == "Exit":  # click's own exits (e.g. after --help)
            sys.exit(int(getattr(e, "exit_code", 0) or 0))
        import traceback

        traceback.print_exc()
        typer.echo(f"error: {BUG_REPORT}", err=True)
        sys.exit(1)
    if code == INTERRUPTED_CODE:
        _interrupted()
    if isinstance(code, int) and code:
        sys.exit(code)


def _interrupted() -> NoReturn:
    """A ctrl-C: finished samples and steps are already stored, so one line and the shell's code for it."""
    typer.echo(INTERRUPTED, err=True)
    sys.exit(INTERRUPTED_CODE)
