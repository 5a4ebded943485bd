"""SLURM as a backend: the invocation's own dask workers, started as SLURM batch jobs by
dask-jobqueue, and cancelled with it.

The invoking process (on a login node) plans, runs a dask scheduler, hands the chunks to the
workers in the jobs and alone writes the store; each job runs `cores` single-threaded dask
worker processes, each with its own model cache, as any dask worker. What a job asks for comes
from the command line (or `run()`), then the environment (`ASTRA_SLURM_PARTITION`, ...), then
dask-jobqueue's own configuration (`jobqueue.slurm` in ~/.config/dask/jobqueue.yaml), so that a
site's settings are written once.

A request that no node can run is refused before anything is planned or submitted: SLURM
would accept it and leave it pending for ever. The cluster starts only when there is work (a
rerun with nothing to do submits no job) and is closed, its jobs cancelled, however the
invocation ends.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from types import FrameType
from typing import Any

from astra_cli.engine.worker import WORKER_MEMORY_LIMIT
from astra_cli.errors import UsageError, did_you_mean, spelling

ENV_PREFIX = "ASTRA_SLURM_"
DEFAULT_JOBS = 1
DEFAULT_CORES = 1
DEFAULT_GB_PER_CORE = 2
"""Memory per job when nothing says: this much per core (per worker process)."""
JOB_NAME = "astra-worker"
"""What squeue shows for the jobs astra submits."""
COMMAND_TIMEOUT = 60.0
"""Seconds a SLURM command (sinfo, sbatch --test-only, squeue) may take: a controller that
does not answer is reported, not waited for."""

WALLTIME = re.compile(r"^(\d+-)?\d+(:\d+){0,2}$|^\d+-\d+$")
"""SLURM's time limits: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS."""


@dataclass(frozen=True)
class SlurmOptions:
    """What the command line (or `run()`) said of the jobs; None where it said nothing."""

    partition: str | None = None
    jobs: int | None = None
    cores: int | None = None
    memory: str | None = None
    walltime: str | None = None
    account: str | None = None
    extra: tuple[str, ...] = ()
    """Extra `#SBATCH` lines, without `#SBATCH` (`--constraint=cpu`)."""

    def given(self) -> list[str]:
        """The options given, by their argument names (`slurm_partition`, ...)."""
        return [f"slurm_{f.name}" for f in fields(self) if getattr(self, f.name) not in (None, ())]


def slurm_options(given: SlurmOptions | Mapping[str, Any] | None) -> SlurmOptions | None:
    """`run()`'s slurm argument as SlurmOptions: a mapping names its fields."""
    if given is None or isinstance(given, SlurmOptions):
        return given
    known = {f.name for f in fields(SlurmOptions)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise UsageError(
            f"slurm has no option {unknown[0]!r}{did_you_mean(unknown[0], sorted(known))}"
        )
    values = dict(given)
    if isinstance(values.get("extra"), str):
        values["extra"] = (values["extra"],)
    elif values.get("extra") is not None:
        values["extra"] = tuple(values["extra"])
    return SlurmOptions(**values)


@dataclass(frozen=True)
class SlurmRequest:
    """The jobs to submit, every value settled, and how each was given (for messages)."""

    jobs: int
    cores: int
    memory: str
    memory_mb: int
    """What `#SBATCH --mem` asks for, in SLURM's MB (MiB), as dask-jobqueue rounds it."""
    partition: str | None
    walltime: str | None
    """None: dask-jobqueue's own default (00:30:00) or its configuration."""
    account: str | None
    extra: tuple[str, ...] | None
    """None: dask-jobqueue's configuration (`job-extra-directives`)."""
    said: Mapping[str, str]
    """Each value as the user gave it: `--slurm-cores 64`, `ASTRA_SLURM_CORES=64`, ..."""

    @property
    def workers(self) -> int:
        """Worker processes when every job runs: one per core."""
        return self.jobs * self.cores

    def jobs_for(self, workers: int) -> int:
        """Jobs to run for that many worker processes: as many as they fill, no more than
        asked for."""
        return min(self.jobs, max(1, math.ceil(workers / self.cores)))

    def where(self) -> str:
        partition = f" of partition {self.partition}" if self.partition else ""
        return f"the SLURM jobs{partition} of this invocation"

    def cluster_options(self) -> dict[str, Any]:
        """dask-jobqueue's SLURMCluster and SLURMJob keywords for these jobs."""
        options: dict[str, Any] = {
            "cores": self.cores,
            "processes": self.cores,  # single-threaded workers, as with loky
            "memory": self.memory,
            "queue": self.partition,
            "account": self.account,
            "walltime": self.walltime,
            "python": sys.executable,  # the same environment, methods and plugins
            "job_name": JOB_NAME,
            # The job's memory is what SLURM holds it to. dask-jobqueue gives each worker a
            # limit of its own as well (memory / processes), which would count the pages of a
            # mapped grid in every worker; the later --memory-limit wins.
            "worker_extra_args": ["--memory-limit", WORKER_MEMORY_LIMIT],
        }
        if self.extra is not None:
            options["job_extra_directives"] = list(self.extra)
        return options


def _dask_jobqueue() -> Any:
    try:
        import dask_jobqueue
    except ImportError:
        raise UsageError(
            f"{spelling().argument('backend')} slurm needs dask-jobqueue: "
            "pip install 'astra-cli[slurm]'"
        ) from None
    return dask_jobqueue


def resolve(
    given: SlurmOptions, jobs: int | None = None, environ: Mapping[str, str] | None = None
) -> SlurmRequest:
    """The request: each value from `given`, else `jobs` (--jobs, for the number of jobs), else
    the environment (ASTRA_SLURM_*), else dask-jobqueue's configuration, else astra's default.
    Values are checked here, each error naming where the value came from."""
    _dask_jobqueue()  # also loads dask-jobqueue's defaults into dask's configuration
    import dask.config
    from dask.utils import parse_bytes

    environ = os.environ if environ is None else environ
    words = spelling()
    said: dict[str, str] = {}

    def pick(name: str, config_key: str | None = None, command_line: Any = None) -> Any:
        value = getattr(given, name)
        if value not in (None, ()):
            said[name] = f"{words.argument('slurm_' + name)} {value}"
            return value
        if command_line is not None:
            said[name] = f"{words.argument('jobs')} {command_line}"
            return command_line
        variable = ENV_PREFIX + name.upper()
        if environ.get(variable):
            said[name] = f"{variable}={environ[variable]}"
            return environ[variable]
        if config_key is not None:
            configured = dask.config.get(f"jobqueue.slurm.{config_key}", None)
            if configured not in (None, [], ""):
                said[name] = f"jobqueue.slurm.{config_key}: {configured} (dask configuration)"
                return configured
        return None

    number_of_jobs = _whole(pick("jobs", command_line=jobs), said.get("jobs", ""), DEFAULT_JOBS)
    cores = _whole(pick("cores", "cores"), said.get("cores", ""), DEFAULT_CORES)
    memory = pick("memory", "memory")
    if memory is None:
        memory = f"{DEFAULT_GB_PER_CORE * cores}GB"
        said["memory"] = f"{memory} of memory (the default: {DEFAULT_GB_PER_CORE}GB per core)"
    try:
        memory_bytes = parse_bytes(str(memory))
    except (ValueError, TypeError):
        raise UsageError(f"{said['memory']}: not an amount of memory such as 4GB") from None
    if memory_bytes < 2**20:
        raise UsageError(f"{said['memory']}: a job needs at least 1MB")
    walltime = pick("walltime", "walltime")
    if walltime is not None and not WALLTIME.match(str(walltime)):
        raise UsageError(
            f"{said['walltime']}: not a SLURM time limit (minutes, HH:MM:SS or D-HH:MM:SS)"
        )
    extra = pick("extra")
    if isinstance(extra, str):  # from the environment: shell words
        try:
            extra = tuple(shlex.split(extra))
        except ValueError as error:
            raise UsageError(f"{said['extra']}: {error}") from None
    return SlurmRequest(
        jobs=number_of_jobs,
        cores=cores,
        memory=str(memory),
        memory_mb=math.ceil(memory_bytes / 2**20),
        partition=_text(pick("partition", "queue")),
        walltime=_text(walltime),
        account=_text(pick("account", "account")),
        extra=tuple(extra) if extra is not None else None,
        said=said,
    )


def _whole(value: Any, said: str, default: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1 or str(number) != str(value).strip():
        raise UsageError(f"{said}: must be a whole number above 0")
    return number


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _slurm_command(*command: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """A SLURM client command; a UsageError when SLURM is not there or does not answer."""
    if shutil.which(command[0]) is None:
        raise UsageError(
            f"{spelling().argument('backend')} slurm needs SLURM's commands, and {command[0]} "
            "is not on the PATH: run astra on a node of the cluster (a login node)"
        )
    try:
        return subprocess.run(
            command, input=stdin, capture_output=True, text=True, timeout=COMMAND_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        raise UsageError(
            f"{command[0]} did not answer in {COMMAND_TIMEOUT:g} s: is SLURM's controller up?"
        ) from None


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines[:2]) or "no message"


@dataclass(frozen=True)
class Node:
    cores: int
    memory_mb: int


def nodes(partition: str | None) -> list[Node]:
    """Each node's cores and memory (MB), as sinfo lists them, of the partition or all."""
    command = ["sinfo", "--noheader", "--Node", "--format", "%c %m"]
    if partition:
        command += ["--partition", partition]
    listed = _slurm_command(*command)
    if listed.returncode != 0:
        raise UsageError(f"sinfo failed: {_first_line(listed.stderr)}")
    found = []
    for line in listed.stdout.splitlines():
        numbers = [re.match(r"\d+", word) for word in line.split()]
        if len(numbers) == 2 and all(numbers):
            found.append(Node(*(int(match.group()) for match in numbers if match)))
    return found


def check(request: SlurmRequest) -> None:
    """Refuse, before anything is planned or submitted, a request that no node can run (SLURM
    would accept it and leave it pending for ever) or that SLURM refuses (a bad partition or
    time limit, an unknown #SBATCH line): `sbatch --test-only` with the job script itself."""
    found = nodes(request.partition)
    where = f"partition {request.partition}" if request.partition else "the cluster"
    if not found:
        raise UsageError(
            f"{request.said.get('partition', 'SLURM')}: sinfo lists no node in {where}"
        )
    cores = request.said.get("cores", f"{request.cores} core(s)")
    memory = request.said["memory"]
    largest = max(found, key=lambda node: (node.cores, node.memory_mb))
    size = f"the largest has {largest.cores} cores and {largest.memory_mb} MB"
    if not any(node.cores >= request.cores for node in found):
        raise UsageError(f"{cores}: more cores than any node of {where} has ({size})")
    if not any(node.memory_mb >= request.memory_mb for node in found):
        raise UsageError(
            f"{memory}: more memory than any node of {where} has ({request.memory_mb} MB "
            f"asked; {size})"
        )
    if not any(n.cores >= request.cores and n.memory_mb >= request.memory_mb for n in found):
        raise UsageError(
            f"{cores} with {memory}: no node of {where} has both ({request.memory_mb} MB "
            f"asked; {size})"
        )
    job = _dask_jobqueue().SLURMCluster.job_cls(
        scheduler="tcp://127.0.0.1:8786", name="astra-check", **request.cluster_options()
    )
    tried = _slurm_command("sbatch", "--test-only", stdin=job.job_script())
    if tried.returncode != 0:
        raise UsageError(f"SLURM refuses the job astra would submit: {_first_line(tried.stderr)}")


class SlurmSession:
    """The invocation's dask-jobqueue cluster: started when workers are first needed, grown to
    what the work can use (never beyond the request), closed once."""

    def __init__(self, request: SlurmRequest) -> None:
        self.request = request
        self._cluster: Any = None
        self._jobs = 0
        self._lock = threading.Lock()

    def client(self, workers: int) -> Any:
        """A dask client of the cluster, which has (or is getting) enough jobs for `workers`
        worker processes."""
        from dask.distributed import Client

        wanted = self.request.jobs_for(workers)
        with self._lock:
            if self._cluster is None:
                import dask.config

                scheduler = {
                    "dashboard_address": None,
                    **dask.config.get("jobqueue.slurm.scheduler-options", {}),
                }
                self._cluster = _dask_jobqueue().SLURMCluster(
                    scheduler_options=scheduler, **self.request.cluster_options()
                )
            if wanted > self._jobs:
                self._cluster.scale(jobs=wanted)
                self._jobs = wanted
        return Client(self._cluster, set_as_default=False)

    def job_ids(self) -> list[str]:
        if self._cluster is None:
            return []
        jobs = list(self._cluster.workers.values())
        return [str(job.job_id) for job in jobs if getattr(job, "job_id", None)]

    def queue_state(self) -> str:
        """The jobs as squeue sees them (state and, pending, why), for a message."""
        ids = self.job_ids()
        if not ids:
            return "no SLURM job was submitted"
        try:
            listed = _slurm_command(
                "squeue", "--noheader", "--jobs", ",".join(ids), "--format", "%i %T %r"
            )
        except (UsageError, OSError) as error:  # the watch that asks must go on regardless
            return str(error)
        states = {}
        for line in listed.stdout.splitlines():
            job, state, reason = [*line.split(None, 2), "", ""][:3]
            states[job] = f"{state} ({reason})" if reason and reason != "None" else state
        said = [f"{job} {states[job]}" for job in ids if job in states]
        gone = [job for job in ids if job not in states]
        if gone:
            said.append(
                f"{', '.join(gone)} no longer queued (see slurm-{gone[0]}.out in the "
                "directory astra was started from)"
            )
        return "SLURM job(s) " + "; ".join(said)

    def close(self) -> None:
        """Close the cluster, cancelling its jobs; Ctrl-C or SIGTERM meanwhile waits for it,
        since a close cut short would leave jobs holding nodes until their time limit."""
        if self._cluster is None:
            return
        with _signals_held():
            ids = self.job_ids()
            cluster, self._cluster = self._cluster, None
            try:
                cluster.close()
            except Exception:  # dask's shutdown failed: still, no job may outlive astra
                if ids:
                    with contextlib.suppress(UsageError, OSError):
                        _slurm_command("scancel", *ids)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP remembered while the block runs, then delivered (to the
    handlers that were there before)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def remember(number: int, frame: FrameType | None) -> None:
        received.append(number)

    held = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {n: signal.signal(n, remember) for n in held if signal.getsignal(n) is not None}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if received:
            signal.raise_signal(received[0])
