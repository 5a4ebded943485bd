"""The top-level commands, imported one at a time, when one is run.

`astra --help` and `astra <TAB>` need each command's name and one line about it, not the
command itself. Importing every command's module, and what they import (the store and sqlite3,
the manifest readers, the engine's backends), cost about a quarter of `astra --help`. So the
root group lists its commands from a table of names and summaries, and imports a command's
module only to run it, show its own help or complete its arguments.
`tests/test_help.py` checks that each summary is what the loaded command says of itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from difflib import get_close_matches
from typing import Any, ClassVar

from astra_cli.cli.clickparts import (
    HAS_RICH,
    ClickCommand,
    ClickUsageError,
    CompletionItem,
    TyperCommand,
)
from astra_cli.cli.helptext import Group


@dataclass(frozen=True)
class Entry:
    """One top-level command: its name, the line listings show, and how to build it."""

    name: str
    summary: str
    load: Callable[[], ClickCommand]


class CommandTable(Group):
    """A root group whose commands come from `entries` (set by a subclass), in that order."""

    entries: ClassVar[dict[str, Entry]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded: dict[str, ClickCommand] = {}
        self._listing = False
        """True while the root's help is drawn: then a command is its name and summary."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.entries)

    def get_command(self, ctx: Any, cmd_name: str) -> ClickCommand | None:
        entry = self.entries.get(cmd_name)
        if entry is None:
            return None
        if self._listing:
            return TyperCommand(entry.name, help=entry.summary)
        if cmd_name not in self._loaded:
            self._loaded[cmd_name] = entry.load()
        return self._loaded[cmd_name]

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        """An unknown command is named with the closest ones of the table (Typer looks for
        them among the commands built so far, which here are none)."""
        try:
            return super().resolve_command(ctx, args)
        except ClickUsageError as error:
            close = get_close_matches(args[0], list(self.entries)) if args else []
            if close and "Did you mean" not in error.message:
                suggested = ", ".join(repr(name) for name in close)
                error.message = f"{error.message.rstrip('.')}. Did you mean {suggested}?"
            raise

    def format_help(self, ctx: Any, formatter: Any) -> None:
        """Typer's layout without Typer's help module (`cli.roothelp`), in the rich markup
        mode astra uses; otherwise as Typer does it: click's plain help with rich help off
        (TYPER_USE_RICH=0), Typer's own in another markup mode."""
        if HAS_RICH and self.rich_markup_mode == "rich":
            from astra_cli.cli.roothelp import print_root_help

            summaries = {entry.name: entry.summary for entry in self.entries.values()}
            print_root_help(self, ctx, summaries)
            return
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def shell_complete(self, ctx: Any, incomplete: str) -> list[Any]:
        """Command names with their summaries, then the root's own options."""
        names = [
            CompletionItem(entry.name, help=entry.summary)
            for entry in self.entries.values()
            if entry.name.startswith(incomplete)
        ]
        return names + ClickCommand.shell_complete(self, ctx, incomplete)
