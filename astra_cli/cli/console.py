"""Where the CLI writes: results on stdout, everything else (progress, summaries, errors) on
stderr, so that `astra ... --json | jq` and cron logs both work."""

from __future__ import annotations

import functools
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


@functools.cache
def stderr_console() -> Console:
    """A rich console on stderr; rich itself turns colour and animation off when stderr is not
    a terminal or NO_COLOR is set. Lines are wrapped at spaces on a terminal (the terminal
    would cut them mid-word) and never elsewhere: a log or a pipe gets each line whole."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=not _isatty(sys.stderr))


def stdout_console() -> Console:
    """A rich console on stdout that wraps lines as `stderr_console` does: at spaces on a
    terminal, never in a pipe or a file; tables fit its width either way. Made afresh for each
    command, so that it takes the width of the terminal (or COLUMNS) of the moment."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=not _isatty(sys.stdout))


def _isatty(stream: Any) -> bool:
    """Whether the stream is a terminal, whatever FORCE_COLOR makes rich believe."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False) + "\n")


def notice(message: str, label: str = "notice") -> None:
    """`astra: notice: ...` (or another label) on stderr, for what the user should know but
    that stops nothing."""
    from rich.markup import escape

    stderr_console().print(f"[bold yellow]astra: {label}:[/] {escape(message)}")


def error(message: str) -> None:
    """One line, `astra: error: ...`, on stderr."""
    from rich.markup import escape

    stderr_console().print(f"[bold red]astra: error:[/] {escape(message)}")
