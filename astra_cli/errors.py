"""Exceptions that carry a message meant for the user and the exit code that goes with it, and
how those messages spell option names.

Messages name options in the words of whoever called: `option 'continuum_order'` for a caller of
the Python API, `--continuum-order` at the command line. Code that raises writes
`spelling().option(name)`; the CLI switches the spelling for the commands it runs
(`command_line_spelling`), so the same planner and Method API speak both languages without
knowing who called them.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass

from astra_cli.exit_codes import ExitCode


class AstraError(Exception):
    """An error whose message is written for the person at the terminal.

    The CLI prints `str(error)` on one line and exits with `exit_code`; it shows a traceback
    only with `--verbose`.
    """

    exit_code: ExitCode = ExitCode.RUNS_FAILED


class UsageError(AstraError):
    """Bad usage or input, found before anything ran (exit code 2)."""

    exit_code = ExitCode.USAGE


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """A ' (did you mean X?)' suffix for a mistyped name, or '' when nothing is close."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass(frozen=True)
class Spelling:
    """How error messages name options and inputs for one kind of caller."""

    command_line: bool

    def option(self, name: str) -> str:
        """A method option, after the word 'option': `--continuum-order` or `'continuum_order'`."""
        return "--" + name.replace("_", "-") if self.command_line else repr(name)

    def option_value(self, name: str, metavar: str) -> str:
        """An option and the kind of value it takes: `--grid PATH`, or `option 'grid'`."""
        return f"{self.option(name)} {metavar}" if self.command_line else f"option {name!r}"

    def argument(self, name: str, flag: str | None = None) -> str:
        """An argument of the Python API, or the command-line option that gives it (`flag`, by
        default the name with dashes): `--output-dir` or `output_dir`."""
        if not self.command_line:
            return name
        return flag or "--" + name.replace("_", "-")

    def method_help(self, method: str) -> str:
        """Where a method's options and files are described."""
        if self.command_line:
            return f"`astra analyse {method} --help`"
        return f"the docstring of method {method!r} (`astra analyse {method} --help`)"

    def observation_sources(self) -> str:
        """How observations are named."""
        if self.command_line:
            return (
                "name files, or use --from-file FILE, --obs KEY=VAL,... or the per-key options "
                "(--release --apred --telescope --field --obj ...)"
            )
        return "pass paths, identifier mappings or Observation objects"


API_SPELLING = Spelling(command_line=False)
COMMAND_LINE_SPELLING = Spelling(command_line=True)

_spelling: contextvars.ContextVar[Spelling] = contextvars.ContextVar(
    "astra_error_spelling", default=API_SPELLING
)


def spelling() -> Spelling:
    """The spelling of the caller at hand: the Python API's unless the CLI says otherwise."""
    return _spelling.get()


@contextlib.contextmanager
def command_line_spelling() -> Iterator[None]:
    """Messages raised inside spell options as flags (`--continuum-order`)."""
    token = _spelling.set(COMMAND_LINE_SPELLING)
    try:
        yield
    finally:
        _spelling.reset(token)
