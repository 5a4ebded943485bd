"""What the progress reports count while a plan runs: runs done (committed, plus those finished
in chunks still running), failures, the rate, the time left, and the group being worked on.

A chunk's result comes back only when the whole chunk is done, so between results the count
is moved on from the running chunks' journals (`engine.progress.InFlight`). A chunk's runs are
counted from its journal until its result comes back, and from the summary after, never from
both: the tally forgets a chunk's journal count when its result arrives, and ignores it if a
late read of the journal comes after. Every method takes one lock, so the main thread (chunk
results) and a display's thread (reading the journals, drawing) can share it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from astra_cli.engine.labels import group_labels

if TYPE_CHECKING:
    from astra_cli.engine.planner import Plan
    from astra_cli.engine.progress import InFlight
    from astra_cli.engine.worker import ChunkResult
    from astra_cli.vocabulary import Summary

RATE_WINDOW_SECONDS = 30.0
"""The rate is measured over this much of the recent past: long enough to smooth chunks that
come back together, short enough to follow a change of group (another model, another pace)."""


@dataclass(frozen=True)
class Snapshot:
    """The counts at one moment, as the displays show them."""

    method: str
    done: int
    total: int
    failed: int
    elapsed: float
    """Seconds since the plan started."""
    rate: float | None
    """Runs per second over the last RATE_WINDOW_SECONDS; None before any run finished."""
    group: str
    """The group being worked on, as `labels.group_labels` names it ('' before any)."""

    @property
    def remaining(self) -> float | None:
        """Seconds left at the current rate; None while the rate is unknown or nil."""
        if self.done >= self.total:
            return 0.0
        if not self.rate:
            return None
        return (self.total - self.done) / self.rate


def clock_time(seconds: float | None) -> str:
    """`0:01:05`, as rich and `time` print a duration; `?` when unknown."""
    if seconds is None:
        return "?"
    whole = int(seconds + 0.5)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def rate_text(rate: float | None) -> str:
    """`12.3 spectra/s`, with a second figure for slow rates (`0.25 spectra/s`)."""
    if rate is None:
        return "? spectra/s"
    return f"{rate:.1f} spectra/s" if rate >= 1 else f"{rate:.2g} spectra/s"


class Tally:
    """The counts of the plan that is running; `clock` is injectable for tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._in_flight: InFlight | None = None
        self._start(method="", total=0, labels={})

    def _start(self, method: str, total: int, labels: dict[str, str]) -> None:
        self._method, self._total, self._labels = method, total, labels
        self._committed = self._failed = 0
        self._running: dict[str, int] = {}
        """Runs finished so far in chunks whose result has not come back, by chunk id."""
        self._returned: set[str] = set()
        self._group = next(iter(labels.values()), "")
        self._began = self._clock()
        self._history: deque[tuple[float, int]] = deque([(self._began, 0)])

    def start(self, plan: Plan) -> None:
        """A plan starts (the plans of upstream methods first, each with its own tally)."""
        keys = [group.key for group in plan.groups if group.observations]
        options = [group.significant for group in plan.groups if group.observations]
        with self._lock:
            self._in_flight = None
            self._start(plan.method, plan.to_run, group_labels(keys, options) if keys else {})

    def watch(self, in_flight: InFlight) -> None:
        with self._lock:
            self._in_flight = in_flight

    def read_journals(self) -> None:
        """Move on by the runs the running chunks' journals say finished; from a display's
        thread, a few times a second."""
        with self._lock:
            in_flight = self._in_flight
        if in_flight is None:
            return
        chunks = in_flight()
        with self._lock:
            if in_flight is not self._in_flight:
                return  # another plan started meanwhile
            for chunk_id, chunk in chunks.items():
                if chunk_id not in self._returned:
                    # A journal gone before its result came back keeps its last count.
                    self._running[chunk_id] = max(self._running.get(chunk_id, 0), chunk.finished)
            groups = [chunk.group_key for chunk in chunks.values() if chunk.group_key]
            self._note_groups(groups)
            self._remember()

    def chunk_done(self, result: ChunkResult, summary: Summary) -> None:
        """A chunk's result came back: its runs are in the summary now, not in flight."""
        with self._lock:
            self._returned.add(result.chunk_id)
            self._running.pop(result.chunk_id, None)
            self._committed, self._failed = summary.ran, summary.failed
            if self._in_flight is None:  # nobody reads the journals: the results say
                self._note_groups([result.group_key])
            self._remember()

    def snapshot(self) -> Snapshot:
        with self._lock:
            now = self._clock()
            done = self._done()
            return Snapshot(
                self._method,
                done,
                self._total,
                self._failed,
                now - self._began,
                self._rate(now, done),
                self._group,
            )

    def _done(self) -> int:
        return self._committed + sum(self._running.values())

    def _note_groups(self, keys: list[str]) -> None:
        """The label of the latest group among those running (the run moves on to it), with
        how many other groups still have chunks running."""
        numbered = {key: self._labels[key] for key in dict.fromkeys(keys) if key in self._labels}
        if not numbered:
            return
        order = list(self._labels)
        latest = max(numbered, key=order.index)
        others = len(numbered) - 1
        self._group = numbered[latest] + (f" (+{others} more)" if others else "")

    def _remember(self) -> None:
        """Keep (time, done) when done changed, and as much history as the rate needs."""
        now, done = self._clock(), self._done()
        if done != self._history[-1][1]:
            self._history.append((now, done))
        while len(self._history) > 1 and self._history[1][0] <= now - RATE_WINDOW_SECONDS:
            self._history.popleft()

    def _rate(self, now: float, done: int) -> float | None:
        """Runs per second since the window's start (or the plan's, if later)."""
        if done == 0:
            return None
        since = max(self._began, now - RATE_WINDOW_SECONDS)
        before = [count for moment, count in self._history if moment <= since]
        then = before[-1] if before else self._history[0][1]
        return (done - then) / max(now - since, 1e-9)
