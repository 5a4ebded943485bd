"""Per-chunk journals: what a worker has started and finished, written as it goes.

Results normally travel back to the invoking process as the return value of a chunk. When a
worker dies (killed by the OS, a segfault) or the invocation is interrupted, that return value
never arrives; the journal is what is left, and says which runs finished (their results are kept),
which one was in hand (it is the one that failed), and which were never started (they are run
again). One JSON object per line, flushed after each, so a line is either whole or absent.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from astra_cli.outcome import Outcome


class ChunkJournal:
    """The writer, used inside a worker for one chunk."""

    def __init__(self, path: str) -> None:
        self._file: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close)
        self._write({"pid": os.getpid()})

    def loading(self) -> None:
        self._write({"loading": True})

    def loaded(self) -> None:
        self._write({"loaded": True})

    def started(self, observations: list[str]) -> None:
        self._write({"started": observations})

    def finished(self, outcome: Outcome) -> None:
        self._write({"finished": outcome.to_dict()})

    def close(self) -> None:
        self._file.close()

    def _write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()


@dataclass
class JournalState:
    """What a journal says about a chunk whose result never came back."""

    exists: bool = False
    loading: bool = False
    """The model was being loaded when the journal stops."""
    in_progress: list[str] = field(default_factory=list)
    """Observations started and not finished."""
    finished: list[Outcome] = field(default_factory=list)


def read_journal(path: str | Path) -> JournalState:
    """Read back a journal; a torn last line (the worker died mid-write) is ignored."""
    state = JournalState()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return state
    state.exists = True
    started: list[str] = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "loading" in record:
            state.loading = True
        elif "loaded" in record:
            state.loading = False
        elif "started" in record:
            started.extend(record["started"])
        elif "finished" in record:
            state.finished.append(Outcome.from_dict(record["finished"]))
    done = {outcome.observation for outcome in state.finished}
    state.in_progress = [key for key in started if key not in done]
    return state
