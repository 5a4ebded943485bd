"""`astra results METHOD`: a method's stored runs as one table, in the format its name says."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from astra_cli.cli.console import error, notice, stderr_console
from astra_cli.cli.errors import reported_errors
from astra_cli.cli.options import MethodToExport, StoreDir, Verbose
from astra_cli.exit_codes import ExitCode
from astra_cli.io.export import ExportedStatus, ExportFormat
from astra_cli.io.store import DEFAULT_OUTPUT_DIR
from astra_cli.vocabulary import StageProgress


def results_command(
    method: MethodToExport,
    out: Annotated[
        str | None,
        typer.Option(
            "--out",
            "-o",
            metavar="FILE",
            show_default=False,
            help="Table file to write: its name says the format (.fits, .ecsv, .csv, .tsv, "
            ".vot, .parquet); '-' for stdout. Default: OUTPUT_DIR/astra-METHOD.FORMAT.",
        ),
    ] = None,
    file_format: Annotated[
        ExportFormat | None,
        typer.Option(
            "--format",
            metavar="FORMAT",
            show_default=False,
            help="Table format, whatever --out is named: fits, ecsv, csv, tsv, votable or "
            "parquet. Default: from --out, else fits.",
        ),
    ] = None,
    status: Annotated[
        ExportedStatus,
        typer.Option("--status", metavar="STATUS", help="Which runs to export: ok, failed or all."),
    ] = "ok",
    group: Annotated[
        str | None, typer.Option("--group", metavar="KEY", help="Only this group (see astra plan).")
    ] = None,
    unflagged: Annotated[
        bool,
        typer.Option(
            "--unflagged",
            metavar="",
            help="Only runs whose flags are 0: leave out the results the method flagged as "
            "likely wrong (`astra analyse METHOD --help` lists its flags).",
        ),
    ] = False,
    latest: Annotated[
        bool,
        typer.Option(
            "--latest-per-observation",
            metavar="",
            help="One row per observation: its latest run, whatever the options.",
        ),
    ] = False,
    output_dir: StoreDir = Path(DEFAULT_OUTPUT_DIR),
    verbose: Verbose = False,
) -> None:
    """Export a method's results as one table (FITS, ECSV, CSV, TSV, VOTable or Parquet).

    One row per run: identifiers, input path, group key, significant options, status and every
    result column. FITS tables have upper-case column names like allStar, and a header recording
    the astra version and every group's options.
    """
    from astra_cli.engine.stopping import sigterm_interrupts
    from astra_cli.io.export import default_destination, destination_format
    from astra_cli.tables import export_results

    with reported_errors(verbose), sigterm_interrupts(), _progress() as progress:
        chosen = destination_format(out, file_format)
        destination = out or str(default_destination(method, chosen, output_dir))
        exported = export_results(
            method,
            output_dir,
            destination,
            chosen,
            status=status,
            group=group,
            unflagged=unflagged,
            latest_per_observation=latest,
            progress=progress,
        )
    for note in exported.notes:
        notice(note)
    if destination != "-":
        stderr_console().print(f"{exported.rows} row(s) of {method}: {destination}", markup=False)
    if damaged := exported.damaged:
        shown = ", ".join(damaged[:5]) + (", ..." if len(damaged) > 5 else "")
        error(
            f"{len(damaged)} stored run(s) could not be read and are not in the table "
            f"(a damaged store?): {shown}"
        )
        raise typer.Exit(ExitCode.RUNS_FAILED)


@contextlib.contextmanager
def _progress() -> Iterator[StageProgress | None]:
    """A transient bar on a terminal, for a store of a million runs; nothing in a pipe or a
    log (a cron job's export says only what it wrote)."""
    if not sys.stderr.isatty():
        yield None
        return
    from astra_cli.cli.stages import StageBar

    with StageBar(stderr_console(), transient=True) as bar:
        yield bar
