"""How help reads: paragraphs that rich can wrap, and one style of placeholder.

In rich markup mode Typer keeps every newline of a help text, so a docstring wrapped at 100
columns would be printed with its line breaks in the middle of the terminal's own wrapping;
`unwrap` joins the lines of each paragraph.

Every value is shown by an upper-case placeholder (FILE, N, METHOD), flags by none. Typer 0.29
labels the --help flag `<bool>`, and prints an argument's Python type beside its name
(`PATH <list[Path]>`, `METHOD <str>`); the command classes here give --help an empty
placeholder and show an argument by its name alone.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Sequence
from typing import Any

from astra_cli.cli.clickparts import (
    Abort,
    ClickException,
    ClickUsageError,
    NoArgsIsHelpError,
    TyperCommand,
    TyperGroup,
)
from astra_cli.cli.console import error
from astra_cli.cli.usage import plain_message
from astra_cli.cli.values import PlainValues, convertible


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


def _no_type(ctx: Any) -> None:
    return None


def _prepared(params: list[Any]) -> list[Any]:
    """The parameters, each argument shown in help by its name (its placeholder) alone, and
    each value converted by astra (`cli.values`) where Typer would have used pydantic."""
    for param in params:
        if param.param_type_name == "argument":
            param.display_type_rich = _no_type
        descriptor = getattr(param, "type_descriptor", None)
        if (
            descriptor is not None
            and getattr(param, "_runtime_param", "") is None
            and convertible(descriptor.annotation)
        ):
            param._runtime_param = PlainValues(descriptor.parameter_info, descriptor.annotation)
    return params


class Command(TyperCommand):
    """A Typer command whose --help shows placeholders, not Python types."""

    def get_help_option(self, ctx: Any) -> Any:
        return _plain_help_option(super().get_help_option(ctx))

    def get_params(self, ctx: Any) -> list[Any]:
        return _prepared(super().get_params(ctx))


class Group(TyperGroup):
    """A Typer group whose --help shows placeholders, not Python types, and whose command line
    mistakes are said in one plain line."""

    def get_help_option(self, ctx: Any) -> Any:
        return _plain_help_option(super().get_help_option(ctx))

    def get_params(self, ctx: Any) -> list[Any]:
        return _prepared(super().get_params(ctx))

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line; a mistake in it is said in one line of plain words, exit code
        2 (`usage.plain_message`), not in Typer's framed box of pydantic's words."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except NoArgsIsHelpError as shown:  # the help was printed: nothing else to say
            sys.exit(shown.exit_code)
        except Abort:  # Ctrl-C at a prompt (`astra forget` asking to confirm)
            error("aborted")
            sys.exit(1)
        except ClickUsageError as mistake:
            error(plain_message(mistake))
            sys.exit(mistake.exit_code)
        except ClickException as failure:  # a file click could not open, say
            error(failure.format_message())
            sys.exit(failure.exit_code)
        sys.exit(code if isinstance(code, int) else 0)
