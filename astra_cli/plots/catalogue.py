"""One column of a results table against another, the way astronomers draw them: effective
temperature and surface gravity increase to the left and down (a Kiel diagram), flagged rows
marked apart so that a likely-wrong result is never mistaken for a good one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from astra_cli.errors import UsageError
from astra_cli.plots.figures import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REVERSED_AXES = frozenset({"teff", "logg"})
"""Columns drawn decreasing, by convention."""


def scatter_figure(table: Any, x: str, y: str, color: str | None, title: str) -> Figure:
    import numpy as np

    numeric = _numeric(table)
    for option, name in (("--x", x), ("--y", y), ("--color", color)):
        if name is not None and name not in numeric:
            what = "is not a column of numbers" if name in table.colnames else "no such column"
            raise UsageError(f"{option} {name}: {what}; the results have {', '.join(numeric)}")
    figure = new_figure(6.0, 5.0)
    axis = figure.subplots()
    flagged = (
        np.asarray(table["flags"], dtype=np.int64) != 0
        if "flags" in table.colnames
        else np.zeros(len(table), dtype=bool)
    )
    good = ~flagged
    across, up = _numbers(table, x), _numbers(table, y)
    values = _numbers(table, color) if color else None
    points = axis.scatter(
        across[good],
        up[good],
        s=12,
        **({"c": values[good], "cmap": "viridis"} if values is not None else {"c": "tab:blue"}),
        label=f"{int(good.sum())} unflagged",
    )
    if color is not None:
        figure.colorbar(points, ax=axis, label=_label(table, color))
    if flagged.any():
        axis.scatter(
            across[flagged],
            up[flagged],
            marker="x",
            s=20,
            color="tab:red",
            label=f"{int(flagged.sum())} flagged",
        )
    axis.legend(loc="best", fontsize="small")
    axis.set_xlabel(_label(table, x))
    axis.set_ylabel(_label(table, y))
    if x in REVERSED_AXES:
        axis.invert_xaxis()
    if y in REVERSED_AXES:
        axis.invert_yaxis()
    axis.set_title(title, fontsize="medium")
    return figure


def _label(table: Any, name: str) -> str:
    unit = table[name].unit
    return f"{name} [{unit}]" if unit is not None and str(unit) else name


def _numbers(table: Any, name: str) -> Any:
    """A column as floats, a masked (missing) value as NaN, which matplotlib leaves out."""
    import numpy as np

    return np.ma.filled(np.ma.asarray(table[name], dtype=float), np.nan)


def _numeric(table: Any) -> list[str]:
    return [name for name in table.colnames if table[name].dtype.kind in "fiu"]
