"""The invoking-process side of execution: chunk tasks handed to the workers of a backend, and
results streamed back as chunks finish.

A worker that dies (killed by the OS, a segfault) costs nothing it had finished (recovered
from the chunk's journal); what it had not started is run by a new worker, and what it had in
hand runs again alone, to fail only if it kills its worker again.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from astra_cli.engine.backends import Backend, joblib_settings, worker_death_errors, workers_for
from astra_cli.engine.journal import read_journal
from astra_cli.engine.worker import ChunkResult, ChunkTask, WorkItem, run_chunk
from astra_cli.methods.registry import load_method, method_path
from astra_cli.vocabulary import FAULT_ENVIRONMENT, FAULT_RUN, Outcome

MAX_FRUITLESS_RESTARTS = 2
"""Times the worker pool may break without any run to blame (a crash outside an observation,
say while importing a plugin) before the remaining runs are failed rather than retried."""


class ChunkTasks:
    """Numbers chunk tasks and their journals for one invocation."""

    def __init__(self, journal_dir: Path, invocation: str, output_dir: str) -> None:
        self.journal_dir = journal_dir
        self.output_dir = output_dir
        self.invocation = invocation
        self._numbers = itertools.count()

    def make(
        self,
        group_key: str,
        method: str,
        options: Mapping[str, Any],
        observations: Sequence[WorkItem],
        model_files_state: str,
    ) -> ChunkTask:
        chunk_id = f"{self.invocation}-{next(self._numbers)}"
        journal = str(self.journal_dir / f"{chunk_id}.jsonl")
        return ChunkTask(
            chunk_id,
            group_key,
            method,
            method_path(load_method(method)),
            dict(options),
            tuple(observations),
            journal,
            self.output_dir,
            model_files_state,
        )


def execute(
    tasks: Sequence[ChunkTask],
    numbering: ChunkTasks,
    backend: Backend,
    workers: int | None = None,
) -> Iterator[ChunkResult]:
    """Run chunk tasks on a backend and yield each chunk's result as it finishes, on `workers`
    workers (as many as the tasks can use, when None: `backends.workers_for`).

    When a worker dies under a task (the loky pool breaks; dask gives up on a task that killed
    its workers), the chunks that did not come back are recovered from their journals (see
    `recover`): what finished is kept, what never started is resubmitted, and the runs that
    were in hand are suspects. A pool's death takes every busy worker with it, and a batch
    holds a whole chunk in hand, so a suspect is not blamed yet: once the rest is done, each
    runs again alone, and only a run whose worker dies with it alone fails. On
    KeyboardInterrupt, what the journals show finished is yielded before re-raising.
    """
    deaths = worker_death_errors(backend)
    queue = list(tasks)
    suspects: list[ChunkTask] = []
    fruitless_restarts = 0
    count = workers if workers is not None else workers_for(backend, len(tasks))
    with joblib_settings(backend, count) as pool:
        while queue or suspects:
            alone = not queue
            running = queue if queue else [suspects.pop(0)]
            returned: set[str] = set()
            journals = {task.chunk_id: Path(task.journal) for task in running}
            try:
                for result in _parallel(pool.config, running):
                    returned.add(result.chunk_id)
                    journals[result.chunk_id].unlink(missing_ok=True)
                    yield result
                queue = []
            except deaths as error:
                unfinished = [task for task in running if task.chunk_id not in returned]
                cause = worker_death_cause(error)
                recovered, queue, suspected = recover(
                    unfinished, numbering, died=cause, alone=alone
                )
                suspects += suspected
                yield from recovered
                if suspected or any(not o.ok for result in recovered for o in result.outcomes):
                    continue
                fruitless_restarts += 1
                if fruitless_restarts > MAX_FRUITLESS_RESTARTS:
                    yield from _fail_all(
                        [*queue, *suspects], f"worker processes keep dying ({cause})"
                    )
                    return
            except GeneratorExit:
                raise
            except BaseException as error:
                unfinished = [task for task in running if task.chunk_id not in returned]
                recovered, _, _ = recover(unfinished, numbering, died=None)
                yield from recovered
                gave_up = pool.gave_up(error)
                if gave_up is not None:
                    raise gave_up from None
                raise


def _parallel(settings: dict[str, Any], tasks: Sequence[ChunkTask]) -> Iterator[ChunkResult]:
    """Results as chunks finish, one chunk per joblib task (chunks are batches already)."""
    from joblib import Parallel, delayed, parallel_config

    with parallel_config(**settings):
        parallel = Parallel(return_as="generator_unordered", batch_size=1)
        yield from parallel(delayed(run_chunk)(task) for task in tasks)


def recover(
    tasks: Sequence[ChunkTask], numbering: ChunkTasks, *, died: str | None, alone: bool = False
) -> tuple[list[ChunkResult], list[ChunkTask], list[ChunkTask]]:
    """What to keep and what to redo of chunks whose result never came back: (results of
    what finished or failed, tasks to resubmit, suspects to run again one at a time).

    Finished runs in a journal are kept. With `died` (the pool broke): observations never
    started go into new tasks (those of a worker that was loading its model too); each
    observation in hand becomes a task of its own to run alone, or, when the task already ran
    alone (`alone`), fails as the run's own fault; a task that ran alone and died loading its
    model fails every unfinished observation, not as their fault (the next invocation
    retries them). Without `died` (interrupted): nothing fails; unfinished runs
    stay pending for the next invocation.
    """
    results: list[ChunkResult] = []
    retry: list[ChunkTask] = []
    suspects: list[ChunkTask] = []
    for task in tasks:
        state = read_journal(task.journal)
        if not state.exists:
            retry.append(task)
            continue
        outcomes = list(state.finished)
        finished = {outcome.observation for outcome in outcomes}
        unfinished = [item for item in task.observations if item.key not in finished]
        if died is not None:
            now = time.time()
            in_hand = set(state.in_progress)
            if state.loading and not alone:
                in_hand = set()  # the pool's death may have been another worker's: again
            elif state.loading:
                message = f"worker process died while loading the model: {died}"
                outcomes += [
                    Outcome(item.key, None, message, now, 0.0, FAULT_ENVIRONMENT)
                    for item in unfinished
                ]
                in_hand = {item.key for item in unfinished}
            elif alone:
                message = (
                    f"worker process died while analysing this observation, twice, the second "
                    f"time alone: {died}"
                )
                outcomes += [
                    Outcome(key, None, message, now, 0.0, FAULT_RUN) for key in sorted(in_hand)
                ]
            else:
                suspects += [
                    _task_like(task, numbering, [item])
                    for item in unfinished
                    if item.key in in_hand
                ]
            not_started = [item for item in unfinished if item.key not in in_hand]
            if not_started:
                retry.append(_task_like(task, numbering, not_started))
        results.append(ChunkResult(task.chunk_id, task.group_key, outcomes))
        Path(task.journal).unlink(missing_ok=True)
    return results, retry, suspects


def _task_like(task: ChunkTask, numbering: ChunkTasks, items: Sequence[WorkItem]) -> ChunkTask:
    """A new task of the same group for some of a task's observations."""
    return numbering.make(task.group_key, task.method, task.options, items, task.model_files_state)


def worker_death_cause(error: BaseException) -> str:
    """A short cause from joblib's message, which names the workers' exit codes (dask says
    which task killed how many workers)."""
    found = re.search(r"exit codes of the workers are (\{[^}]*\})", str(error))
    codes = f"exit codes {found.group(1)}" if found else f"{type(error).__name__}: {error}"
    return f"{codes}; killed by the OS (out of memory?) or crashed"


def _fail_all(tasks: Sequence[ChunkTask], message: str) -> Iterator[ChunkResult]:
    now = time.time()
    for task in tasks:
        outcomes = [
            Outcome(item.key, None, message, now, 0.0, FAULT_ENVIRONMENT)
            for item in task.observations
        ]
        Path(task.journal).unlink(missing_ok=True)
        yield ChunkResult(task.chunk_id, task.group_key, outcomes)
