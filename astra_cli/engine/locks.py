"""Per-group locks in the output directory, so that overlapping invocations (two cron runs, say)
never run the same run twice at the same time.

Each group's lock is an flock(2) on `.locks/GROUP.lock`: the operating system releases it when
the holding process dies however it dies, so a stale lock never blocks anyone. flock is
reliable on local disks; on network file systems it depends on the server.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

LOCK_DIRNAME = ".locks"


def locked_elsewhere(output_dir: str | os.PathLike[str], group_key: str) -> bool:
    """Whether another process holds the group's lock now: a look that takes nothing (the lock
    is let go at once) and creates nothing."""
    try:
        descriptor = os.open(Path(output_dir) / LOCK_DIRNAME / f"{group_key}.lock", os.O_RDONLY)
    except OSError:  # never locked here, or not readable: nothing says it is held
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)  # closing the descriptor releases the flock
    return False


class GroupLocks:
    """The group locks this invocation holds."""

    def __init__(self, output_dir: str | os.PathLike[str]) -> None:
        self.directory = Path(output_dir) / LOCK_DIRNAME
        self.directory.mkdir(parents=True, exist_ok=True)
        self._held: dict[str, int] = {}

    def acquire(self, group_key: str, *, wait: bool = False) -> bool:
        """Take the group's lock; without `wait`, False at once if another process has it."""
        if group_key in self._held:
            return True
        descriptor = os.open(self.directory / f"{group_key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(descriptor)
            return False
        except BaseException:
            os.close(descriptor)
            raise
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{socket.gethostname()} pid {os.getpid()}\n".encode())
        self._held[group_key] = descriptor
        return True

    def holder(self, group_key: str) -> str:
        """Who holds (or last held) a group's lock, as its holder wrote it."""
        try:
            return (self.directory / f"{group_key}.lock").read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def release(self, group_key: str) -> None:
        descriptor = self._held.pop(group_key, None)
        if descriptor is not None:
            os.close(descriptor)  # closing the descriptor releases the flock

    def release_all(self) -> None:
        for group_key in list(self._held):
            self.release(group_key)
