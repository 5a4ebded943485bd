"""Where chunks run: a joblib backend on this machine, or a dask.distributed cluster.

joblib runs the chunks either way; for dask it submits them to a `distributed.Client`, which
talks to a scheduler given by address or scheduler file (a cluster on several hosts, or on
SLURM through dask-jobqueue) or, given neither, to a local cluster of `jobs` worker processes
started for the invocation. Each dask worker process keeps its own model cache, so a group
still loads its model at most once per worker; results still come back to the invoking
process, which alone writes the store.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from astra_cli.errors import UsageError, spelling

BACKENDS = ("loky", "threading", "sequential", "dask")
"""loky (processes, the default); threading, for methods whose work releases the GIL;
sequential, everything in the invoking process; dask, a dask.distributed cluster."""


def default_jobs() -> int:
    """Every core this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_jobs(jobs: int | None) -> int:
    """The workers to use: as asked, or every core when not said."""
    return jobs if jobs is not None else default_jobs()


@dataclass(frozen=True)
class Backend:
    """The user's choice of backend and what it needs; built once per invocation, then used
    to size the plan's chunks and to run them."""

    name: str = "loky"
    jobs: int = 1
    scheduler: str | None = None
    """tcp://host:port of a running dask scheduler."""
    scheduler_file: str | None = None
    """A dask scheduler file (what `dask scheduler --scheduler-file` and dask-jobqueue write)."""

    def __post_init__(self) -> None:
        words = spelling()
        backend, scheduler = words.argument("backend"), words.argument("scheduler")
        scheduler_file = words.argument("scheduler_file")
        if self.name not in BACKENDS:
            raise UsageError(f"{backend} must be one of {', '.join(BACKENDS)}, not {self.name!r}")
        if (self.scheduler or self.scheduler_file) and self.name != "dask":
            raise UsageError(f"{scheduler} and {scheduler_file} go with {backend} dask")
        if self.scheduler and self.scheduler_file:
            raise UsageError(f"give {scheduler} or {scheduler_file}, not both")

    @classmethod
    def chosen(
        cls,
        name: str = "loky",
        jobs: int | None = None,
        scheduler: str | None = None,
        scheduler_file: str | os.PathLike[str] | None = None,
    ) -> Backend:
        """The backend as a user names it: jobs None means every core."""
        file = os.fspath(scheduler_file) if scheduler_file is not None else None
        return cls(name, resolve_jobs(jobs), scheduler, file)


@contextlib.contextmanager
def joblib_settings(backend: Backend) -> Iterator[dict[str, Any]]:
    """The keyword arguments of `joblib.parallel_config` for this backend, with any dask
    client open for as long as the context lasts."""
    if backend.name != "dask":
        yield {"backend": backend.name, "n_jobs": backend.jobs}
        return
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise UsageError(
            "--backend dask needs dask.distributed: pip install 'astra-cli[dask]'"
        ) from None
    with contextlib.ExitStack() as stack:
        try:
            if backend.scheduler or backend.scheduler_file:
                # How long to try: dask's distributed.comm.timeouts.connect (30 s by default;
                # DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=10s in the environment sets it).
                client = Client(
                    backend.scheduler, scheduler_file=backend.scheduler_file, set_as_default=False
                )
            else:
                cluster = LocalCluster(
                    n_workers=backend.jobs,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
                stack.enter_context(cluster)
                client = Client(cluster, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as error:
            where = backend.scheduler or backend.scheduler_file or "a local cluster"
            raise UsageError(f"cannot reach the dask scheduler at {where}: {error}") from None
        stack.enter_context(client)
        yield {"backend": "dask", "n_jobs": -1, "client": client}


def worker_death_errors(backend: Backend) -> tuple[type[BaseException], ...]:
    """The exceptions by which a backend says that a worker died under a task."""
    from concurrent.futures.process import BrokenProcessPool

    if backend.name != "dask":
        return (BrokenProcessPool,)
    from distributed import KilledWorker

    return (BrokenProcessPool, KilledWorker)
