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
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from astra_cli.errors import AstraError, UsageError, spelling
from astra_cli.exit_codes import ExitCode

DEFAULT_DASK_TIMEOUT = 60.0
"""Seconds a dask cluster may have no worker before the invocation gives up on it."""

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
    """The workers to use: as asked, or every core when not said; joblib's convention for
    negative numbers: -1 every core, -2 every core but one, and so on."""
    if jobs is None:
        return default_jobs()
    if jobs == 0:
        raise UsageError(f"{spelling().argument('jobs')} must not be 0 (-1 is every core)")
    return jobs if jobs > 0 else max(1, default_jobs() + 1 + jobs)


def workers_for(backend: Backend, chunks: int) -> int:
    """Worker processes to start for this many chunks: no more than there are chunks (a
    worker without a chunk only costs memory), and never 1 when more were asked for, since
    joblib runs a lone worker in the invoking process, where a crash would take astra too."""
    if backend.jobs <= 1 or chunks <= 0:
        return 1
    return max(2, min(backend.jobs, chunks))


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
    dask_timeout: float = DEFAULT_DASK_TIMEOUT
    """Seconds a dask cluster may have no worker before the invocation gives up on it."""

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
        if not self.dask_timeout > 0:
            raise UsageError(
                f"{words.argument('dask_timeout')} must be a number of seconds above 0"
            )

    @property
    def where(self) -> str:
        """The cluster, as messages name it."""
        return self.scheduler or self.scheduler_file or "the local dask cluster"

    @classmethod
    def chosen(
        cls,
        name: str = "loky",
        jobs: int | None = None,
        scheduler: str | None = None,
        scheduler_file: str | os.PathLike[str] | None = None,
        dask_timeout: float = DEFAULT_DASK_TIMEOUT,
    ) -> Backend:
        """The backend as a user names it: jobs None means every core."""
        file = os.fspath(scheduler_file) if scheduler_file is not None else None
        return cls(name, resolve_jobs(jobs), scheduler, file, dask_timeout)


class NoWorkersError(AstraError):
    """The dask cluster had no worker for the timeout: the invocation gave up on it."""

    exit_code = ExitCode.RUNS_FAILED


@dataclass
class Workers:
    """How joblib reaches the workers (`config`, for `joblib.parallel_config`), and whether
    the invocation gave up on them."""

    config: dict[str, Any]
    _watch: _WorkerWatch | None = field(default=None, repr=False)

    def gave_up(self, error: BaseException) -> NoWorkersError | None:
        """The error to stop with when `error` came of the cluster having had no worker for
        too long (the watch closed the client, or joblib found no worker to start with)."""
        if self._watch is None:
            return None
        if self._watch.gave_up:
            return NoWorkersError(self._watch.gave_up)
        if isinstance(error, TimeoutError) and "has no worker" in str(error):
            return NoWorkersError(self._watch.message())
        return None


class _WorkerWatch:
    """Looks at a dask cluster's workers every second; once it has had none for `timeout`
    seconds, closes the client, which cancels every task waiting on it (dask itself would wait
    for workers forever, holding the invocation's group locks)."""

    def __init__(self, client: Any, timeout: float, where: str) -> None:
        self.client, self.timeout, self.where = client, timeout, where
        self.gave_up: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="astra-dask-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        without_since: float | None = None
        while not self._stop.wait(1.0):
            try:
                workers = len(self.client.nthreads())
            except Exception:  # the scheduler is gone too
                workers = 0
            if workers:
                without_since = None
                continue
            without_since = without_since or time.monotonic()
            if time.monotonic() - without_since >= self.timeout:
                self.gave_up = self.message()
                self.client.close()
                return

    def message(self) -> str:
        return (
            f"no dask worker at {self.where} for {self.timeout:g} s (--dask-timeout): gave "
            "up; what finished is kept, run the same command again once the cluster has workers"
        )

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def processes_started(backend: Backend, chunks: int) -> int:
    """Worker processes this invocation starts for that many chunks: none when joblib runs
    them in this process (one worker, threading, sequential) or on a cluster astra did not
    start."""
    workers = workers_for(backend, chunks)
    if backend.name == "loky" and workers > 1:
        return workers
    if backend.name == "dask" and not (backend.scheduler or backend.scheduler_file):
        return workers
    return 0


@contextlib.contextmanager
def joblib_settings(backend: Backend, workers: int) -> Iterator[Workers]:
    """The keyword arguments of `joblib.parallel_config` for this backend and number of
    workers, with any dask client open (and watched) for as long as the context lasts."""
    if backend.name == "loky":
        from astra_cli.engine.worker import watch_parent

        # Each worker exits when this process is gone, even killed with -9: else loky's
        # workers live on, holding their models' memory, with nobody to hand them work.
        yield Workers(
            {
                "backend": "loky",
                "n_jobs": workers,
                "initializer": watch_parent,
                "initargs": (os.getpid(),),
            }
        )
        return
    if backend.name != "dask":
        yield Workers({"backend": backend.name, "n_jobs": workers})
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
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
                stack.enter_context(cluster)
                client = Client(cluster, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as error:
            raise UsageError(
                f"cannot reach the dask scheduler at {backend.where}: {error}"
            ) from None
        stack.enter_context(client)
        watch = _WorkerWatch(client, backend.dask_timeout, backend.where)
        stack.callback(watch.stop)
        config = {
            "backend": _cluster_backend(),
            "n_jobs": -1,
            "client": client,
            "wait_for_workers_timeout": backend.dask_timeout,
        }
        yield Workers(config, watch)


def _cluster_backend() -> str:
    """joblib's dask backend, registered under a name of astra's, that never reports fewer
    than 2 workers: joblib runs every task of a call in the calling process when its backend
    says 1, which is what a cluster of one single-threaded worker says."""
    from joblib import register_parallel_backend
    from joblib._dask import DaskDistributedBackend  # joblib registers "dask" from here too

    class ClusterBackend(DaskDistributedBackend):
        def effective_n_jobs(self, n_jobs: int) -> int:
            return max(2, int(super().effective_n_jobs(n_jobs)))

    register_parallel_backend(CLUSTER_BACKEND, ClusterBackend)
    return CLUSTER_BACKEND


CLUSTER_BACKEND = "astra-dask"


def worker_death_errors(backend: Backend) -> tuple[type[BaseException], ...]:
    """The exceptions by which a backend says that a worker died under a task."""
    from concurrent.futures.process import BrokenProcessPool

    if backend.name != "dask":
        return (BrokenProcessPool,)
    from distributed import KilledWorker

    return (BrokenProcessPool, KilledWorker)
