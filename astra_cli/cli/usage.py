"""Mistakes on the command line, said in one line of plain words.

click says a mistake in a framed box, in its own phrasing ("Invalid value for '--jobs': ...").
astra says every other error as `astra: error: ...` on one line, so these are said the same
way, naming the option and the help to read: "--jobs: 'x' is not a whole number (see astra
analyse snr --help)" (the value's complaint is `cli.values`'). The exit code stays 2.
"""

from __future__ import annotations

from typing import Any

from astra_cli.cli.values import ValueMistake


def plain_message(error: Any) -> str:
    """A click usage error (typer's vendored click) as one line: what was wrong with which
    option or argument, and which command's help says more."""
    message = error.message if isinstance(error, ValueMistake) else str(error.format_message())
    name = _parameter_name(error)
    if name and name not in message:
        message = f"{name}: {message}"
    context = getattr(error, "ctx", None)
    if context is not None:
        message = f"{message.rstrip('.')} (see {context.command_path} --help)"
    return " ".join(message.split())


def _parameter_name(error: Any) -> str | None:
    """`--chunk-size` for an option (its longest name), `SHELL` for an argument."""
    param = getattr(error, "param", None)
    if param is None:
        return None
    if param.param_type_name == "argument":
        return str(param.metavar or param.name.upper())
    return max(param.opts, key=len)
