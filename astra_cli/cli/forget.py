"""`astra forget METHOD`: remove stored runs (a wrong group, old failures) and the spectra
files they saved, so that the next invocation runs them again."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from astra_cli.cli.console import stderr_console
from astra_cli.cli.errors import reported_errors
from astra_cli.cli.options import MethodToForget, ReadStoreDir, Verbose
from astra_cli.io.export import ExportedStatus
from astra_cli.io.store import DEFAULT_OUTPUT_DIR

if TYPE_CHECKING:
    from astra_cli.vocabulary import RunRecord


def forget_command(
    method: MethodToForget,
    group: Annotated[
        str | None,
        typer.Option("--group", metavar="KEY", help="Only this group (see astra status)."),
    ] = None,
    status: Annotated[
        ExportedStatus,
        typer.Option("--status", metavar="STATUS", help="Which runs: ok, failed or all."),
    ] = "all",
    before: Annotated[
        str | None,
        typer.Option(
            "--before",
            metavar="DATE",
            help="Only runs started before this time, ISO 8601 in UTC (2026-11-30, or "
            "2026-11-30T18:00).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", metavar="", help="Say what would be forgotten; do nothing.")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", metavar="", help="Do not ask (for scripts).")
    ] = False,
    output_dir: ReadStoreDir = Path(DEFAULT_OUTPUT_DIR),
    verbose: Verbose = False,
) -> None:
    """Forget stored runs of a method, and the spectra files they saved: the next invocation
    that asks for them runs them again. Asks first, unless --yes; --dry-run only says what it
    would forget.

    Example: astra forget grid --status failed --before 2026-11-30 --output-dir /data/astra
    """
    from astra_cli.errors import UsageError
    from astra_cli.io.store import ResultsStore

    console = stderr_console()
    with reported_errors(verbose):
        moment = _moment(before)
        chosen = None if status == "all" else status
        with ResultsStore(output_dir, read_only=True) as store:
            if method not in store.methods():
                raise UsageError(f"no runs of {method!r} in {store.path}")
            if group is not None and group not in store.group_keys(method):
                raise UsageError(f"{method} has no group {group!r} in {store.path}")
            records = list(store.records(method, chosen, group, moment))
        files = _saved_files(records, output_dir)
        what = f"{len(records)} run(s) of {method}" + (
            f" and {len(files)} file(s)" if files else ""
        )
        if dry_run or not records:
            console.print(f"would forget {what}" if records else "nothing to forget", markup=False)
            return
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError(f"forgetting {what} needs --yes when nothing can ask")
            if not typer.confirm(f"Forget {what}?", default=False, err=True):
                raise typer.Exit(1)
        with ResultsStore(output_dir) as store:
            forgotten = store.forget(method, chosen, group, moment)
        for path in files:
            path.unlink(missing_ok=True)
    console.print(f"forgot {forgotten} run(s) of {method}", markup=False)


def _moment(before: str | None) -> float | None:
    """--before as a Unix time (UTC when no zone is given)."""
    import datetime

    from astra_cli.errors import UsageError

    if before is None:
        return None
    try:
        moment = datetime.datetime.fromisoformat(before)
    except ValueError:
        raise UsageError(
            f"--before {before!r} is not an ISO 8601 date or time (2026-11-30, 2026-11-30T18:00)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def _saved_files(records: list[RunRecord], output_dir: Path) -> list[Path]:
    """The files the runs saved (`spectrum_file` values), only where they lie inside the
    output directory: a value of a damaged store never names a file elsewhere to delete."""
    root = output_dir.resolve()
    found = []
    for record in records:
        name = (record.result or {}).get("spectrum_file")
        if isinstance(name, str) and name:
            path = (root / name).resolve()
            if path.is_relative_to(root) and path.is_file():
                found.append(path)
    return found
