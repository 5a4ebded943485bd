"""The `astra` command: the Typer application and its commands."""

from __future__ import annotations

from typing import Annotated

import typer

from astra_cli.cli.analyse import AnalyseGroup
from astra_cli.cli.completion import INSTALL, completion_command, enable_shell_completion
from astra_cli.cli.demo import demo_command
from astra_cli.cli.forget import forget_command
from astra_cli.cli.grid import grid_app
from astra_cli.cli.helptext import Command, Group, help_of
from astra_cli.cli.methods import methods_command
from astra_cli.cli.plan import PlanGroup
from astra_cli.cli.plot import plot_app
from astra_cli.cli.results import results_command
from astra_cli.cli.show import show_command
from astra_cli.cli.status import status_app
from astra_cli.cli.train import train_app

HELP = (
    "Analyse large batches of SDSS APOGEE spectra.\n\n"
    "Name observations by path or by identifier (--obs, or per-key options zipped like the "
    "tuples of Astra's batch mode) and give one or more values of each method option. astra "
    "groups the runs by their significant options, loads each group's model once per worker, "
    "and keeps every result in a SQLite store under --output-dir."
)

app = typer.Typer(
    name="astra",
    cls=Group,
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


for name, function, epilog in (
    ("methods", methods_command, None),
    ("results", results_command, None),
    ("show", show_command, None),
    ("forget", forget_command, None),
    ("demo", demo_command, None),
    ("completion", completion_command, INSTALL),
):
    app.command(name, cls=Command, help=help_of(function), epilog=epilog)(function)
app.add_typer(train_app, name="train")
app.add_typer(grid_app, name="grid")
app.add_typer(plot_app, name="plot")
app.add_typer(
    typer.Typer(cls=AnalyseGroup, no_args_is_help=True),
    name="analyse",
    help="Analyse observations with a method: plan, run each group with its model loaded once, "
    "store every result.",
)
app.add_typer(
    typer.Typer(cls=PlanGroup, no_args_is_help=True),
    name="plan",
    help="Show the groups and chunks that `astra analyse` would run, without running anything.",
)
app.add_typer(
    status_app,
    name="status",
    help="Without a method, what the store holds; with one, the requested runs that are done, "
    "stale, failed and pending, group by group.",
)


def main() -> None:
    enable_shell_completion()
    app(prog_name="astra")
