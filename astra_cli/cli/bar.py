"""The progress bar as rich draws it: one line where the terminal is wide enough, two where not
(the bar with its counts and rate, then the times and the group), never wider than the
terminal, so that the live display does not wrap and leave a trail of half bars behind it.

Every number says what it is (`elapsed 0:00:12`, `left ~0:01:05`, `12.3 spectra/s`): two bare
times side by side do not say which is which.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from astra_cli.cli.tally import Snapshot, clock_time, rate_text

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult

MIN_BAR = 10
"""Narrower than this a bar says nothing; the counts alone are shown."""
ROOMY_BAR = 20
"""The times and the group share the bar's line only if the bar keeps at least this much."""
MAX_BAR = 40
WIDEST_RATE = 999.9
"""A rate as wide as rates get on one machine, to lay the bar out for."""


def counts_text(snapshot: Snapshot) -> str:
    """`40/100  3 failed  12.3 spectra/s`."""
    return f"{snapshot.done}/{snapshot.total}  {snapshot.failed} failed  {rate_text(snapshot.rate)}"


def times_text(snapshot: Snapshot) -> str:
    """`elapsed 0:00:12  left ~0:01:05` (`left ?` while the rate is unknown)."""
    remaining = snapshot.remaining
    left = "?" if remaining is None else f"~{clock_time(remaining)}"
    return f"elapsed {clock_time(snapshot.elapsed)}  left {left}"


class BarView:
    """One snapshot, drawn to the width rich gives it: everything on one line if it fits;
    else the bar, counts and times, then the group; else the bar and counts, then the times
    and the group (80 columns)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        snapshot, width = self.snapshot, options.max_width
        head, counts, times = snapshot.method, counts_text(snapshot), times_text(snapshot)
        group = f"group {snapshot.group}" if snapshot.group else ""
        # The layout is chosen for the widest the numbers can get, so that it stays put
        # while they grow.
        widest = counts_text(replace(snapshot, done=snapshot.total, failed=snapshot.total,
                                     rate=WIDEST_RATE))  # fmt: skip
        fixed = len(head) + 2  # the spaces either side of the bar
        parts = [widest, times, group]
        first = 3
        while first > 1 and fixed + len("  ".join(parts[:first])) + ROOMY_BAR > width:
            first -= 1  # the group first, then the times, go to a second line
        text = "  ".join(part for part in [counts, times, group][:first] if part)
        second = "  ".join(part for part in [counts, times, group][first:] if part)
        bar_width = min(MAX_BAR, width - fixed - len("  ".join(p for p in parts[:first] if p)))
        line = Table.grid(padding=(0, 1))
        line.add_column(no_wrap=True)
        if bar_width >= MIN_BAR:
            line.add_column(width=bar_width, no_wrap=True)
        line.add_column(no_wrap=True, overflow="ellipsis")
        total = max(snapshot.total, 1)
        cells: list[Text | ProgressBar] = [Text(head, style="bold")]
        if bar_width >= MIN_BAR:
            cells.append(ProgressBar(total=total, completed=min(snapshot.done, total)))
        cells.append(Text(text))
        line.add_row(*cells)
        yield line
        if second:
            yield Text(f"  {second}", no_wrap=True, overflow="ellipsis")
