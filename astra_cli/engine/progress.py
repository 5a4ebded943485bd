"""What the run loop reports while it works: the plan as it starts, each chunk as it comes
back, lines worth keeping (a group finished, a lock waited for), and the summary at the end.

The run loop only calls these; how they are shown (a bar on a terminal, plain lines in a cron
log, nothing) is the caller's choice (`astra_cli.cli.progress`).

A report may also have a `watch(in_flight)` method (see `watch_chunks`): a chunk's result
comes back only when the whole chunk is done, and a report that wants to move between results
(a bar, over chunks of slow runs) is handed a function that says how far the running chunks
have got. Reports without it are not watched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from astra_cli.engine.journal import ChunkInFlight
    from astra_cli.engine.planner import Plan
    from astra_cli.engine.worker import ChunkResult
    from astra_cli.vocabulary import Summary

InFlight = Callable[[], "Mapping[str, ChunkInFlight]"]
"""{chunk id: its group and the runs it finished so far} for the chunks running now (their
journals, `engine.journal.JournalWatcher`). A chunk's runs are counted here until its result
comes back (`chunk_done` with that `ChunkResult.chunk_id`), and in the summary from then on:
a report adds the two only for chunks it has not seen come back. Safe to call from any
thread."""


class Progress(Protocol):
    def started(self, plan: Plan) -> None: ...

    def chunk_done(self, result: ChunkResult, summary: Summary) -> None: ...

    def notice(self, text: str) -> None:
        """A line worth keeping: a group finished, a lock being waited for."""

    def finished(self, summary: Summary) -> None: ...


def watch_chunks(progress: Progress, in_flight: InFlight) -> None:
    """Hand `in_flight` to a report that has a `watch` method; called once per plan, after
    `started`."""
    watch = getattr(progress, "watch", None)
    if watch is not None:
        watch(in_flight)


class SilentProgress:
    def started(self, plan: Plan) -> None:
        pass

    def chunk_done(self, result: ChunkResult, summary: Summary) -> None:
        pass

    def notice(self, text: str) -> None:
        pass

    def finished(self, summary: Summary) -> None:
        pass


class FanOut:
    """Several progress reports at once: the terminal and a log file, say."""

    def __init__(self, *reports: Progress) -> None:
        self.reports = reports

    def started(self, plan: Plan) -> None:
        for report in self.reports:
            report.started(plan)

    def chunk_done(self, result: ChunkResult, summary: Summary) -> None:
        for report in self.reports:
            report.chunk_done(result, summary)

    def notice(self, text: str) -> None:
        for report in self.reports:
            report.notice(text)

    def watch(self, in_flight: InFlight) -> None:
        for report in self.reports:
            watch_chunks(report, in_flight)

    def finished(self, summary: Summary) -> None:
        for report in self.reports:
            report.finished(summary)
