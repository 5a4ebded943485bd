"""A method's stored results as one astropy Table: what `astra results` writes, for Python.

Example::

    import astra_cli
    table = astra_cli.results("grid", "astra-output", unflagged=True)
    giants = table[table["logg"] < 3.5]
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from astra_cli.errors import AstraError, UsageError, did_you_mean
from astra_cli.io.export import (
    TableLayout,
    describe,
    latest_positions,
    results_table,
    table_blocks,
)
from astra_cli.io.store import DEFAULT_OUTPUT_DIR, ResultsStore
from astra_cli.methods.base import Method
from astra_cli.methods.registry import load_method
from astra_cli.vocabulary import RunRecord, StageProgress

STATUSES = ("ok", "failed", "all")


def results(
    method: str,
    output_dir: str | os.PathLike[str] = DEFAULT_OUTPUT_DIR,
    *,
    status: str = "ok",
    group: str | None = None,
    unflagged: bool = False,
    latest_per_observation: bool = False,
) -> Any:
    """The method's runs in the store, one row each (see `astra results --help`), as an
    astropy Table with the method's column descriptions and units. The store is only read.

    Rows the store holds but cannot read (a damaged store) are left out and named in
    `table.meta["damaged"]`.
    """
    with ResultsStore(output_dir, read_only=True) as store, store.snapshot():
        selected = _selection(store, method, status, group, unflagged, latest_per_observation)
        table = results_table(selected("reading the runs"), method=method)
        damaged = list(dict.fromkeys(store.damaged))
    descriptions, units = _column_notes(method, table.meta["groups"].values())
    describe(table, descriptions, units)
    if damaged:
        table.meta["damaged"] = damaged
    return table


def export_results(
    method: str,
    output_dir: str | os.PathLike[str],
    destination: str,
    file_format: str,
    *,
    status: str = "ok",
    group: str | None = None,
    unflagged: bool = False,
    latest_per_observation: bool = False,
    progress: StageProgress | None = None,
) -> Exported:
    """Write the table `results` gives to `destination` ('-': standard output), in memory
    that does not grow with the store: the runs are read twice, in one snapshot of the
    store, first for the table's columns (`TableLayout`), then to be written a block of
    rows at a time (`tablewriter`). Runs that fit in one block are read once, and held.
    `progress` hears how many of the runs each reading has read."""
    from astra_cli.io.tablewriter import BLOCK_ROWS, table_output

    with (
        ResultsStore(output_dir, read_only=True) as store,
        store.snapshot(),
        table_output(destination, file_format) as output,
    ):
        selected = _selection(
            store, method, status, group, unflagged, latest_per_observation, progress
        )
        layout = TableLayout()
        kept: list[RunRecord] | None = []
        for record in selected("reading the runs"):
            layout.add(record)
            if kept is not None:
                kept.append(record)
                if len(kept) > BLOCK_ROWS:  # more than a block: read again rather than hold
                    kept = None
        again = selected if kept is None else lambda _: iter(kept)
        layout.measure_numbers(again("measuring text columns"))
        damaged = list(dict.fromkeys(store.damaged))
        descriptions, units = _column_notes(method, layout.groups.values())
        meta = layout.meta(method)

        def described(blocks: Iterable[Any]) -> Iterator[Any]:
            for block in blocks:
                describe(block, descriptions, units)
                yield block

        blocks = table_blocks(again(f"writing {destination}"), layout, meta, BLOCK_ROWS)
        notes = output.write(
            described(blocks), rows=layout.rows, ascii_widths=layout.ascii_widths()
        )
    return Exported(layout.rows, notes, damaged)


@dataclass(frozen=True)
class Exported:
    """What `export_results` wrote."""

    rows: int
    notes: list[str]
    """What the reader of the file should be told (text FITS could not hold as it was)."""
    damaged: list[str]
    """Runs the store holds but could not read, left out: `group/observation`."""


def _selection(
    store: ResultsStore,
    method: str,
    status: str,
    group: str | None,
    unflagged: bool,
    latest_per_observation: bool,
    progress: StageProgress | None = None,
) -> Callable[[str], Iterator[RunRecord]]:
    """The runs asked for, as a function that reads them from the store each time it is
    called (in a snapshot, the same runs each time), telling `progress` how many of the
    store's runs it read, as the stage it is called for."""
    if status not in STATUSES:
        raise UsageError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    stored = store.methods()
    if method not in stored:
        raise UsageError(
            f"no runs of {method!r} in {store.path}{did_you_mean(method, stored)}; "
            f"it holds {', '.join(stored) or 'nothing yet'}"
        )
    if group is not None and group not in (groups := store.group_keys(method)):
        raise UsageError(
            f"{method} has no group {group!r} in {store.path}{did_you_mean(group, groups)}; "
            f"its groups: {', '.join(groups)} (see astra status)"
        )
    wanted = None if status == "all" else status
    total = store.count(method, wanted, group) if progress is not None else 0

    def read(stage: str) -> Iterator[RunRecord]:
        records = store.records(method, wanted, group)
        if progress is not None:
            records = _counted(records, stage, total, progress)
        return unflagged_only(method, records) if unflagged else records

    if not latest_per_observation:
        return read
    kept = latest_positions(read("finding each observation's latest run"))

    def latest(stage: str) -> Iterator[RunRecord]:
        return (record for position, record in enumerate(read(stage)) if position in kept)

    return latest


def _counted(
    records: Iterable[RunRecord], stage: str, total: int, progress: StageProgress
) -> Iterator[RunRecord]:
    """The records, telling `progress` every PROGRESS_EVERY of them and at the end."""
    done = 0
    progress(stage, done, total)
    for record in records:
        yield record
        done += 1
        if done % PROGRESS_EVERY == 0:
            progress(stage, done, total)
    progress(stage, done, total)


PROGRESS_EVERY = 2_000
"""Runs read between two reports of an export's progress: a tenth of a second or less."""


def unflagged_only(method: str, records: Iterable[RunRecord]) -> Iterator[RunRecord]:
    """The runs whose `flags` are 0 (failed runs have none); an error, once every run is
    read, for a method whose results have no flags, where the option would silently do
    nothing."""
    seen = flagged = False
    for record in records:
        seen = True
        result = record.result or {}
        flagged = flagged or "flags" in result
        if result.get("flags") == 0:
            yield record
    if seen and not flagged:
        raise UsageError(f"--unflagged: the results of {method} have no flags column")


def _method_instances(method: str, group_options: Iterable[dict[str, Any]]) -> list[Method]:
    """The method with each group's options, to say what its columns are; none for a group
    whose model file is gone or a method no longer installed."""
    try:
        method_class = load_method(method)
    except AstraError:
        return []
    instances = []
    for options in group_options:
        # A group's stored options may hold more than the method's (the upstream chain).
        own = {name: value for name, value in options.items() if name in method_class.params}
        try:
            instances.append(method_class(**own))
        except AstraError:
            continue
    return instances


def _column_notes(
    method: str, group_options: Iterable[dict[str, Any]]
) -> tuple[dict[str, str], dict[str, str]]:
    """What the method says of its columns, with each group's options: their descriptions
    and units, by column."""
    instances = _method_instances(method, group_options)
    return (
        _merged(instance.describe_columns for instance in instances),
        _merged(instance.column_units for instance in instances),
    )


def _merged(describers: Any) -> dict[str, str]:
    merged: dict[str, str] = {}
    for describer in describers:
        try:
            merged.update(describer())
        except (AstraError, OSError, ValueError):
            continue
    return merged
