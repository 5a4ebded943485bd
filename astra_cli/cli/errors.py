"""How the CLI reports errors: one line on stderr and an exit code; a traceback only with
--verbose. Inside, messages spell options as flags (`--continuum-order`)."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer

from astra_cli.cli.clickparts import Abort
from astra_cli.cli.console import error, print_json, stderr_console
from astra_cli.errors import AstraError, command_line_spelling
from astra_cli.exit_codes import ExitCode, stopped_by


def require_at_least(flag: str, value: float, least: float, most: float | None = None) -> None:
    """Refuse a number out of its bounds, in words (`--stars must be at least 1, not 0`);
    the bounds are in the option's help, not in a second style of placeholder."""
    from astra_cli.errors import UsageError

    if most is not None and not least <= value <= most:
        raise UsageError(f"{flag} must be {least} to {most}, not {value}")
    if value < least:
        raise UsageError(f"{flag} must be at least {least}, not {value}")


def exit_with_error(message: str, code: int, *, json_document: bool = False) -> NoReturn:
    error(message)
    if json_document:  # a script reading stdout gets a document, whatever happened
        print_json({"error": message, "exit_code": int(code)})
    raise typer.Exit(code)


@contextmanager
def reported_errors(verbose: bool, *, json_document: bool = False) -> Iterator[None]:
    """Turn exceptions into a one-line message and the matching exit code; with
    `json_document` (--json), also a JSON document on stdout saying so."""
    try:
        with command_line_spelling():
            yield
    except AstraError as failure:
        if verbose:
            stderr_console().print(traceback.format_exc(), markup=False)
        exit_with_error(str(failure), failure.exit_code, json_document=json_document)
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM or SIGHUP (`Terminated`)
        name = getattr(interrupt, "signal_name", None)
        said = "interrupted" if name is None else f"stopped by {name}"
        exit_with_error(said, stopped_by(name), json_document=json_document)
    except BrokenPipeError:
        # The reader went away (`astra results ... | head -1`): stop quietly, as Unix tools
        # do, and let nothing more be flushed to the closed pipe at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise typer.Exit(ExitCode.BROKEN_PIPE) from None
    except Abort:  # Ctrl-C or end of input at a prompt: said at the top (`helptext.Group.main`)
        raise
    except Exception as failure:
        if verbose:
            raise
        exit_with_error(
            f"unexpected {type(failure).__name__}: {failure} "
            "(rerun with --verbose for the traceback)",
            ExitCode.RUNS_FAILED,
            json_document=json_document,
        )
