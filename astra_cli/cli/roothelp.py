"""`astra --help` in Typer's layout, drawn without Typer's help module.

Typer draws help with `typer.rich_utils`, which imports rich's Markdown (and markdown-it) and
rich's tracebacks (and pygments) as it loads: about 30 ms of the 130 ms `astra --help` took
(40 to 45 ms under `-X importtime`), for help that uses neither. The root's help is a usage
line, a description in rich markup, the root's options and the table of commands; this module
draws them with the parts of rich they need, with Typer's styles and layout, so that the root
reads like every other command's help (which is still Typer's). `tests/test_help.py` checks
that both draw the same text.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from typing import Any

from rich.columns import Columns
from rich.console import Console, Group
from rich.highlighter import RegexHighlighter
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from rich.theme import Theme

from astra_cli.cli.clickparts import ClickCommand, TyperOption

THEME = Theme(
    {
        "option": "bold cyan",
        "switch": "bold green",
        "types": "bold yellow",
        "types_sep": "dim",
        "usage": "yellow",
    }
)
"""Typer's styles for what `OptionHighlighter` finds."""


class OptionHighlighter(RegexHighlighter):
    """Marks options (`--obs`), switches (`-h`) and `Usage: `, as Typer's help does."""

    highlights = [  # noqa: RUF012 (RegexHighlighter's own class attribute)
        r"(^|\W)(?P<switch>\-\w+)(?![a-zA-Z0-9])",
        r"(^|\W)(?P<option>\-\-[\w\-]+)(?![a-zA-Z0-9])",
        r"(?P<usage>Usage: )",
    ]


highlighter = OptionHighlighter()

_FORCE_TERMINAL = ("GITHUB_ACTIONS", "FORCE_COLOR", "PY_COLORS")


def _console() -> Console:
    """A console on stdout as Typer's help makes it: TERMINAL_WIDTH caps the width; FORCE_COLOR,
    PY_COLORS or GITHUB_ACTIONS force a terminal, _TYPER_FORCE_DISABLE_TERMINAL forbids one."""
    width = os.environ.get("TERMINAL_WIDTH")
    force = True if any(os.environ.get(name) for name in _FORCE_TERMINAL) else None
    if os.environ.get("_TYPER_FORCE_DISABLE_TERMINAL"):
        force = False
    return Console(
        theme=THEME,
        highlighter=highlighter,
        color_system="auto",
        force_terminal=force,
        width=int(width) if width else None,
    )


def _markup(text: str, style: str = "") -> Text:
    """Help text as Typer shows it in rich mode: its markup rendered, its options coloured."""
    return highlighter(Text.from_markup(text, style=style))


def _description(help_text: str) -> Group:
    """The first paragraph plain, the others dim below it, each paragraph on one line."""
    first, *others = inspect.cleandoc(help_text).partition("\f")[0].split("\n\n")
    parts = [_markup(first.replace("\n", " ").strip())]
    if others:
        parts += [Text(""), _markup("\n\n".join(others), style="dim")]
    return Group(*parts)


def _panel(title: str, table: Table) -> Panel:
    """A titled box, in Typer's dim border, around the options or the commands."""
    return Panel(table, border_style="dim", title=title, title_align="left")


def _table(*, highlight: bool) -> Table:
    """A borderless table with Typer's padding, whose columns size themselves, as Typer's."""
    return Table(
        highlight=highlight,
        show_header=False,
        expand=True,
        box=None,
        pad_edge=False,
        padding=(0, 1),
        leading=0,
    )


def _options(group: ClickCommand, ctx: Any) -> Table:
    """One row per option: long names, short names, two empty columns where Typer puts an
    option's negative names (`--no-x`, which the root has none of), placeholder and help (in
    `Columns`, which Typer uses to set a default beside the help, and which sizes the column)."""
    table = _table(highlight=True)
    for param in group.get_params(ctx):
        if not isinstance(param, TyperOption) or param.hidden:  # as Typer leaves them out
            continue
        long_names = ",".join(name for name in param.opts if "--" in name)
        short_names = ",".join(name for name in param.opts if "--" not in name)
        placeholder = Text(param.display_type_rich(ctx=ctx) or "", "bold yellow", overflow="fold")
        table.add_row(
            highlighter(long_names),
            highlighter(short_names),
            "",
            "",
            placeholder,
            Columns([_markup(" ".join((param.help or "").split()))]),
        )
    return table


def _commands(summaries: Mapping[str, str]) -> Table:
    """One row per command: its name in a column as wide as the longest, as Typer sets it, and
    its summary, which wraps."""
    table = _table(highlight=False)
    table.add_column(style="bold cyan", no_wrap=True, width=max(map(len, summaries)))
    table.add_column("Description", justify="left", no_wrap=False, ratio=10)
    for name, summary in summaries.items():
        table.add_row(Text(name), _markup(summary))
    return table


def print_root_help(group: ClickCommand, ctx: Any, summaries: Mapping[str, str]) -> None:
    """Print the root's help on stdout as Typer's `rich_format_help` would, with its commands
    listed by name and summary, in order."""
    console = _console()
    console.print(Padding(highlighter(group.get_usage(ctx)), 1), style="bold")
    if group.help:
        console.print(Padding(_description(group.help), (0, 1, 1, 1)))
    console.print(_panel("Options", _options(group, ctx)))
    console.print(_panel("Commands", _commands(summaries)))
