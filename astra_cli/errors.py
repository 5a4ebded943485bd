"""Exceptions that carry a message meant for the user and the exit code that goes with it."""

from __future__ import annotations

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
