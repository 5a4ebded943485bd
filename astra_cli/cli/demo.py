"""`astra demo [DIR]`: write the synthetic data set and, with --run, analyse it with every
method and compare what they recover with the truth."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from astra_cli.cli.console import print_json, stderr_console
from astra_cli.cli.errors import reported_errors, require_at_least
from astra_cli.cli.options import Jobs, Json, Verbose

if TYPE_CHECKING:
    from astra_cli.demo.dataset import DemoFiles
    from astra_cli.demo.report import Accuracy

DEFAULT_DIRECTORY = Path("astra-demo")


def demo_command(
    directory: Annotated[
        Path, typer.Argument(help="Where to write the demo data set.", metavar="DIR")
    ] = DEFAULT_DIRECTORY,
    run: Annotated[
        bool,
        typer.Option("--run", metavar="", help="Then analyse it with every method and compare."),
    ] = False,
    stars: Annotated[
        int, typer.Option("--stars", metavar="N", help="Test stars, at least 1.")
    ] = 100,
    training: Annotated[
        int,
        typer.Option("--training", metavar="N", help="Training stars for the Cannon, at least 20."),
    ] = 300,
    snr: Annotated[
        float, typer.Option("--snr", metavar="NUMBER", help="S/N of the test spectra, at least 1.")
    ] = 100.0,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Random seed.")] = 42,
    jobs: Jobs = None,
    json: Json = False,
    verbose: Verbose = False,
) -> None:
    """Write a synthetic APOGEE-like data set with known labels and velocities.

    apStar and apVisit files in the sdss-access layout under DIR/sas, a model grid (astra FITS
    and FERRE formats), a trained Cannon model, RV templates and CSV manifests with the truth.
    With --run, analyse them with snr, grid, cannon and rv and print recovered vs true.
    """
    from astra_cli.demo.dataset import DemoConfig, write_demo

    console = stderr_console()
    with reported_errors(verbose, json_document=json):
        for flag, value, least in (("--stars", stars, 1), ("--training", training, 20)):
            require_at_least(flag, value, least)
        require_at_least("--snr", snr, 1.0)
        with console.status(f"writing the demo data set to {directory} ..."):
            files = write_demo(directory, DemoConfig(stars, training, snr, seed))
        console.print(
            f"wrote {len(files.stars)} apStar and {len(files.visits)} apVisit files under "
            f"{files.data_root}, models in {files.grid_fits.parent}, manifests "
            f"{files.stars_manifest.name} and {files.visits_manifest.name}",
            markup=False,
        )
        if not run:
            console.print(_next_steps(files), markup=False, highlight=False)
            return
        from astra_cli.cli.analyse import progress_for, render_summary
        from astra_cli.demo.report import analyse_demo

        summaries, rows = analyse_demo(
            files,
            directory / "astra-output",
            jobs=jobs,
            progress_factory=lambda: progress_for(quiet=False),
        )
    for summary in summaries:
        render_summary(summary)
    if json:
        print_json([row.__dict__ | {"met": row.met} for row in rows])
    else:
        _render_accuracy(rows)
    if not all(row.met for row in rows) or any(s.failed for s in summaries):
        raise typer.Exit(1)


def _render_accuracy(rows: list[Accuracy]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="recovered - true, on the demo spectra", title_justify="left")
    for column in ("method", "label", "n", "rms", "bias", "target (rms)", ""):
        table.add_column(column, justify="left" if column in ("method", "label", "") else "right")
    for row in rows:
        table.add_row(
            row.method, row.label, str(row.n), f"{row.rms:.4g}", f"{row.bias:+.3g}",
            f"{row.target:g}", "ok" if row.met else "MISSED",
        )  # fmt: skip
    Console().print(table)


def _next_steps(files: DemoFiles) -> str:
    """The commands a new user runs next, with this data set's paths filled in."""
    root, models, out = files.data_root, files.grid_fits.parent, files.directory / "astra-output"
    common = f"--data-root {root} -o {out}"
    return "\n".join(
        [
            "next, for example:",
            f"  astra analyse grid --grid {models / 'grid.fits'} "
            f"--from-file {files.stars_manifest} {common}",
            f"  astra analyse rv --templates {models / 'rv-templates.fits'} "
            f"--from-file {files.visits_manifest} {common}",
            f"  astra results grid --output-dir {out} -o grid.fits",
            f"or all at once, compared with the truth: astra demo {files.directory} --run",
        ]
    )
