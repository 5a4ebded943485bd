"""One subcommand per method under `astra analyse` and `astra plan`, built when first asked for.

Each method declares its options with `Param`; here they become real command-line options of
`astra analyse METHOD` (so help, validation and tab completion know them), shown in their own
help panel with their defaults and whether they are significant. Listing the methods reads only
entry-point metadata; a method's module is imported only when its command is built.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable
from typing import Annotated, Any

import typer

from astra_cli.cli.clickparts import ClickCommand, ClickUsageError, CompletionItem, get_command
from astra_cli.cli.helptext import Command, Group, unwrap
from astra_cli.cli.invocation import METHOD_PREFIX, Invocation, split_arguments
from astra_cli.cli.options import INPUTS, SharedOption
from astra_cli.errors import AstraError, did_you_mean
from astra_cli.methods.base import Method, Param
from astra_cli.methods.registry import load_method, method_names

Action = Callable[[type[Method], Invocation], None]


def method_parameters(method_class: type[Method]) -> list[inspect.Parameter]:
    """The method's own options; each may be repeated to sweep it (bool flags excepted)."""
    panel = f"Options of {method_class.name}"
    return [_method_parameter(param, panel) for param in method_class.params.values()]


def _method_parameter(param: Param, panel: str) -> inspect.Parameter:
    name = METHOD_PREFIX + param.name
    if param.type is bool:
        flags = f"{param.flag}/--no-{param.flag[2:]}"
        option = typer.Option(
            flags, help=option_help(param), rich_help_panel=panel, show_default=False, metavar=""
        )
        return _keyword(name, bool | None, option)
    value_type: Any = param.type
    if param.choices is not None:
        # Typer takes lists of an Enum, not of a Literal; split_arguments unwraps the values.
        members = [(str(choice), str(choice)) for choice in param.choices]
        value_type = enum.Enum(f"{param.name}_choices", members, type=str)  # type: ignore[misc,no-redef]
    option = typer.Option(
        param.flag, help=option_help(param), metavar=param.metavar, rich_help_panel=panel,
        show_default=False,
    )  # fmt: skip
    return _keyword(name, list[value_type] | None, option)


def _keyword(name: str, annotation: Any, option: Any) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[annotation, option], default=None
    )


def option_help(param: Param) -> str:
    """The method's help for an option, then whether it is significant and its default.

    Typer renders help as rich markup, which would swallow a bracketed note (and anything in a
    plugin's help that looks like a tag), so both are escaped.
    """
    sweep = " Repeat to sweep." if param.significant and param.type is not bool else ""
    role = (
        "significant: each value is its own group"
        if param.significant
        else "insignificant: does not split groups"
    )
    default = "required" if param.required else f"default: {param.default}"
    bounds = f"; {param.bounds}" if param.bounds else ""
    choices = f"; one of {', '.join(map(str, param.choices))}" if param.choices else ""
    note = escape_markup(f"{role}; {default}{bounds}{choices}")
    return f"{escape_markup(param.help)}{sweep} \\[{note}]".strip()


def method_description(method_class: type[Method]) -> str:
    """The method's docstring as help paragraphs, then its flag bits one per line: rich keeps
    single newlines, so the lines of each paragraph are joined; rich markup in it is escaped."""
    text = unwrap(method_class.__doc__ or "")
    if method_class.flags:
        bits = "\n".join(f"{bit}: {meaning}" for bit, meaning in sorted(method_class.flags.items()))
        text += f"\n\nFlags (bits of the flags column, added together):\n{bits}"
    return escape_markup(text)


def escape_markup(text: str) -> str:
    """Every '[' escaped, so rich shows it as written. (rich.markup.escape would do too, but
    importing it costs completion 15 ms, and completion builds these help texts.)"""
    return text.replace("[", "\\[")


def build_method_command(
    method_class: type[Method],
    action: Action,
    common: list[SharedOption],
    *,
    help_text: str,
    short_help: str | None = None,
    epilog: str | None = None,
) -> ClickCommand:
    """A click command for one method: its signature is the method's own options (first, so
    that its help shows them first: they are what sets this command apart), the inputs and
    the common options, built at run time from the method's declared Params."""
    shared = [option.parameter() for option in INPUTS]
    parameters = [*method_parameters(method_class), *shared, *(o.parameter() for o in common)]

    def command(**values: Any) -> None:
        action(method_class, split_arguments(values))

    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    app = typer.Typer(add_completion=False, rich_markup_mode="rich")
    app.command(
        name=method_class.name, cls=Command, help=help_text, short_help=short_help, epilog=epilog
    )(command)
    click_command = get_command(app)
    click_command.name = method_class.name
    return click_command


class MethodGroup(Group):
    """A group whose subcommands are the installed methods, built lazily.

    Subclasses set `build(method_class)` to make the command of one method.
    """

    def build(self, method_class: type[Method]) -> ClickCommand:
        raise NotImplementedError

    def list_commands(self, ctx: Any) -> list[str]:
        return method_names()

    def shell_complete(self, ctx: Any, incomplete: str) -> list[Any]:
        """Method names straight from the entry points, importing no method (a plugin's import
        may be slow or broken), then the group's own options."""
        names = [CompletionItem(name) for name in method_names() if name.startswith(incomplete)]
        return names + ClickCommand.shell_complete(self, ctx, incomplete)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        """An unknown method is named with the closest installed one and where to look."""
        try:
            return super().resolve_command(ctx, args)
        except ClickUsageError as error:
            name = args[0] if args else ""
            if name and not name.startswith("-") and name not in method_names():
                known = method_names()
                error.message = (
                    f"No such method {name!r}{did_you_mean(name, known)}. Installed methods: "
                    f"{', '.join(known) or 'none'} (`astra methods` describes them)."
                )
            raise

    def get_command(self, ctx: Any, cmd_name: str) -> ClickCommand | None:
        if cmd_name not in method_names():
            return None
        try:
            method_class = load_method(cmd_name)
        except AstraError as error:
            return _broken_method_command(cmd_name, str(error))
        return self.build(method_class)


def _broken_method_command(name: str, message: str) -> ClickCommand:
    """A stand-in for a plugin that fails to load: listed, and says why when run."""
    from astra_cli.cli.errors import exit_with_error

    app = typer.Typer(add_completion=False)

    @app.command(name=name, cls=Command, help=f"(cannot be loaded: {message})")
    def broken() -> None:
        exit_with_error(message, 2)

    click_command = get_command(app)
    click_command.name = name
    return click_command
