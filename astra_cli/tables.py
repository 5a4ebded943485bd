"""A method's stored results as one astropy Table: what `astra results` writes, for Python.

Example::

    import astra_cli
    table = astra_cli.results("grid", "astra-output", unflagged=True)
    giants = table[table["logg"] < 3.5]
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

from astra_cli.errors import AstraError, UsageError, did_you_mean
from astra_cli.io.export import describe, results_table
from astra_cli.io.store import DEFAULT_OUTPUT_DIR, ResultsStore
from astra_cli.methods.base import Method
from astra_cli.methods.registry import load_method
from astra_cli.vocabulary import RunRecord

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
    if status not in STATUSES:
        raise UsageError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    with ResultsStore(output_dir, read_only=True) as store:
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
        records = store.records(method, None if status == "all" else status, group)
        if unflagged:
            records = unflagged_only(method, records)
        table = results_table(records, method=method, latest_per_observation=latest_per_observation)
        damaged = list(store.damaged)
    instances = _method_instances(method, table.meta["groups"].values())
    describe(
        table,
        descriptions=_merged(instance.describe_columns for instance in instances),
        units=_merged(instance.column_units for instance in instances),
    )
    if damaged:
        table.meta["damaged"] = damaged
    return table


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


def _merged(describers: Any) -> dict[str, str]:
    merged: dict[str, str] = {}
    for describer in describers:
        try:
            merged.update(describer())
        except (AstraError, OSError, ValueError):
            continue
    return merged
