"""SIGTERM and SIGHUP stop an invocation as Ctrl-C does: a scheduler's or an administrator's
SIGTERM, and the SIGHUP of a terminal (or ssh session) that went away, then run the same code
that keeps what finished (`astra analyse`) or removes what was half-written (`astra results`).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

STOPPING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
"""What stops an invocation like Ctrl-C."""


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, delivered like Ctrl-C so that the same code keeps what finished."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While running, SIGTERM and SIGHUP interrupt like Ctrl-C (only the main thread can set
    handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise Terminated(signal.Signals(signum).name)

    # A signal the caller ignores stays ignored: `nohup astra ...` must survive its logout.
    handled = [n for n in STOPPING_SIGNALS if signal.getsignal(n) is not signal.SIG_IGN]
    previous = {number: signal.signal(number, interrupt) for number in handled}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
