"""What the run loop reports while it works: the plan as it starts, each chunk as it comes
back, lines worth keeping (a group finished, a lock waited for), and the summary at the end.

The run loop only calls these; how they are shown (a bar on a terminal, plain lines in a cron
log, nothing) is the caller's choice (`astra_cli.cli.progress`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from astra_cli.engine.planner import Plan
    from astra_cli.engine.worker import ChunkResult
    from astra_cli.vocabulary import Summary


class Progress(Protocol):
    def started(self, plan: Plan) -> None: ...

    def chunk_done(self, result: ChunkResult, summary: Summary) -> None: ...

    def notice(self, text: str) -> None:
        """A line worth keeping: a group finished, a lock being waited for."""

    def finished(self, summary: Summary) -> None: ...


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

    def finished(self, summary: Summary) -> None:
        for report in self.reports:
            report.finished(summary)
