"""How help reads: paragraphs that rich can wrap, and no `<bool>` beside --help.

In rich markup mode Typer keeps every newline of a help text, so a docstring wrapped at 100
columns would be printed with its line breaks in the middle of the terminal's own wrapping;
`unwrap` joins the lines of each paragraph. Typer 0.29 labels the --help flag `<bool>`, which
the other flags avoid with an empty metavar; the command classes here give --help one too.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from astra_cli.cli.clickparts import TyperCommand, TyperGroup


def unwrap(text: str) -> str:
    """Each paragraph of `text` (a docstring, say) on one line; paragraphs kept apart."""
    paragraphs = inspect.cleandoc(text or "").split("\n\n")
    return "\n\n".join(" ".join(paragraph.split()) for paragraph in paragraphs)


def help_of(function: Callable[..., Any]) -> str:
    """The unwrapped docstring of a command function, for `app.command(help=...)`."""
    return unwrap(function.__doc__ or "")


def _plain_help_option(option: Any) -> Any:
    if option is not None:
        option.metavar = ""
    return option


class Command(TyperCommand):
    """A Typer command whose --help shows no value type."""

    def get_help_option(self, ctx: Any) -> Any:
        return _plain_help_option(super().get_help_option(ctx))


COMMAND_ORDER = (
    "analyse", "plan", "status", "results", "show", "plot", "forget", "methods", "train", "grid",
    "demo",
)  # fmt: skip
"""The commands in --help in the order of use: the main one first; others after these."""


class Group(TyperGroup):
    """A Typer group whose --help shows no value type and lists commands in COMMAND_ORDER."""

    def get_help_option(self, ctx: Any) -> Any:
        return _plain_help_option(super().get_help_option(ctx))

    def list_commands(self, ctx: Any) -> list[str]:
        names = super().list_commands(ctx)
        ranked = {name: rank for rank, name in enumerate(COMMAND_ORDER)}
        return sorted(names, key=lambda name: (ranked.get(name, len(ranked)), names.index(name)))
