"""`astra results METHOD`: every stored run of a method as one table (FITS, ECSV or CSV)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from astra_cli.cli.console import error, stderr_console
from astra_cli.cli.errors import reported_errors
from astra_cli.cli.options import StoreDir, Verbose
from astra_cli.exit_codes import ExitCode
from astra_cli.io.export import ExportedStatus, ExportFormat
from astra_cli.io.store import DEFAULT_OUTPUT_DIR

if TYPE_CHECKING:
    from astra_cli.vocabulary import RunRecord


def _method_names(incomplete: str) -> list[str]:
    from astra_cli.methods.registry import method_names

    return [name for name in method_names() if name.startswith(incomplete)]


def results_command(
    method: Annotated[
        str,
        typer.Argument(
            help="The method whose results to export.",
            metavar="METHOD",
            autocompletion=_method_names,
        ),
    ],
    out: Annotated[
        str | None,
        typer.Option(
            "--out",
            "-o",
            metavar="FILE",
            show_default=False,
            help="Table file to write, '-' for stdout. Default: OUTPUT_DIR/astra-METHOD.FORMAT.",
        ),
    ] = None,
    file_format: Annotated[
        ExportFormat | None,
        typer.Option(
            "--format", show_default=False, help="Table format. Default: from --out, else fits."
        ),
    ] = None,
    status: Annotated[
        ExportedStatus, typer.Option("--status", help="Which runs to export.")
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
    """Export a method's results as one table (FITS, ECSV or CSV).

    One row per run: identifiers, input path, group key, significant options, status and every
    result column. FITS tables have upper-case column names like allStar, and a header recording
    the astra version and every group's options.
    """
    from astra_cli.errors import UsageError, did_you_mean
    from astra_cli.io.export import default_destination, format_of, results_table, write_table
    from astra_cli.io.store import ResultsStore

    with reported_errors(verbose):
        chosen = file_format or format_of(out) or "fits"
        destination = out or str(default_destination(method, chosen, output_dir))
        with ResultsStore(output_dir, read_only=True) as store:
            stored = store.methods()
            if method not in stored:
                raise UsageError(
                    f"no runs of {method!r} in {store.path}{did_you_mean(method, stored)}; "
                    f"it holds {', '.join(stored) or 'nothing yet'}"
                )
            records = list(store.records(method, None if status == "all" else status, group))
            damaged = store.damaged
        if unflagged:
            records = unflagged_only(method, records)
        descriptions = column_descriptions(method, records)
        table = results_table(
            records, method=method, latest_per_observation=latest, descriptions=descriptions
        )
        write_table(table, destination, chosen)
    if destination != "-":
        stderr_console().print(f"{len(table)} row(s) of {method}: {destination}", markup=False)
    if damaged:
        shown = ", ".join(damaged[:5]) + (", ..." if len(damaged) > 5 else "")
        error(
            f"{len(damaged)} stored run(s) could not be read and are not in the table "
            f"(damaged store? rerun them with --force): {shown}"
        )
        raise typer.Exit(ExitCode.RUNS_FAILED)


def unflagged_only(method: str, records: list[RunRecord]) -> list[RunRecord]:
    """The runs whose `flags` are 0 (failed runs have none); an error for a method whose
    results have no flags, where the option would silently do nothing."""
    from astra_cli.errors import UsageError

    if records and not any("flags" in (record.result or {}) for record in records):
        raise UsageError(f"--unflagged: the results of {method} have no flags column")
    return [record for record in records if (record.result or {}).get("flags") == 0]


def column_descriptions(method: str, records: list[RunRecord]) -> dict[str, str]:
    """What the method says about its columns, for every group's options (a grid's label
    names, say); nothing for a group whose model file is gone or a method not installed."""
    from astra_cli.errors import AstraError
    from astra_cli.methods.registry import load_method

    described: dict[str, str] = {}
    try:
        method_class = load_method(method)
    except AstraError:
        return described
    groups = {record.group_key: record.options for record in records}
    for options in groups.values():
        # A group's stored options may hold more than the method's (the upstream chain).
        own = {name: value for name, value in options.items() if name in method_class.params}
        try:
            described.update(method_class(**own).describe_columns())
        except (AstraError, OSError, ValueError):
            continue
    return described
