"""The table of groups that `astra plan` and `astra status` print on stdout: each group by the
options that set it apart (paths by their distinguishing end, `engine.labels.tell_apart`), its
counts, and under the table what every group shares and each shortened path in full."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def print_group_table(
    console: Any,
    groups: Sequence[Mapping[str, Any]],
    counts: Mapping[str, str],
) -> None:
    """One row per group (each a mapping with `key` and `options`); `counts` names the count
    columns, heading -> the group's entry holding the count."""
    from rich import box
    from rich.table import Table

    from astra_cli.engine.labels import legend, tell_apart

    apart = tell_apart([group["options"] for group in groups])
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    table.add_column("group", no_wrap=True)
    table.add_column("options", overflow="fold")
    for heading in counts:
        table.add_column(heading, justify="right", no_wrap=True)
    for index, group in enumerate(groups):
        numbers = (str(group[entry]) for entry in counts.values())
        table.add_row(group["key"], apart.cell(index, "\n") or "(none)", *numbers)
    console.print(table)
    for line in legend(apart):
        console.print(line, markup=False)
