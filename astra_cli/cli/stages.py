"""Progress of work done in stages (`astra train cannon`: reading spectra, normalising,
fitting pixels; `astra results`: reading the runs, writing the table): on a terminal a bar for
the stage in hand and a line for each stage done; in a log or a pipe, a timestamped line as
each stage begins. Always on stderr.

The work reports `(stage, done, total)` through a plain callable (`vocabulary.StageProgress`);
only this module knows rich.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any, TextIO

from astra_cli.cli.tally import clock_time


class StageBar:
    """A transient bar on a terminal; each stage left behind as a line with its time, unless
    `transient` (an export, most often over in a second, leaves nothing but its result)."""

    def __init__(self, console: Any, *, transient: bool = False) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._console = console
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("elapsed"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._task: Any = None
        self._stage = ""
        self._began = 0.0
        self._transient = transient

    def __enter__(self) -> StageBar:
        self._bar.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if kind is None:
            self._stage_done()
        self._bar.stop()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self._stage:
            self._stage_done()
            self._stage, self._began = stage, time.monotonic()
            self._task = self._bar.add_task(stage, total=total)
        self._bar.update(self._task, completed=done, total=total)

    def _stage_done(self) -> None:
        if self._stage:
            if not self._transient:
                took = clock_time(time.monotonic() - self._began)
                self._bar.console.print(f"{self._stage}: done in {took}", markup=False)
            self._bar.remove_task(self._task)
            self._stage = ""


class StageLines:
    """A timestamped line as each stage begins, for logs and pipes."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._stage = ""

    def __enter__(self) -> StageLines:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self._stage:
            self._stage = stage
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            print(f"[{stamp}] astra: {stage}", file=self.stream, flush=True)
