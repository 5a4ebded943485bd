"""Per-chunk journals: what a worker has started and finished, written as it goes.

Results normally travel back to the invoking process as the return value of a chunk. When a
worker dies (killed by the OS, a segfault) or the invocation is interrupted, that return value
never arrives; the journal is what is left, and says which runs finished (their results are kept),
which one was in hand (it is the one that failed), and which were never started (they are run
again). One JSON object per line, flushed after each, so a line is either whole or absent.

The invoking process also reads the journals of chunks still running, to show progress within
a chunk (`JournalWatcher`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from astra_cli.vocabulary import Outcome

JOURNAL_DIRNAME = ".journals"
FINISHED = "finished"
_FINISHED_LINE = b'{"%s":' % FINISHED.encode()
"""How a finished run's line starts (`ChunkJournal._write` puts no space after the brace):
enough to count finished runs without parsing their results."""


class ChunkJournal:
    """The writer, used inside a worker for one chunk.

    A journal only helps recovery, so it never stops the work: if it cannot be written (a full
    disk, say) the chunk goes on without one.
    """

    def __init__(self, path: str, group_key: str = "") -> None:
        try:
            self._file: IO[str] | None = open(path, "a", encoding="utf-8")  # noqa: SIM115
        except OSError:
            self._file = None
        self._write({"pid": os.getpid(), "group": group_key})

    def loading(self) -> None:
        self._write({"loading": True})

    def loaded(self) -> None:
        self._write({"loaded": True})

    def started(self, observations: list[str]) -> None:
        self._write({"started": observations})

    def finished(self, outcome: Outcome) -> None:
        self._write({FINISHED: outcome.to_dict()})

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()

    def _write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            return
        try:
            self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._file.flush()
        except OSError:
            self._file = None


class JournalArea:
    """This invocation's journal directory, marked alive by an flock on `INVOCATION.alive`.

    An invocation killed with SIGKILL leaves its directory behind; the next invocation on the
    output directory removes such directories once their alive-lock is free (the OS released
    it when the process died).
    """

    STALE_AFTER_SECONDS = 60.0
    """Only entries this old are taken for stale: a new invocation creates its alive file a
    moment before it locks it."""

    def __init__(self, output_dir: Path, invocation: str) -> None:
        self.root = Path(output_dir) / JOURNAL_DIRNAME
        self.root.mkdir(parents=True, exist_ok=True)
        self._remove_stale()
        self._alive_path = self.root / f"{invocation}.alive"
        self._alive = os.open(self._alive_path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._alive, fcntl.LOCK_EX)
        self.directory = self.root / invocation
        self.directory.mkdir(exist_ok=True)

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
        self._alive_path.unlink(missing_ok=True)
        os.close(self._alive)
        with contextlib.suppress(OSError):
            self.root.rmdir()  # only when no other invocation is using it

    def _remove_stale(self) -> None:
        now = time.time()
        for alive in self.root.glob("*.alive"):
            with contextlib.suppress(OSError):
                if now - alive.stat().st_mtime < self.STALE_AFTER_SECONDS:
                    continue
                descriptor = os.open(alive, os.O_RDWR)
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its invocation is running
                finally:
                    os.close(descriptor)
                shutil.rmtree(self.root / alive.stem, ignore_errors=True)
                alive.unlink(missing_ok=True)


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
        elif FINISHED in record:
            state.finished.append(Outcome.from_dict(record[FINISHED]))
    # An observation finished twice (a retried attempt at the chunk) counts once: its latest.
    latest = {outcome.observation: outcome for outcome in state.finished}
    state.finished = list(latest.values())
    done = set(latest)
    state.in_progress = list(dict.fromkeys(key for key in started if key not in done))
    return state


@dataclass(frozen=True)
class ChunkInFlight:
    """What a running chunk's journal says so far."""

    group_key: str
    finished: int
    """Runs finished (ok or failed) in this chunk so far."""


@dataclass
class _Followed:
    offset: int = 0
    """Bytes read so far: up to the end of the last whole line."""
    group_key: str = ""
    finished: int = 0


class JournalWatcher:
    """Counts the runs finished in the chunks of one invocation's journal directory while
    they run, for progress within a chunk: a chunk's result comes back to the invoking process
    only when the whole chunk is done.

    Each call reads only what the journals gained since the last one (their sizes tell), and
    counts finished lines by how they start, without parsing them: cheap enough to call a few
    times a second. A journal removed (its chunk's result came back, or the invocation ended)
    is forgotten. Calls from several threads take turns.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._followed: dict[str, _Followed] = {}
        self._lock = threading.Lock()

    def __call__(self) -> dict[str, ChunkInFlight]:
        """{chunk id: what its journal says} for every chunk whose journal exists now."""
        with self._lock:
            return self._read()

    def _read(self) -> dict[str, ChunkInFlight]:
        try:
            paths = {path.stem: path for path in self.directory.glob("*.jsonl")}
        except OSError:
            paths = {}
        for gone in set(self._followed) - set(paths):
            del self._followed[gone]
        found = {}
        for chunk_id, path in paths.items():
            followed = self._followed.setdefault(chunk_id, _Followed())
            if not _read_new_lines(path, followed):
                self._followed.pop(chunk_id, None)
                continue
            found[chunk_id] = ChunkInFlight(followed.group_key, followed.finished)
        return found


def _read_new_lines(path: Path, followed: _Followed) -> bool:
    """Count the whole lines a journal gained since `followed.offset`; False if it is gone."""
    try:
        with open(path, "rb") as journal:
            if os.fstat(journal.fileno()).st_size <= followed.offset:
                return True
            journal.seek(followed.offset)
            new = journal.read()
    except OSError:
        return False
    whole = new[: new.rfind(b"\n") + 1]  # a line still being written waits for the next call
    followed.offset += len(whole)
    for line in whole.splitlines():
        if line.startswith(_FINISHED_LINE):
            followed.finished += 1
        elif line.startswith(b'{"pid"'):
            # A new attempt at the chunk (dask retries a task whose worker died, appending to
            # the same journal): it starts again from nothing.
            followed.finished = 0
            if not followed.group_key:
                with contextlib.suppress(ValueError):
                    followed.group_key = str(json.loads(line).get("group", ""))
    return True
