"""One subcommand per method under `astra analyse` and `astra plan`, built when first asked for.

Each method declares its options with `Param`; here they become real command-line options of
`astra analyse METHOD` (so help, validation and tab completion know them), shown in their own
help panel with their defaults and whether they are significant. Listing the methods reads only
entry-point metadata; a method's module is imported only when its command is built.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer

from astra_cli.cli.helptext import Command, Group, unwrap
from astra_cli.errors import AstraError, did_you_mean
from astra_cli.identifiers import IDENTIFIER_KEYS
from astra_cli.manifest import FORMATS
from astra_cli.methods.base import Method, Param
from astra_cli.methods.registry import load_method, method_names

INPUT_PANEL = "Observations"
COMMON_PANEL = "Execution and output"

_KEYWORD = inspect.Parameter.KEYWORD_ONLY
_METHOD_PREFIX = "method__"
_IDENTIFIER_PREFIX = "id__"

PER_KEY_HELP = {
    "release": "Data release (dr17, dr16, ...).",
    "apred": "Reduction version (dr17, r12, ...).",
    "telescope": "apo25m, lco25m or apo1m.",
    "field": "Field name (218-04, 000+14, ...).",
    "prefix": "ap (APO) or as (LCO); defaults from --telescope.",
    "obj": "APOGEE object id (2M06440890-0610126).",
    "apstar": "apStar directory; defaults to 'stars'.",
    "plate": "Plate (apVisit).",
    "mjd": "MJD of the visit (apVisit).",
    "fiber": "Fiber (apVisit).",
}

KINDS = {
    "apStar": "combined spectrum of a star (the default)",
    "apStar-1m": "combined spectrum from the APO 1m",
    "apVisit": "one visit (the default with plate, mjd, fiber)",
    "apVisit-1m": "one visit with the APO 1m",
    "aspcapStar": "ASPCAP's continuum-normalised spectrum",
}
"""Products offered when completing --kind; any other product sdss-access knows is accepted."""


def complete_kind(incomplete: str) -> list[tuple[str, str]]:
    return [(kind, text) for kind, text in KINDS.items() if kind.startswith(incomplete)]


@dataclass(frozen=True)
class Invocation:
    """What the user typed, sorted into its parts."""

    paths: list[Path]
    obs: list[str]
    from_file: list[str]
    per_key: dict[str, list[str]]
    method_options: dict[str, list[Any]]
    common: dict[str, Any]


def _option(name: str, annotation: Any, default: Any, option: Any) -> inspect.Parameter:
    return inspect.Parameter(
        name, _KEYWORD, annotation=Annotated[annotation, option], default=default
    )


def input_parameters() -> list[inspect.Parameter]:
    """Positional paths, `--obs`, and the repeatable per-key identifier options."""
    parameters = [
        _option(
            "paths",
            Optional[list[Path]],  # noqa: UP045 (typer reads this annotation at run time)
            None,
            typer.Argument(
                help="apStar or apVisit files to analyse.",
                show_default=False,
                metavar="PATH",
            ),
        ),
        _option(
            "obs",
            Optional[list[str]],  # noqa: UP045
            None,
            typer.Option(
                "--obs",
                help="An observation by its identifier, KEY=VAL,KEY=VAL (repeatable).",
                metavar="KEY=VAL,...",
                rich_help_panel=INPUT_PANEL,
                show_default=False,
            ),
        ),
        *manifest_parameters(),
    ]
    for key in IDENTIFIER_KEYS:
        parameters.append(
            _option(
                _IDENTIFIER_PREFIX + key,
                Optional[list[str]],  # noqa: UP045
                None,
                typer.Option(
                    f"--{key}",
                    help=PER_KEY_HELP[key] + " Repeatable; zipped with the other keys.",
                    metavar="TEXT",
                    rich_help_panel=INPUT_PANEL,
                    show_default=False,
                ),
            )
        )
    return parameters


def manifest_parameters() -> list[inspect.Parameter]:
    """`--from-file` and how to read it: the manifests' format, FITS HDU, product, bad rows."""

    def option(name: str, annotation: Any, default: Any, *decls: str, **info: Any):
        info.setdefault("show_default", False)
        return _option(name, annotation, default, typer.Option(*decls, **info))

    return [
        option(
            "from_file", Optional[list[str]], None, "--from-file",  # noqa: UP045
            metavar="FILE", rich_help_panel=INPUT_PANEL,
            help="A manifest of observations: paths or identifiers, one per line or row "
            "(txt, lst, csv, tsv, ecsv, fits, jsonl; '-' reads standard input). Columns named "
            "like an option of the method give their row its own value. Repeatable.",
        ),
        option(
            "manifest_format", Optional[Literal[FORMATS]], None, "--format",  # noqa: UP045
            metavar="FORMAT", rich_help_panel=INPUT_PANEL,
            help="Format of every --from-file: text, csv, tsv, ecsv, fits or jsonl (default: "
            "from its extension; text for '-').",
        ),
        option(
            "hdu", Optional[str], None, "--hdu", metavar="N|NAME",  # noqa: UP045
            rich_help_panel=INPUT_PANEL,
            help="HDU of a FITS manifest, by number or name (default: the first table).",
        ),
        option(
            "kind", Optional[str], None, "--kind", metavar="PRODUCT",  # noqa: UP045
            rich_help_panel=INPUT_PANEL, autocompletion=complete_kind,
            help="sdss-access product that identifiers name: apStar, apVisit, ... (default: "
            "apVisit when plate, mjd or fiber are given, else apStar).",
        ),
        option(
            "skip_bad_rows", bool, False, "--skip-bad-rows", metavar="",
            rich_help_panel=INPUT_PANEL,
            help="Plan the good rows of manifests with bad rows (and exit 1 at the end) "
            "instead of stopping before any work.",
        ),
    ]  # fmt: skip


def method_parameters(method_class: type[Method]) -> list[inspect.Parameter]:
    """The method's own options; each may be repeated to sweep it (bool flags excepted)."""
    panel = f"Options of {method_class.name}"
    return [_method_parameter(param, panel) for param in method_class.params.values()]


def _method_parameter(param: Param, panel: str) -> inspect.Parameter:
    name = _METHOD_PREFIX + param.name
    if param.type is bool:
        flags = f"{param.flag}/--no-{param.flag[2:]}"
        option = typer.Option(
            flags, help=option_help(param), rich_help_panel=panel, show_default=False, metavar=""
        )
        return _option(name, Optional[bool], None, option)  # noqa: UP045
    value_type: Any = param.type
    if param.choices is not None:
        value_type = Literal[tuple(param.choices)]
    metavar = "PATH" if param.type is Path else param.type.__name__.upper()
    option = typer.Option(
        param.flag, help=option_help(param), metavar=metavar, rich_help_panel=panel,
        show_default=False,
    )  # fmt: skip
    return _option(name, Optional[list[value_type]], None, option)  # noqa: UP045


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
    return f"{escape_markup(param.help)}{sweep} \\[{role}; {default}]".strip()


def split_arguments(values: dict[str, Any]) -> Invocation:
    """Sort a command's keyword arguments back into paths, identifiers, options."""
    per_key, method_options, common = {}, {}, {}
    for name, value in values.items():
        if name.startswith(_IDENTIFIER_PREFIX):
            per_key[name.removeprefix(_IDENTIFIER_PREFIX)] = value or []
        elif name.startswith(_METHOD_PREFIX):
            if value is not None:
                method_options[name.removeprefix(_METHOD_PREFIX)] = (
                    value if isinstance(value, list) else [value]
                )
        elif name not in ("paths", "obs", "from_file"):
            common[name] = value
    return Invocation(
        paths=values.get("paths") or [],
        obs=values.get("obs") or [],
        from_file=values.get("from_file") or [],
        per_key=per_key,
        method_options=method_options,
        common=common,
    )


Action = Callable[[type[Method], Invocation], None]


def method_description(method_class: type[Method]) -> str:
    """The method's docstring as help paragraphs: rich keeps single newlines, so the lines of
    each paragraph are joined; rich markup in it is escaped."""
    return escape_markup(unwrap(method_class.__doc__ or ""))


def escape_markup(text: str) -> str:
    """Every '[' escaped, so rich shows it as written. (rich.markup.escape would do too, but
    importing it costs completion 15 ms, and completion builds these help texts.)"""
    return text.replace("[", "\\[")


def build_method_command(
    method_class: type[Method],
    action: Action,
    common: list[inspect.Parameter],
    *,
    help_text: str,
    short_help: str | None = None,
    epilog: str | None = None,
):
    """A click command for one method: its signature is the inputs, the method's options and
    the common options, built at run time from the method's declared Params."""
    parameters = input_parameters() + method_parameters(method_class) + common

    def command(**values: Any) -> None:
        action(method_class, split_arguments(values))

    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    app = typer.Typer(add_completion=False, rich_markup_mode="rich")
    app.command(
        name=method_class.name, cls=Command, help=help_text, short_help=short_help, epilog=epilog
    )(command)
    click_command = typer.main.get_command(app)
    click_command.name = method_class.name
    return click_command


class MethodGroup(Group):
    """A group whose subcommands are the installed methods, built lazily.

    Subclasses set `build(method_class)` to make the command of one method.
    """

    def build(self, method_class: type[Method]):
        raise NotImplementedError

    def list_commands(self, ctx: Any) -> list[str]:
        return method_names()

    def shell_complete(self, ctx: Any, incomplete: str) -> list[Any]:
        """Method names straight from the entry points, importing no method (a plugin's import
        may be slow or broken), then the group's own options."""
        from typer._click.core import Command as ClickCommand
        from typer._click.shell_completion import CompletionItem

        names = [CompletionItem(name) for name in method_names() if name.startswith(incomplete)]
        return names + ClickCommand.shell_complete(self, ctx, incomplete)

    def resolve_command(self, ctx: Any, args: list[str]):
        """An unknown method is named with the closest installed one and where to look."""
        from typer._click.exceptions import UsageError

        try:
            return super().resolve_command(ctx, args)
        except UsageError as error:
            name = args[0] if args else ""
            if name and not name.startswith("-") and name not in method_names():
                known = method_names()
                error.message = (
                    f"No such method {name!r}{did_you_mean(name, known)}. Installed methods: "
                    f"{', '.join(known) or 'none'} (`astra methods` describes them)."
                )
            raise

    def get_command(self, ctx: Any, cmd_name: str):
        if cmd_name not in method_names():
            return None
        try:
            method_class = load_method(cmd_name)
        except AstraError as error:
            return _broken_method_command(cmd_name, str(error))
        return self.build(method_class)


def _broken_method_command(name: str, message: str):
    """A stand-in for a plugin that fails to load: listed, and says why when run."""
    from astra_cli.cli.errors import exit_with_error

    app = typer.Typer(add_completion=False)

    @app.command(name=name, cls=Command, help=f"(cannot be loaded: {message})")
    def broken() -> None:
        exit_with_error(message, 2)

    click_command = typer.main.get_command(app)
    click_command.name = name
    return click_command
