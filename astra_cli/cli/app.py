"""The `astra` command: the Typer application and its table of commands.

Each command's module is imported when the command is run, completed or asked for its own help
(`cli.lazy`): `astra --help` and `astra <TAB>` read the table alone.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Annotated, Any, ClassVar

import typer

from astra_cli.cli.clickparts import ClickCommand, get_command
from astra_cli.cli.completion import INSTALL, enable_shell_completion
from astra_cli.cli.helptext import Command, help_of
from astra_cli.cli.lazy import CommandTable, Entry

HELP = (
    "Analyse large batches of SDSS APOGEE spectra.\n\n"
    "Name observations by path or by identifier (--obs, or per-key options zipped like the "
    "tuples of Astra's batch mode) and give one or more values of each method option. astra "
    "groups the runs by their significant options, loads each group's model once per worker, "
    "and keeps every result in a SQLite store under --output-dir."
)


def _built(name: str, register: Callable[[typer.Typer], Any]) -> ClickCommand:
    """The click command `register` adds to a Typer application under `name`."""
    holder = typer.Typer(rich_markup_mode="rich", add_completion=False)
    holder.callback()(_nothing)  # a group, whatever is registered: its commands are built alike
    register(holder)
    command: ClickCommand = get_command(holder).commands[name]  # type: ignore[attr-defined]
    return command


def _nothing() -> None:
    """The holder group's callback: it only holds the command being built."""


def _function(name: str, module: str, attribute: str, epilog: str | None = None) -> ClickCommand:
    """A command written as a function (`results_command`), with its docstring as help."""
    function = getattr(importlib.import_module(module), attribute)

    def register(holder: typer.Typer) -> None:
        holder.command(name, cls=Command, help=help_of(function), epilog=epilog)(function)

    return _built(name, register)


def _typer(name: str, module: str, attribute: str, help_text: str | None = None) -> ClickCommand:
    """A command group written as a Typer application (`train_app`)."""
    sub = getattr(importlib.import_module(module), attribute)
    given: dict[str, Any] = {"help": help_text} if help_text is not None else {}  # else its own
    return _built(name, lambda holder: holder.add_typer(sub, name=name, **given))


def _methods_group(name: str, group_class: str, help_text: str) -> ClickCommand:
    """`astra analyse` and `astra plan`: a subcommand per installed method."""
    module, attribute = group_class.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), attribute)
    sub = typer.Typer(cls=cls, no_args_is_help=True)
    return _built(name, lambda holder: holder.add_typer(sub, name=name, help=help_text))


ANALYSE_HELP = (
    "Analyse observations with a method: plan, run each group with its model loaded once, "
    "store every result."
)
PLAN_HELP = "Show the groups and chunks that `astra analyse` would run, without running anything."
STATUS_HELP = (
    "Without a method, what the store holds; with one, the requested runs that are done, "
    "stale, failed and pending, group by group."
)

ENTRIES = [
    Entry("analyse", ANALYSE_HELP,
          lambda: _methods_group("analyse", "astra_cli.cli.analyse.AnalyseGroup", ANALYSE_HELP)),
    Entry("plan", PLAN_HELP,
          lambda: _methods_group("plan", "astra_cli.cli.plan.PlanGroup", PLAN_HELP)),
    Entry("status", STATUS_HELP,
          lambda: _typer("status", "astra_cli.cli.status", "status_app", STATUS_HELP)),
    Entry("results", "Export a method's results as one table (FITS, ECSV, CSV, TSV, VOTable or "
          "Parquet).", lambda: _function("results", "astra_cli.cli.results", "results_command")),
    Entry("show", "Show every stored run of one observation: method, group and options, status, "
          "results and flags, the error and whose fault it was, timings, what the run was "
          "computed from, and where its saved spectrum is. Reads the store only.",
          lambda: _function("show", "astra_cli.cli.show", "show_command")),
    Entry("plot", "Draw a fit over its spectrum, or one result column against another (the plot "
          "extra: pip install 'astra-cli\\[plot]').",
          lambda: _typer("plot", "astra_cli.cli.plot", "plot_app")),
    Entry("forget", "Forget stored runs of a method, and the spectra files they saved: the next "
          "invocation that asks for them runs them again. Asks first, unless --yes; --dry-run "
          "only says what it would forget.",
          lambda: _function("forget", "astra_cli.cli.forget", "forget_command")),
    Entry("methods", "List the installed methods (built-in and plugins) and their options.",
          lambda: _function("methods", "astra_cli.cli.methods", "methods_command")),
    Entry("train", "Train data-driven models from labelled spectra.",
          lambda: _typer("train", "astra_cli.cli.train", "train_app")),
    Entry("grid", "Inspect model grids and convert them between astra's and FERRE's formats.",
          lambda: _typer("grid", "astra_cli.cli.grid", "grid_app")),
    Entry("demo", "Write a synthetic APOGEE-like data set with known labels and velocities.",
          lambda: _function("demo", "astra_cli.cli.demo", "demo_command")),
    Entry("completion", "Print the tab-completion script for bash, zsh or fish.",
          lambda: _function("completion", "astra_cli.cli.completion", "completion_command",
                            INSTALL)),
]  # fmt: skip
"""The commands in the order of use, the main one first, each with the line `astra --help`
shows (the first paragraph of its own help)."""


class AstraCommands(CommandTable):
    entries: ClassVar[dict[str, Entry]] = {entry.name: entry for entry in ENTRIES}


app = typer.Typer(
    name="astra",
    cls=AstraCommands,
    help=HELP,
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,  # `astra completion SHELL` instead of --install/--show-completion
    context_settings={"help_option_names": ["--help", "-h"]},  # every command inherits it
)


def _print_version(value: bool) -> None:
    if value:
        from astra_cli.version import __version__

        typer.echo(f"astra {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            metavar="",
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Analyse large batches of SDSS APOGEE spectra."""


def main() -> None:
    enable_shell_completion()
    app(prog_name="astra")
