"""Progress on the terminal and in logs: a live bar on a terminal, plain timestamped lines
otherwise (cron logs, pipes), and `--log-file`. Always on stderr: stdout is for results."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from astra_cli.engine.planner import Plan
    from astra_cli.engine.worker import ChunkResult
    from astra_cli.vocabulary import Summary

LINE_INTERVAL_SECONDS = 10.0
"""How often plain-line progress speaks: often enough to show life in a log, rarely enough not
to flood it with a line per chunk."""


def _count(number: int, thing: str) -> str:
    """`1 run`, `2 runs`."""
    return f"{number} {thing}{'' if number == 1 else 's'}"


def describe_summary(summary: Summary) -> str:
    loads = f"; {_count(summary.model_loads, 'model load')}" if summary.model_loads else ""
    stale = f", {summary.stale} stale" if summary.stale else ""
    line = (
        f"{summary.method}: {summary.requested} requested, {summary.already_done} already done"
        f"{stale}, {summary.ran} ran ({summary.ok} ok, {summary.failed} failed) in "
        f"{summary.groups} group(s) and {summary.chunks} chunk(s){loads}; "
        f"{summary.wall_seconds:.1f} s"
    )
    if summary.locked:
        line += f"; {summary.locked} run(s) locked by another invocation"
    if summary.interrupted:
        line += f"; interrupted by {summary.signal}, {summary.pending} run(s) not done"
    return line + f"; exit code {int(summary.exit_code)}"


def describe_slurm_jobs(summary: Summary) -> str:
    """Which SLURM job ran how many chunks: `ran in SLURM job(s) 101 (3 chunks), 102 (...)`."""
    jobs = sorted(summary.slurm_jobs.items(), key=lambda item: (len(item[0]), item[0]))
    return "ran in SLURM job(s) " + ", ".join(f"{job} ({_count(n, 'chunk')})" for job, n in jobs)


class LogFile:
    """Appends to a log file, for cron: timestamped lines, one per group and per failure, and
    the summary. Opened for each line, so a log rotated meanwhile is simply recreated."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._written_failures = 0

    def _say(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        with open(self.path, "a", encoding="utf-8") as log:
            log.write(f"{stamp} {text}\n")

    def started(self, plan: Plan) -> None:
        self._say(f"start: {' '.join(sys.argv)}")
        self._say(describe_plan(plan))

    def chunk_done(self, result: ChunkResult, summary: Summary) -> None:
        for outcome in result.outcomes:
            if not outcome.ok:
                self._say(f"failed: {outcome.observation}: {outcome.error}")

    def notice(self, text: str) -> None:
        self._say(text)

    def finished(self, summary: Summary) -> None:
        for holder in summary.locked_groups:
            self._say(f"locked by another invocation: group {holder}")
        if summary.slurm_jobs:
            self._say(describe_slurm_jobs(summary))
        self._say(describe_summary(summary))


def describe_plan(plan: Plan) -> str:
    done = f", {plan.already_done} already done" if plan.already_done else ""
    skipped = f", {plan.skipped_failed} failed before (not retried)" if plan.skipped_failed else ""
    stale = f", {plan.stale} stale (input or model changed)" if plan.stale else ""
    retried = (
        f", {plan.retried} failed before through no fault of their own (retried)"
        if plan.retried
        else ""
    )
    return (
        f"{plan.method}: {_count(plan.to_run, 'run')} to do in {len(plan.groups)} group(s), "
        f"{len(plan.chunks)} chunk(s){done}{stale}{retried}{skipped}"
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

    def notice(self, text: str) -> None:
        self._say(text)

    def finished(self, summary: Summary) -> None:
        pass


class RichProgress:
    """A live progress bar on an interactive terminal."""

    def __init__(self, console: Any) -> None:
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
        self._task: Any = None

    def started(self, plan: Plan) -> None:
        self._console.print(describe_plan(plan))
        self._task = self._bar.add_task(plan.method, total=plan.to_run, failed=0)
        self._bar.start()

    def chunk_done(self, result: ChunkResult, summary: Summary) -> None:
        self._bar.update(self._task, completed=summary.ran, failed=summary.failed)

    def notice(self, text: str) -> None:
        self._bar.console.print(text, markup=False, highlight=False)

    def finished(self, summary: Summary) -> None:
        self._bar.stop()
