"""Progress on the terminal and in logs: a live bar on a terminal, plain timestamped lines
otherwise (cron logs, pipes), and `--log-file`. Always on stderr: stdout is for results."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from astra_cli.cli.tally import Snapshot, Tally, clock_time, rate_text

if TYPE_CHECKING:
    from astra_cli.engine.planner import Plan
    from astra_cli.engine.progress import InFlight
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
    """Timestamped lines for logs and pipes: the plan, then at most one line per
    LINE_INTERVAL_SECONDS while runs finish (how many, the rate, the time left, the group),
    whole however long (a log is not a terminal: nothing wraps it but the reader).

    A thread ticks every `tick_seconds` so that a log moves on within long chunks too (the
    running chunks' journals say how far they got); None leaves ticking to the caller (tests).
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        tick_seconds: float | None = 1.0,
    ) -> None:
        self.stream = stream or sys.stderr
        self.tally = Tally(clock)
        self._clock = clock
        self._tick_seconds = tick_seconds
        self._ticker: Ticker | None = None
        self._said = threading.Lock()
        self._last = 0.0
        self._last_done = 0

    def _say(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with self._said:
            print(f"[{stamp}] astra: {text}", file=self.stream, flush=True)

    def started(self, plan: Plan) -> None:
        self.tally.start(plan)
        self._last, self._last_done = self._clock(), 0
        self._say(describe_plan(plan))
        if self._tick_seconds is not None and self._ticker is None:
            self._ticker = Ticker(self._tick_seconds, self.tick)

    def watch(self, in_flight: InFlight) -> None:
        self.tally.watch(in_flight)

    def chunk_done(self, result: ChunkResult, summary: Summary) -> None:
        self.tally.chunk_done(result, summary)
        self.tick()

    def tick(self) -> None:
        """Say how far the plan got, if LINE_INTERVAL_SECONDS passed since the last line and
        runs finished since."""
        self.tally.read_journals()
        snapshot = self.tally.snapshot()
        now = self._clock()
        if now - self._last < LINE_INTERVAL_SECONDS or snapshot.done == self._last_done:
            return
        self._last, self._last_done = now, snapshot.done
        self._say(progress_line(snapshot))

    def notice(self, text: str) -> None:
        self._say(text)

    def finished(self, summary: Summary) -> None:
        if self._ticker is not None:
            self._ticker.stop()
            self._ticker = None


def progress_line(snapshot: Snapshot) -> str:
    """`grid: 40/100 runs done, 3 failed, 12.3 spectra/s, elapsed 0:00:12, left ~0:00:05,
    group 2/4 grid=…/grid-b.fits`."""
    remaining = snapshot.remaining
    left = "?" if remaining is None else f"~{clock_time(remaining)}"
    group = f", group {snapshot.group}" if snapshot.group else ""
    return (
        f"{snapshot.method}: {snapshot.done}/{snapshot.total} runs done, {snapshot.failed} "
        f"failed, {rate_text(snapshot.rate)}, elapsed {clock_time(snapshot.elapsed)}, "
        f"left {left}{group}"
    )


class RichProgress:
    """A live bar on an interactive terminal (`bar.BarView`), redrawn a few times a second;
    each redraw reads how far the running chunks got, so the bar moves within long chunks."""

    REFRESHES_PER_SECOND = 4

    def __init__(self, console: Any, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._console = console
        self.tally = Tally(clock)
        self._live: Any = None

    def view(self) -> Any:
        """What the bar shows now (read from the journals first)."""
        from astra_cli.cli.bar import BarView

        self.tally.read_journals()
        return BarView(self.tally.snapshot())

    def started(self, plan: Plan) -> None:
        from rich.live import Live

        self._console.print(describe_plan(plan), markup=False, highlight=False)
        self.tally.start(plan)
        self._live = Live(
            get_renderable=self.view,
            console=self._console,
            transient=True,
            refresh_per_second=self.REFRESHES_PER_SECOND,
        )
        self._live.start()

    def watch(self, in_flight: InFlight) -> None:
        self.tally.watch(in_flight)

    def chunk_done(self, result: ChunkResult, summary: Summary) -> None:
        self.tally.chunk_done(result, summary)

    def notice(self, text: str) -> None:
        self._console.print(text, markup=False, highlight=False)

    def finished(self, summary: Summary) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


class Ticker:
    """Calls `tick` every `seconds` from a daemon thread until stopped."""

    def __init__(self, seconds: float, tick: Callable[[], None]) -> None:
        self._stop = threading.Event()
        self._seconds = seconds
        self._tick = tick
        self._thread = threading.Thread(target=self._run, name="astra-progress", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._seconds):
            self._tick()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
