"""Worker processes started before the request is checked: they make the checks, and each
loads the first group's model.

Before the first spectrum is read, an invocation pays for three things: the checks of the
request (`Method.validate` reads a grid through, unless the store remembers a pass), starting
loky's workers (an interpreter and the method's imports each) and loading the model in every
worker. Once the plan says there is work, `begin` starts the workers of its first stage and
hands them, in this order, the request's checks (`worker.make_checks`, shared among them) and
one load of that stage's first model each (`worker.prime`). The workers import what the checks
need (astropy for a FITS grid, 0.15 s of CPU) for the model anyway, and on a machine whose
cores the workers fill, that CPU would otherwise be taken from them. The invoking process waits
for the checks alone (`checks_passed`), not for the loads, and makes again, itself, each check
not heard of as passed, so that a refusal is said in its own words and a worker that died
checks nothing.

`execute_plan` then runs the chunks on the same workers: joblib keeps one loky executor per
process and hands it to a later call with the same settings (`backends.joblib_settings`) and
number of workers (`WarmStart.workers`, which the runner uses for the stage), so the chunks
find the model cached. The chunks queue behind the loads: a worker takes its first chunk as
soon as its model is loaded, while another may still be loading or checking. Once the stage is
over, the runner counts the loads made here (`finish`). Each worker takes one load as it comes
up; one that is up long before the other may take both, and the other then loads the model
with its first chunk, as it would have without a warm start.

When the checks refuse the request, the loads have been waited for: stopping loky's workers in
the middle of a task races its executor, which then prints a traceback of its own. Only an
interrupt stops them at once (`cancel`). Nothing is started for a group that another
invocation holds (its runs are not this invocation's to do), nor for a backend other than loky:
a dask cluster is started when the chunks need it (SLURM jobs wait in a queue anyway), and the
threading and sequential backends have no process to start; the invoking process then makes
every check itself.

Earlier still, before the request is read and planned, `start_helpers` starts the processes
loky needs before its first worker, when the workers are sure to be needed.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from astra_cli.engine.backends import (
    Backend,
    joblib_settings,
    runs_chunks_here,
    start_loky_tracker,
    workers_for,
)
from astra_cli.engine.locks import locked_elsewhere

if TYPE_CHECKING:
    from astra_cli.engine.planner import Plan
    from astra_cli.engine.worker import Primed, WorkerCheck


def start_helpers(backend: Backend, output_dir: str | os.PathLike[str]) -> bool:
    """Start, now, the processes loky needs before its first worker, when the command line's
    request is sure to need loky's workers: a loky backend of several, and an output directory
    without a store, where every requested run is to be done. True when started here.

    Before its first worker, loky starts two helpers, its resource tracker and
    multiprocessing's. On a machine the workers fill, their CPU was taken from the workers'
    own start; started here, the helpers take it while this process reads and plans the
    request, on a core that would otherwise idle. A store that exists may hold every
    requested run already: a rerun with nothing to do starts no process.

    joblib is imported here without numpy (`lokytracker.import_without_numpy`), unless
    something imported numpy or joblib first: this process passes no array to a worker (its
    tasks carry paths and options), joblib uses numpy only to pass arrays through memory
    maps, and it runs without numpy as where numpy is not installed. That takes 45 ms off
    the 0.3 s before the first worker starts. numpy itself imports as usual later (a check
    made here), and the workers import joblib whole.

    An error starting the helpers is left for loky to meet, and report, at its first worker.
    """
    from astra_cli.io.store import STORE_FILENAME

    if backend.name != "loky" or runs_chunks_here(backend):  # one worker: no helper needed
        return False
    if (Path(output_dir) / STORE_FILENAME).is_file():  # as `api.prepare` tells a new store
        return False
    import multiprocessing.resource_tracker

    from astra_cli.engine.lokytracker import import_without_numpy

    import_without_numpy("joblib")  # numpy or joblib imported already stay as they are
    try:
        start_loky_tracker()
        multiprocessing.resource_tracker.ensure_running()
    except OSError:
        return False
    return True


@dataclass
class WarmStart:
    """Workers started for a stage of a plan, loading its first group's model and making the
    request's checks."""

    workers: int
    """How many were started: the stage runs on as many, so that joblib reuses them."""
    _primes: Iterator[Primed] | None
    _checks: int = 0
    """How many checks the workers were given."""
    _checked: int = 0
    _loads: int = 0
    _passed: set[str] = field(default_factory=set)
    _warned: dict[str, None] = field(default_factory=dict)
    """The warnings of the loads and checks that passed, each once, in order."""

    @classmethod
    def begin(
        cls, plan: Plan, backend: Backend, checks: Sequence[WorkerCheck] = ()
    ) -> WarmStart | None:
        """Start the workers of the plan's first stage with work, each loading the model of its
        first group, and share the `checks` among them; None when nothing would gain (no
        work, no worker process to start, a group another invocation holds)."""
        global _unfinished
        stage = first_stage(plan)
        if stage is None or backend.name != "loky":
            return None
        workers = workers_for(backend, len(stage.chunks))
        if workers < 2:  # joblib runs a lone worker in this process
            return None
        group = stage.group(stage.chunks[0].group_key)
        if locked_elsewhere(stage.output_dir, group.key):  # its runs are another's to do
            return None
        from joblib import Parallel, delayed, parallel_config

        from astra_cli.engine.worker import make_checks, prime
        from astra_cli.methods.registry import load_method, method_path

        if _unfinished is not None:  # a plan prepared, never run: its loads come first
            _unfinished.finish()
        path = method_path(load_method(group.method))
        model = (group.method, path, group.options, group.key, group.model.files_state)
        # The checks first, in the first workers up: the request's verdict is what the chunks
        # wait for, and each worker's load what its own first chunk waits for.
        shares = [tuple(checks[share::workers]) for share in range(min(workers, len(checks)))]
        tasks = [delayed(make_checks)(share) for share in shares]
        tasks += [delayed(prime)(*model) for _ in range(workers)]
        with joblib_settings(backend, workers) as settings, parallel_config(**settings.config):
            parallel = Parallel(return_as="generator_unordered", batch_size=1, pre_dispatch="all")
            primes = parallel(tasks)
        _unfinished = cls(workers, primes, len(checks))
        return _unfinished

    def checks_passed(self) -> frozenset[str]:
        """Wait for the workers that make checks, not for the others' loads; the keys of the
        checks that passed in them."""
        self._wait(until_checked=True)
        return frozenset(self._passed)

    def finish(self, *, warn: bool = True) -> int:
        """Wait for the workers to have loaded the model; how many loaded it, the first time
        asked (the runner counts them once). The warnings the workers met loading it are
        printed here, once each, as Python prints a warning; not with `warn=False`, for a
        request refused (its refusal says what is wrong)."""
        self._wait()
        loads, self._loads = self._loads, 0
        warned, self._warned = self._warned, {}
        if warn:
            for text in warned:
                sys.stderr.write(text)
        return loads

    def _wait(self, until_checked: bool = False) -> None:
        """Read what the workers did: until every check was made, or until every worker is
        done. Whatever went wrong meanwhile (a worker killed, the executor shut down) is the
        chunks' to meet: the pool starts other workers and recovers, so it is not raised here;
        a check not heard of is made again by the invoking process."""
        global _unfinished
        try:
            # Kept in self._primes while it is read, for an interrupt to `cancel`.
            while self._primes is not None:
                if until_checked and self._checked >= self._checks:
                    return
                primed = next(self._primes, None)
                if primed is None:
                    break
                self._loads += primed.loaded
                self._checked += primed.checked
                self._passed.update(primed.passed)
                self._warned.update(dict.fromkeys(primed.warned))
        except (BrokenProcessPool, RuntimeError):  # a worker died; the executor was shut down
            pass
        self._primes = None
        if _unfinished is self:
            _unfinished = None

    def cancel(self) -> None:
        """Stop the workers now (an interrupt): joblib kills them when a call's results are
        dropped unread, and warns that tasks were cancelled, which is the intent here."""
        global _unfinished
        if _unfinished is self:
            _unfinished = None
        primes, self._primes = self._primes, None
        close = getattr(primes, "close", None)
        if close is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                close()


_unfinished: WarmStart | None = None
"""The last warm start not yet finished: a plan prepared and dropped without being run would
otherwise have joblib kill the process's shared workers when its call is collected."""


def first_stage(plan: Plan) -> Plan | None:
    """The stage that runs first and has chunks: the methods it needs first, depth first, as
    `execute_plan` runs them, then the plan itself."""
    for stage in plan.upstream:
        found = first_stage(stage)
        if found is not None:
            return found
    return plan if plan.chunks else None
