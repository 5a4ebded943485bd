"""`astra train cannon`: train a Cannon model from labelled spectra listed in manifests."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from astra_cli.cli.console import stderr_console
from astra_cli.cli.errors import reported_errors, require_at_least
from astra_cli.cli.helptext import Command, Group, help_of
from astra_cli.cli.options import DataRoot, ManifestFormat, Verbose

train_app = typer.Typer(
    cls=Group, help="Train data-driven models from labelled spectra.", no_args_is_help=True
)


def train_cannon_command(
    from_file: Annotated[
        list[str],
        typer.Option(
            "--from-file",
            metavar="FILE",
            help="Manifest of training spectra (path or "
            "identifier columns) with a column per label; repeatable, '-' for stdin.",
        ),
    ],
    labels: Annotated[
        str,
        typer.Option(
            "--labels",
            metavar="LABELS",
            help="Comma-separated label columns, e.g. teff,logg,m_h.",
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", metavar="FILE", help="Model file to write (FITS).")
    ],
    continuum_order: Annotated[
        int,
        typer.Option(
            "--continuum-order",
            metavar="N",
            help="Continuum polynomial order per chip (0 for a constant).",
        ),
    ] = 4,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            metavar="",
            help="Replace the model file if it exists (runs made with the old one become "
            "stale, and rerun).",
        ),
    ] = False,
    data_root: DataRoot = None,
    manifest_format: ManifestFormat = None,
    verbose: Verbose = False,
) -> None:
    """Train The Cannon: a quadratic-in-labels model of every pixel, with its own scatter.

    Example: astra train cannon --from-file training.csv --labels teff,logg,m_h -o cannon.fits
    """
    from astra_cli.training import read_labelled, train_cannon

    names = [name.strip().lower() for name in labels.split(",") if name.strip()]
    console = stderr_console()
    with reported_errors(verbose):
        if not names:
            from astra_cli.errors import UsageError

            raise UsageError("--labels: give at least one label column, e.g. teff,logg,m_h")
        from astra_cli.methods.continuum_option import MAX_CONTINUUM_ORDER

        require_at_least("--continuum-order", continuum_order, 0, MAX_CONTINUUM_ORDER)
        if output.is_dir():
            from astra_cli.errors import UsageError

            raise UsageError(f"--output {output} is a directory; -o names the model file to write")
        if output.exists() and not overwrite:
            from astra_cli.errors import UsageError

            raise UsageError(f"--output {output} exists; add --overwrite to replace it")
        training = read_labelled(from_file, names, data_root=data_root, file_format=manifest_format)
        with stage_progress(console) as progress:
            model = train_cannon(
                training, output, continuum_order=continuum_order, progress=progress
            )
    console.print(
        f"trained a Cannon model of {', '.join(names)} on {model.n_train} spectra, "
        f"{int(model.trained_pixels.sum())} pixels: {output}",
        markup=False,
    )


def stage_progress(console: Any) -> Any:
    """A bar per stage on a terminal, a line per stage in a log or a pipe."""
    from astra_cli.cli.stages import StageBar, StageLines

    return StageBar(console) if sys.stderr.isatty() else StageLines(sys.stderr)


# Registered here, not by decorators, so that their help is unwrapped as every command's.
train_app.command("cannon", cls=Command, help=help_of(train_cannon_command))(train_cannon_command)
