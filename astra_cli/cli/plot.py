"""`astra plot fit` and `astra plot results`: look at a fit over its spectrum, and at a
catalogue of results, as images (PNG, PDF, SVG). They read the store and the saved spectra
only; matplotlib is imported by these commands alone."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from astra_cli.cli.console import stderr_console
from astra_cli.cli.errors import reported_errors
from astra_cli.cli.helptext import Command, Group, help_of
from astra_cli.cli.options import MethodToDraw, StoreDir, Verbose
from astra_cli.io.store import DEFAULT_OUTPUT_DIR

if TYPE_CHECKING:
    from astra_cli.vocabulary import RunRecord

plot_app = typer.Typer(
    cls=Group,
    help="Draw a fit over its spectrum, or one result column against another (the plot extra: "
    "pip install 'astra-cli\\[plot]').",
    no_args_is_help=True,
)

Image = Annotated[
    Path | None,
    typer.Option(
        "--out",
        "-o",
        metavar="FILE",
        show_default=False,
        help="Image to write: .png, .pdf or .svg, by its name. Default: under OUTPUT_DIR/plots/.",
    ),
]
OneGroup = Annotated[
    str | None, typer.Option("--group", metavar="KEY", help="Only this group (see astra status).")
]


def fit_command(
    observation: Annotated[
        str,
        typer.Argument(
            help="The observation: its file, its key, or its APOGEE_ID (as astra show).",
            metavar="OBSERVATION",
        ),
    ],
    method: Annotated[
        str | None,
        typer.Option("--method", metavar="METHOD", help="The method whose fit to draw."),
    ] = None,
    group: OneGroup = None,
    out: Image = None,
    output_dir: StoreDir = Path(DEFAULT_OUTPUT_DIR),
    verbose: Verbose = False,
) -> None:
    """Draw a run's fit from its saved spectrum (`--save-spectra`): the normalised observed
    flux and the model, residuals with the error band below, one panel per chip, pixels the
    fit left out shaded grey, the labels in the title.

    Example: astra plot fit 2M07144653+7101430 --output-dir astra-output -o fit.png
    """
    import os

    from astra_cli.errors import UsageError
    from astra_cli.io.fitfiles import read_fitted_spectrum
    from astra_cli.io.store import ResultsStore
    from astra_cli.plots.figures import check_destination, save
    from astra_cli.plots.fit import fit_figure

    with reported_errors(verbose):
        if out is not None:
            check_destination(out, "--out")
        target = os.path.abspath(observation) if os.path.exists(observation) else observation
        with ResultsStore(output_dir, read_only=True) as store:
            runs = store.runs_of(target)
        if not runs:
            raise UsageError(f"no runs of {observation!r} in {store.path} (see astra status)")
        run = _the_fitted_run(observation, runs, method, group)
        saved = output_dir / (run.result or {})["spectrum_file"]
        if not saved.is_file():
            raise UsageError(f"{saved}: the saved spectrum of this run is missing")
        spectrum = read_fitted_spectrum(saved)
        destination = out or output_dir / "plots" / f"fit-{run.method}-{saved.stem}.png"
        check_destination(destination, "--out")
        save(fit_figure(spectrum, _title(run)), destination)
    stderr_console().print(f"fit of {observation}: {destination}", markup=False)


def _the_fitted_run(
    observation: str, runs: list[RunRecord], method: str | None, group: str | None
) -> RunRecord:
    """The one run asked for among those that saved a spectrum; a choice to make otherwise."""
    from astra_cli.errors import UsageError

    chosen = [
        run
        for run in runs
        if (method is None or run.method == method) and (group is None or run.group_key == group)
    ]
    fitted = [run for run in chosen if (run.result or {}).get("spectrum_file")]
    if not fitted:
        asked = " ".join(f"--{k} {v}" for k, v in (("method", method), ("group", group)) if v)
        raise UsageError(
            f"no run of {observation!r}{' with ' + asked if asked else ''} saved its spectrum: "
            "analyse it with --save-spectra (and --force if it is done)"
        )
    latest_per_group = {(run.method, run.group_key): run for run in fitted}
    if len(latest_per_group) > 1:
        choices = ", ".join(f"--method {m} --group {g}" for m, g in latest_per_group)
        raise UsageError(f"{observation!r} has fits in several groups; choose one: {choices}")
    return next(iter(latest_per_group.values()))


def _title(run: RunRecord) -> str:
    """The object, the method and group, each label with its error, and the method's flags
    when it raised any: a fit that looks good must not hide that the method doubted it."""
    result: dict[str, Any] = run.result or {}
    labels = [
        f"{name} = {value:.4g} ± {result[f'e_{name}']:.2g}"
        for name, value in result.items()
        if isinstance(result.get(f"e_{name}"), float) and isinstance(value, float)
    ]
    who = (run.identifiers or {}).get("obj") or Path(run.input_path or run.observation).name
    flagged = f", FLAGGED (flags = {result['flags']})" if result.get("flags") else ""
    return f"{who}: {run.method} (group {run.group_key}){flagged}\n" + ", ".join(labels)


def results_command(
    method: MethodToDraw,
    x: Annotated[str, typer.Option("--x", metavar="COLUMN", help="Column across.")] = "teff",
    y: Annotated[str, typer.Option("--y", metavar="COLUMN", help="Column up.")] = "logg",
    color: Annotated[
        str | None,
        typer.Option(
            "--color",
            metavar="COLUMN",
            show_default=False,
            help="Column for the colour of the points. Default: m_h where the results have it.",
        ),
    ] = None,
    group: OneGroup = None,
    out: Image = None,
    output_dir: StoreDir = Path(DEFAULT_OUTPUT_DIR),
    verbose: Verbose = False,
) -> None:
    """Draw one result column against another for a method's ok runs: by default a Kiel
    diagram (teff against logg, both decreasing, coloured by m_h); flagged runs are drawn as
    red crosses.

    Example: astra plot results grid --output-dir astra-output -o kiel.png
    """
    from astra_cli.errors import UsageError
    from astra_cli.plots.catalogue import scatter_figure
    from astra_cli.plots.figures import check_destination, save
    from astra_cli.tables import results

    with reported_errors(verbose):
        if out is not None:
            check_destination(out, "--out")
        table = results(method, output_dir, group=group)
        if len(table) == 0:
            raise UsageError(f"no ok runs of {method} to draw in {output_dir}")
        if color is None and "m_h" in table.colnames:
            color = "m_h"
        destination = out or output_dir / "plots" / f"{method}-{x}-{y}.png"
        check_destination(destination, "--out")
        title = f"{method}{f' (group {group})' if group else ''}: {len(table)} runs"
        save(scatter_figure(table, x, y, color, title), destination)
    stderr_console().print(f"{y} against {x} of {method}: {destination}", markup=False)


# Registered here, not by decorators, so that their help is unwrapped as every command's.
plot_app.command("fit", cls=Command, help=help_of(fit_command))(fit_command)
plot_app.command("results", cls=Command, help=help_of(results_command))(results_command)
