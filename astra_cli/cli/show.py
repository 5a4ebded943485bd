"""`astra show OBSERVATION`: every stored run of one observation, in full."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from astra_cli.cli.console import print_json, stdout_console
from astra_cli.cli.errors import reported_errors
from astra_cli.cli.options import Json, ReadStoreDir, Verbose
from astra_cli.io.store import DEFAULT_OUTPUT_DIR
from astra_cli.vocabulary import pairs_text

if TYPE_CHECKING:
    from astra_cli.vocabulary import RunRecord


def show_command(
    observation: Annotated[
        str,
        typer.Argument(
            help="The observation: its file, its key as `astra plan --json` or the results "
            "table show it (path:..., apStar:...), or its APOGEE_ID.",
            metavar="OBSERVATION",
        ),
    ],
    output_dir: ReadStoreDir = Path(DEFAULT_OUTPUT_DIR),
    json: Json = False,
    verbose: Verbose = False,
) -> None:
    """Show every stored run of one observation: method, group and options, status, results
    and flags, the error and whose fault it was, timings, what the run was computed from, and
    where its saved spectrum is. Reads the store only.

    Example: astra show 2M07144653+7101430 --output-dir astra-output
    """
    from astra_cli.errors import UsageError
    from astra_cli.io.store import ResultsStore

    with reported_errors(verbose, json_document=json):
        target = observation
        if os.path.exists(observation):
            target = os.path.abspath(observation)
        with ResultsStore(output_dir, read_only=True) as store:
            runs = store.runs_of(target)
        if not runs:
            raise UsageError(f"no runs of {observation!r} in {store.path}")
        described = [describe_run(run, output_dir) for run in runs]
    if json:
        print_json(described)
        return
    render_runs(described)


def describe_run(run: RunRecord, output_dir: Path) -> dict[str, Any]:
    """A run as a plain document; a saved spectrum's path made absolute."""
    result = dict(run.result or {})
    spectrum = result.get("spectrum_file")
    return {
        "method": run.method,
        "group": run.group_key,
        "observation": run.observation,
        "input_path": run.input_path,
        "identifiers": run.identifiers or {},
        "options": run.options,
        "status": run.status,
        "result": result,
        "error": run.error,
        "fault": run.fault,
        "started_at": _iso(run.started_at),
        "duration_s": run.duration_s,
        "input_state": run.input_state,
        "model_state": run.model_state,
        "saved_spectrum": str((output_dir / spectrum).resolve()) if spectrum else None,
        "astra_version": run.astra_version,
        "method_version": run.method_version,
    }


def render_runs(described: list[dict[str, Any]]) -> None:
    console = stdout_console()
    for run in described:
        console.print(
            f"{run['method']} (group {run['group']}): {run['status']}", markup=False, style="bold"
        )
        lines = {
            "observation": run["observation"],
            "input": run["input_path"],
            "options": pairs_text(run["options"]),
            "result": pairs_text(run["result"]) if run["result"] else None,
            "error": f"{run['error']} ({run['fault']}'s fault)" if run["error"] else None,
            "started": f"{run['started_at']} UTC, {run['duration_s'] or 0:.3f} s",
            "computed from": f"input {run['input_state']}, model {run['model_state'] or '-'}",
            "saved spectrum": run["saved_spectrum"],
        }
        for name, text in lines.items():
            if text:
                console.print(f"  {name}: {text}", markup=False)


def _iso(timestamp: float | None) -> str | None:
    import datetime

    if timestamp is None:
        return None
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
    return moment.isoformat(timespec="seconds").removesuffix("+00:00")
