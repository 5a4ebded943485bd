"""Exit codes, in one place, so that scripts and cron jobs can rely on them."""

from enum import IntEnum


class ExitCode(IntEnum):
    """What `astra` returns to the shell.

    Kept stable across releases: cron wrappers branch on these numbers.
    """

    OK = 0
    """Everything requested is done (now or by an earlier invocation)."""

    RUNS_FAILED = 1
    """Some runs failed; every other result was written."""

    USAGE = 2
    """Bad usage or input: nothing was run."""

    LOCKED = 75
    """Everything that was needed was locked by another invocation (EX_TEMPFAIL)."""

    HANGUP = 129
    """Stopped by SIGHUP (the terminal or ssh session went away); what finished is kept."""

    INTERRUPTED = 130
    """Interrupted by Ctrl-C (SIGINT); what finished is kept."""

    BROKEN_PIPE = 141
    """The reader of standard output went away (`astra results ... | head -1`): the output
    was cut short, quietly (128 + SIGPIPE, as a shell reports other tools)."""

    TERMINATED = 143
    """Stopped by SIGTERM; what finished is kept."""


def stopped_by(signal_name: str | None) -> ExitCode:
    """The exit code of an invocation stopped by this signal (SIGINT, SIGTERM, SIGHUP)."""
    stopped = {"SIGTERM": ExitCode.TERMINATED, "SIGHUP": ExitCode.HANGUP}
    return stopped.get(signal_name or "", ExitCode.INTERRUPTED)
