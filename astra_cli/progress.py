"""Progress reports on long work: a live bar on a terminal, plain timestamped lines otherwise
(cron logs, pipes), nothing when quiet. Always on stderr: stdout is for results."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Protocol, TextIO

if TYPE_CHECKING:
    from astra_cli.executor import ChunkResult
    from astra_cli.planner import Plan
    from astra_cli.summary import Summary

LINE_INTERVAL_SECONDS = 10.0
"""How often plain-line progress speaks: often enough to show life in a log, rarely enough not
to flood it with a line per chunk."""


class Progress(Protocol):
    def started(self, plan: Plan) -> None: ...

    def chunk_done(self, result: ChunkResult, summary: Summary) -> None: ...

    def finished(self, summary: Summary) -> None: ...


class SilentProgress:
    def started(self, plan: Plan) -> None:
        pass

    def chunk_done(self, result: ChunkResult, summary: Summary) -> None:
        pass

    def finished(self, summary: Summary) -> None:
        pass


def describe_plan(plan: Plan) -> str:
    done = f", {plan.already_done} already done" if plan.already_done else ""
    skipped = f", {plan.skipped_failed} failed before (not retried)" if plan.skipped_failed else ""
    return (
        f"{plan.method}: {plan.to_run} runs to do in {len(plan.groups)} group(s), "
        f"{len(plan.chunks)} chunk(s){done}{skipped}"
    )


class LineProgress:
    """Timestamped lines, at most one per LINE_INTERVAL_SECONDS, for logs and pipes."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self._total = 0
        self._last = 0.0

    def _say(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        print(f"[{stamp}] astra: {text}", file=self.stream, flush=True)

    def started(self, plan: Plan) -> None:
        self._total = plan.to_run
        self._last = time.monotonic()
        self._say(describe_plan(plan))

    def chunk_done(self, result: ChunkResult, summary: Summary) -> None:
        now = time.monotonic()
        if now - self._last >= LINE_INTERVAL_SECONDS:
            self._last = now
            self._say(f"{summary.ran}/{self._total} runs done, {summary.failed} failed")

    def finished(self, summary: Summary) -> None:
        pass


class RichProgress:
    """A live progress bar on an interactive terminal."""

    def __init__(self, console: object) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._console = console
        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self._task = None

    def started(self, plan: Plan) -> None:
        self._console.print(describe_plan(plan))
        self._task = self._bar.add_task(plan.method, total=plan.to_run, failed=0)
        self._bar.start()

    def chunk_done(self, result: ChunkResult, summary: Summary) -> None:
        self._bar.update(self._task, completed=summary.ran, failed=summary.failed)

    def finished(self, summary: Summary) -> None:
        self._bar.stop()
