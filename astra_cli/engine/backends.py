"""Where chunks run: a joblib backend on this machine, or a dask.distributed cluster.

joblib runs the chunks either way; for dask it submits them to a `distributed.Client`, which
talks to a scheduler given by address or scheduler file (a cluster the user keeps, on several
hosts) or, given neither, to a local cluster of `jobs` worker processes started for the
invocation; for slurm, to dask workers in SLURM jobs that the invocation submits and cancels
(`engine.slurm`). Each dask worker process keeps its own model cache, so a group still loads
its model at most once per worker; results still come back to the invoking process, which
alone writes the store.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from astra_cli.errors import AstraError, UsageError, spelling
from astra_cli.exit_codes import ExitCode

if TYPE_CHECKING:
    from astra_cli.engine.slurm import SlurmOptions, SlurmRequest, SlurmSession

DEFAULT_DASK_TIMEOUT = 60.0
"""Seconds a dask cluster may have no worker before the invocation gives up on it."""

BACKENDS = ("loky", "threading", "sequential", "dask", "slurm")
"""loky (processes, the default); threading, for methods whose work releases the GIL;
sequential, everything in the invoking process; dask, a dask.distributed cluster; slurm, dask
workers in SLURM jobs of the invocation's own."""
CLUSTERS = ("dask", "slurm")
"""The backends whose workers are dask workers."""


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
    joblib runs a lone worker in the invoking process, where a crash would take astra too
    (except on SLURM, where a worker is a job in the queue and never this process)."""
    if backend.name == "slurm":
        return max(1, min(backend.jobs, chunks))
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
    slurm: SlurmRequest | None = None
    """With slurm: the jobs to submit (`jobs` is then their worker processes)."""
    cluster: SlurmSession | None = field(default=None, compare=False, repr=False)
    """With slurm, while the invocation runs (`in_use`): the jobs' dask cluster."""

    def __post_init__(self) -> None:
        _check_choice(self.name, self.scheduler, self.scheduler_file, self.dask_timeout)
        if self.name == "slurm" and self.slurm is None:
            raise UsageError("the slurm backend needs its request: use Backend.chosen")

    @property
    def where(self) -> str:
        """The cluster, as messages name it."""
        if self.slurm is not None:
            return self.slurm.where()
        return self.scheduler or self.scheduler_file or "the local dask cluster"

    @classmethod
    def chosen(
        cls,
        name: str = "loky",
        jobs: int | None = None,
        scheduler: str | None = None,
        scheduler_file: str | os.PathLike[str] | None = None,
        dask_timeout: float = DEFAULT_DASK_TIMEOUT,
        slurm: SlurmOptions | None = None,
    ) -> Backend:
        """The backend as a user names it: jobs None means every core. With slurm, `jobs` is
        the number of jobs when `slurm` does not say, and the request is checked against the
        cluster (sinfo, sbatch --test-only) here, before anything is planned."""
        file = os.fspath(scheduler_file) if scheduler_file is not None else None
        given = slurm.given() if slurm is not None else []
        if name != "slurm":
            if given:
                words = spelling()
                raise UsageError(
                    f"{words.argument(given[0])} goes with {words.argument('backend')} slurm"
                )
            return cls(name, resolve_jobs(jobs), scheduler, file, dask_timeout)
        from astra_cli.engine import slurm as slurm_jobs

        if jobs is not None and jobs < 1:
            raise UsageError(
                f"{spelling().argument('jobs')} counts SLURM jobs with "
                f"{spelling().argument('backend')} slurm: a number above 0"
            )
        _check_choice(name, scheduler, file, dask_timeout)  # what is cheap to check, first
        request = slurm_jobs.resolve(slurm or slurm_jobs.SlurmOptions(), jobs)
        slurm_jobs.check(request)
        return cls(name, request.workers, None, None, dask_timeout, request)


def _check_choice(
    name: str, scheduler: str | None, scheduler_file: str | None, dask_timeout: float
) -> None:
    words = spelling()
    backend, scheduler_option = words.argument("backend"), words.argument("scheduler")
    file_option = words.argument("scheduler_file")
    if name not in BACKENDS:
        raise UsageError(f"{backend} must be one of {', '.join(BACKENDS)}, not {name!r}")
    if (scheduler or scheduler_file) and name != "dask":
        raise UsageError(f"{scheduler_option} and {file_option} go with {backend} dask")
    if scheduler and scheduler_file:
        raise UsageError(f"give {scheduler_option} or {file_option}, not both")
    if not dask_timeout > 0:
        raise UsageError(f"{words.argument('dask_timeout')} must be a number of seconds above 0")


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

    def __init__(
        self, client: Any, timeout: float, where: str, detail: Callable[[], str] | None = None
    ) -> None:
        self.client, self.timeout, self.where = client, timeout, where
        self.detail = detail
        """Says more of why there is no worker (the SLURM jobs' state in the queue)."""
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
        if self.detail is not None:
            return (
                f"no dask worker from {self.where} for {self.timeout:g} s (--dask-timeout): "
                f"gave up, jobs cancelled; {self.detail()}; what finished is kept, run the same "
                "command again (with a longer --dask-timeout for a busy queue)"
            )
        return (
            f"no dask worker at {self.where} for {self.timeout:g} s (--dask-timeout): gave "
            "up; what finished is kept, run the same command again once the cluster has workers"
        )

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def runs_chunks_here(backend: Backend) -> bool:
    """Whether the invoking process analyses the chunks itself: one loky worker (joblib then
    runs them in this process), threading or sequential."""
    return backend.name in ("threading", "sequential") or (
        backend.name == "loky" and backend.jobs <= 1
    )


def start_loky_tracker() -> None:
    """Start loky's resource tracker, unless it runs already, from `lokytracker`: it then
    imports loky's tracker alone, none of joblib, and takes 0.06 to 0.09 s of CPU instead of
    0.17 to 0.2 s from the workers starting beside it.

    loky names the module its tracker imports after its `main` function's `__module__`, set
    here for the launch alone; were loky to launch it some other way, the tracker would be
    loky's own as before. The tracker's interpreter is given this process's sys.path (on
    PYTHONPATH, for the launch alone), as loky gives its workers: a program may have found
    astra on a path it added itself, where a new interpreter would not look, and a tracker
    that cannot import `lokytracker` dies, leaving loky to warn and start another."""
    from joblib.externals.loky.backend import resource_tracker

    launched = resource_tracker.main
    module, launched.__module__ = launched.__module__, "astra_cli.engine.lokytracker"
    pythonpath = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if isinstance(p, str) and p)
    try:
        resource_tracker.ensure_running()
    finally:
        launched.__module__ = module
        if pythonpath is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = pythonpath


def processes_started(backend: Backend, chunks: int) -> int:
    """Worker processes this invocation starts for that many chunks: none when joblib runs
    them in this process (one worker, threading, sequential) or on a cluster astra did not
    start."""
    workers = workers_for(backend, chunks)
    if backend.name == "loky" and workers > 1:
        return workers
    if backend.name == "dask" and not (backend.scheduler or backend.scheduler_file):
        return workers
    if backend.slurm is not None:
        return backend.slurm.jobs_for(workers) * backend.slurm.cores
    return 0


@contextlib.contextmanager
def in_use(backend: Backend) -> Iterator[Backend]:
    """The backend with what it holds for a whole invocation: with slurm, the jobs' cluster,
    started when work first needs it (a rerun with nothing to do submits no job), shared by
    every stage of the plan, and closed (its jobs cancelled) however the invocation ends."""
    if backend.slurm is None or backend.cluster is not None:
        yield backend
        return
    from astra_cli.engine.slurm import SlurmSession

    session = SlurmSession(backend.slurm)
    try:
        yield replace(backend, cluster=session)
    finally:
        session.close()


@contextlib.contextmanager
def joblib_settings(backend: Backend, workers: int) -> Iterator[Workers]:
    """The keyword arguments of `joblib.parallel_config` for this backend and number of
    workers, with any dask client open (and watched) for as long as the context lasts."""
    if backend.name == "loky":
        from astra_cli.engine.worker import start_worker

        if workers > 1:  # else joblib runs the chunks in this process, with no tracker
            with contextlib.suppress(OSError):  # loky meets it, and says so, at a worker
                start_loky_tracker()
        # Each worker exits when this process is gone, even killed with -9: else loky's
        # workers live on, holding their models' memory, with nobody to hand them work. And
        # each keeps the models it loaded, mapped grids included (`start_worker`).
        yield Workers(
            {
                "backend": "loky",
                "n_jobs": workers,
                "initializer": start_worker,
                "initargs": (os.getpid(),),
            }
        )
        return
    if backend.name not in CLUSTERS:
        yield Workers({"backend": backend.name, "n_jobs": workers})
        return
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise UsageError(
            f"--backend {backend.name} needs dask.distributed: pip install "
            f"'astra-cli[{backend.name}]'"
        ) from None
    with contextlib.ExitStack() as stack:
        detail = None
        try:
            if backend.slurm is not None:
                session = backend.cluster or stack.enter_context(_session(backend))
                client = session.client(workers)
                detail = session.queue_state
            elif backend.scheduler or backend.scheduler_file:
                # How long to try: dask's distributed.comm.timeouts.connect (30 s by default;
                # DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=10s in the environment sets it).
                client = Client(
                    backend.scheduler, scheduler_file=backend.scheduler_file, set_as_default=False
                )
            else:
                from astra_cli.engine.worker import WORKER_MEMORY_LIMIT

                cluster = LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    memory_limit=WORKER_MEMORY_LIMIT,
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
                stack.enter_context(cluster)
                client = Client(cluster, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as error:
            if backend.slurm is not None:
                raise UsageError(f"cannot start the dask scheduler for SLURM: {error}") from None
            raise UsageError(
                f"cannot reach the dask scheduler at {backend.where}: {error}"
            ) from None
        stack.enter_context(client)
        if not (backend.scheduler or backend.scheduler_file):  # a cluster astra started
            from astra_cli.engine.daskworkers import keep_heaps

            keep_heaps(client)
        watch = _WorkerWatch(client, backend.dask_timeout, backend.where, detail)
        stack.callback(watch.stop)
        config = {
            "backend": _cluster_backend(),
            "n_jobs": -1,
            "client": client,
            "wait_for_workers_timeout": backend.dask_timeout,
        }
        yield Workers(config, watch)


@contextlib.contextmanager
def _session(backend: Backend) -> Iterator[SlurmSession]:
    """The jobs' cluster for one `joblib_settings` only, when the caller did not say `in_use`."""
    with in_use(backend) as running:
        assert running.cluster is not None
        yield running.cluster


def _cluster_backend() -> str:
    """joblib's dask backend, registered under a name of astra's, with two changes.

    It never reports fewer than 2 workers: joblib runs every task of a call in the calling
    process when its backend says 1, which is what a cluster of one single-threaded worker
    says. And a task the scheduler gives up on (`KilledWorker`: it killed every worker that
    ran it, which a nanny restarted each time) reaches joblib as the task's error: joblib 1.6
    only hands its completion callback the results of tasks that ran, so such a task left
    `Parallel` waiting for ever, with the groups' locks held.
    """
    from joblib import register_parallel_backend
    from joblib._dask import DaskDistributedBackend  # joblib registers "dask" from here too

    class ClusterBackend(DaskDistributedBackend):
        def effective_n_jobs(self, n_jobs: int) -> int:
            return max(2, int(super().effective_n_jobs(n_jobs)))

        def submit(self, func: Any, callback: Any = None) -> Any:
            future = super().submit(func, callback)
            if callback is not None:

                def failed(done: Any) -> None:
                    if not done.cancelled() and done.exception() is not None:
                        callback(done.exception())

                future.add_done_callback(failed)
            return future

    register_parallel_backend(CLUSTER_BACKEND, ClusterBackend)
    return CLUSTER_BACKEND


CLUSTER_BACKEND = "astra-dask"


def worker_death_errors(backend: Backend) -> tuple[type[BaseException], ...]:
    """The exceptions by which a backend says that a worker died under a task."""
    from concurrent.futures.process import BrokenProcessPool

    if backend.name not in CLUSTERS:
        return (BrokenProcessPool,)
    from distributed import KilledWorker

    return (BrokenProcessPool, KilledWorker)
