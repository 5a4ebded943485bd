"""Executing a prepared plan: lock each group, re-check what is left of it, run its chunks,
commit each chunk's results in one transaction as it comes back, and keep everything that
finished when interrupted.

Locks make overlapping invocations safe: a group locked by another invocation is skipped (and
retried once at the end) or, with `wait`, waited for. After taking a group's lock the group's
runs are looked up again, so that runs another invocation finished meanwhile are not redone.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence

from astra_cli.engine.backends import Backend, in_use, processes_started
from astra_cli.engine.journal import JournalArea, JournalWatcher
from astra_cli.engine.labels import group_labels
from astra_cli.engine.locks import GroupLocks
from astra_cli.engine.planner import Chunk, Group, Plan, classify
from astra_cli.engine.pool import ChunkTasks, execute
from astra_cli.engine.progress import Progress, SilentProgress, watch_chunks
from astra_cli.engine.stopping import STOPPING_SIGNALS, Terminated, sigterm_interrupts
from astra_cli.engine.upstream import inputs_for
from astra_cli.engine.worker import ChunkResult, ChunkTask, WorkItem
from astra_cli.errors import AstraError
from astra_cli.exit_codes import ExitCode
from astra_cli.io.store import ResultsStore
from astra_cli.version import __version__
from astra_cli.vocabulary import (
    FAULT_ENVIRONMENT,
    FAULT_RUN,
    Observation,
    Outcome,
    RunRecord,
    Summary,
)


class StoreWriteError(AstraError):
    """The store refused a write (disk full, read-only): stop, keep what was committed."""

    exit_code = ExitCode.RUNS_FAILED


def execute_plan(
    plan: Plan,
    *,
    backend: Backend,
    progress: Progress | None = None,
    wait: bool = False,
) -> Summary:
    """Run every group of the plan on the backend, committing each chunk to the plan's store;
    returns the Summary (its exit_code is the CLI's).

    wait
        Wait for groups that another invocation is running instead of skipping them.

    The plans of methods whose results this one needs (`plan.upstream`) run first; their
    summaries are in `summary.upstream`. They share the backend's workers: with slurm, the
    same jobs, cancelled once everything has run (or stopped).
    """
    with in_use(backend) as running:
        return _execute_plan(plan, backend=running, progress=progress, wait=wait)


def _execute_plan(
    plan: Plan, *, backend: Backend, progress: Progress | None, wait: bool
) -> Summary:
    progress = progress or SilentProgress()
    upstream = []
    for stage in plan.upstream:
        upstream.append(_execute_plan(stage, backend=backend, progress=progress, wait=wait))
        if upstream[-1].interrupted:
            stopped = Summary(method=plan.method, output_dir=plan.output_dir, upstream=upstream)
            stopped.interrupted, stopped.signal = True, upstream[-1].signal
            stopped.requested, stopped.pending = plan.requested, plan.to_run
            return stopped
    summary = Summary(
        method=plan.method,
        output_dir=plan.output_dir,
        requested=plan.requested,
        already_done=plan.already_done,
        skipped_failed=plan.skipped_failed,
        stale=plan.stale,
        retried=plan.retried,
        bad_rows=plan.bad_rows,
        groups=len(plan.groups),
        upstream=upstream,
    )
    clock = time.perf_counter()
    invocation = uuid.uuid4().hex[:12]
    store = ResultsStore(plan.output_dir)
    journals = JournalArea(store.output_dir, invocation)
    locks = GroupLocks(store.output_dir)
    numbering = ChunkTasks(journals.directory, invocation, str(store.output_dir))
    committer = _Committer(plan, store, summary)
    progress.started(plan)
    watch_chunks(progress, JournalWatcher(journals.directory))
    remaining = [group for group in plan.groups if group.observations]
    try:
        with sigterm_interrupts():
            while remaining:
                ready = [group for group in remaining if locks.acquire(group.key)]
                locked = [group for group in remaining if group not in ready]
                if not ready and wait:
                    progress.notice(_waiting(locked, locks))
                    locks.acquire(locked[0].key, wait=True)
                    ready, locked = locked[:1], locked[1:]
                if not ready:
                    break
                tasks = [
                    task
                    for group in ready
                    for task in committer.tasks(
                        numbering, group, _recheck(plan, group, store, summary)
                    )
                ]
                warm_workers = plan.warm_start.workers if plan.warm_start is not None else None
                summary.chunks += len(tasks)
                started = processes_started(backend, warm_workers or len(tasks))
                summary.workers = max(summary.workers, started)
                # A group is over, its lock released and its line said, as soon as the last
                # of its runs is in: the groups share the workers, but not their ends.
                unfinished: dict[str, set[str]] = {group.key: set() for group in ready}
                for task in tasks:
                    unfinished[task.group_key].update(item.key for item in task.observations)
                for group in ready:
                    if not unfinished[group.key]:  # nothing to hand out (refused upstream)
                        _group_over(group, unfinished, locks, progress, committer)
                for result in execute(tasks, numbering, backend, warm_workers):
                    committer.commit(result)
                    progress.chunk_done(result, summary)
                    runs = unfinished.get(result.group_key)
                    if runs:
                        runs.difference_update(o.observation for o in result.outcomes)
                        if not runs:
                            group = plan.group(result.group_key)
                            _group_over(group, unfinished, locks, progress, committer)
                for key in list(unfinished):  # whatever the results said, the work is over
                    _group_over(plan.group(key), unfinished, locks, progress, committer)
                remaining = locked
            for group in remaining:
                summary.locked += len(group.observations)
                summary.locked_groups.append(f"{group.key}: {locks.holder(group.key)}")
            # The workers started as the request was checked took chunks as soon as their
            # models were loaded; those loads are counted once the stage is over.
            if plan.warm_start is not None:
                summary.model_loads += plan.warm_start.finish()
    except KeyboardInterrupt as interrupt:
        if plan.warm_start is not None:
            plan.warm_start.cancel()
        summary.interrupted = True
        summary.signal = interrupt.signal_name if isinstance(interrupt, Terminated) else "SIGINT"
    except Exception:
        if plan.warm_start is not None:  # its workers are not stopped in the middle of a load
            plan.warm_start.finish()
        raise
    finally:
        locks.release_all()
        journals.close()
        store.close()
        done_meanwhile = (summary.already_done - plan.already_done) + (
            summary.skipped_failed - plan.skipped_failed
        )
        summary.pending = plan.to_run - summary.ran - summary.locked - done_meanwhile
        summary.wall_seconds = time.perf_counter() - clock
        progress.finished(summary)  # also when an error escapes: the bar and ticker stop
    return summary


def _group_over(
    group: Group,
    unfinished: dict[str, set[str]],
    locks: GroupLocks,
    progress: Progress,
    committer: _Committer,
) -> None:
    """Release a finished group's lock and say how it went, once."""
    if unfinished.pop(group.key, None) is None:
        return
    locks.release(group.key)
    progress.notice(committer.group_line(group))


def _recheck(plan: Plan, group: Group, store: ResultsStore, summary: Summary) -> list[Chunk]:
    """The group's chunks, less the runs another invocation finished since the plan was made,
    now that this invocation holds the group's lock."""
    chunks = plan.chunks_of(group.key)
    if plan.policy.force:
        return chunks
    stored = store.stored_runs([group.key])[group.key]
    sorted_runs = classify(group.observations, stored, plan.policy, group.current)
    summary.already_done += sorted_runs.done
    summary.skipped_failed += sorted_runs.failed
    if len(sorted_runs.todo) == len(group.observations):
        return chunks
    todo = {observation.key for observation in sorted_runs.todo}
    kept = [
        Chunk(chunk.group_key, chunk.index, tuple(o for o in chunk.observations if o.key in todo))
        for chunk in chunks
    ]
    return [chunk for chunk in kept if chunk.observations]


def _waiting(locked: Sequence[Group], locks: GroupLocks) -> str:
    return (
        f"waiting for {len(locked)} group(s) locked by another invocation "
        f"({locks.holder(locked[0].key)})"
    )


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP while a chunk commits, so that its transaction completes; the
    signal is delivered as soon as it has."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, *STOPPING_SIGNALS}
    signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


class _Committer:
    """Turns chunk results into store rows, one transaction per chunk, and counts them."""

    def __init__(self, plan: Plan, store: ResultsStore, summary: Summary) -> None:
        self.store = store
        self.summary = summary
        self.method_version = plan.method_version
        self.requested_at = plan.requested_at
        self.groups = {group.key: group for group in plan.groups}
        running = [group for group in plan.groups if group.observations]
        self.labels = group_labels(
            [group.key for group in running], [group.significant for group in running]
        )
        self._observations: dict[str, dict[str, Observation]] = {}
        self._counts: dict[str, list[int]] = {}

    def commit(self, result: ChunkResult) -> None:
        group = self.groups[result.group_key]
        observations = self._observations.get(group.key)
        if observations is None:
            observations = {obs.key: obs for obs in group.observations}
            self._observations[group.key] = observations
        records = [
            self._record(group, observations[outcome.observation], outcome)
            for outcome in result.outcomes
        ]
        try:
            with _signals_deferred():
                self.store.write(records)
        except sqlite3.Error as error:
            raise StoreWriteError(
                f"cannot write results to {self.store.path}: {error}; every result committed "
                "before this one is kept, run the same command again once it is writable"
            ) from None
        counts = self._counts.setdefault(group.key, [0, 0])
        self.summary.ran += len(records)
        self.summary.model_loads += int(result.model_loaded)
        if result.slurm_job:
            jobs = self.summary.slurm_jobs
            jobs[result.slurm_job] = jobs.get(result.slurm_job, 0) + 1
        for outcome in result.outcomes:
            if outcome.ok:
                self.summary.ok += 1
                counts[0] += 1
            else:
                self.summary.note_failure(outcome.observation, outcome.error or "")
                counts[1] += 1

    def group_line(self, group: Group) -> str:
        """`group 2/4 grid=…/grid-b.fits continuum_order=3 (KEY): 100 ok, 0 failed`: the group
        by what sets it apart from the plan's other groups (a lone group by its key alone), so
        that the line fits a terminal and a log line stays readable."""
        ok, failed = self._counts.get(group.key, [0, 0])
        label = self.labels.get(group.key, group.key)
        named = group.key if label == group.key else f"{label} ({group.key})"
        return f"group {named}: {ok} ok, {failed} failed"

    def tasks(self, numbering: ChunkTasks, group: Group, chunks: list[Chunk]) -> list[ChunkTask]:
        """The group's chunks as worker tasks, each observation with its inputs. A run whose
        upstream result failed fails here, saying so; one whose upstream run was not done
        (another invocation holds it) waits for a later invocation."""
        observations = [o for chunk in chunks for o in chunk.observations]
        inputs = (
            inputs_for(group, observations, self.store)
            if group.needs
            else {o.key: o.inputs for o in observations}
        )
        refused = [o.key for o in observations if isinstance(inputs[o.key], str)]
        if refused:
            # Not these runs' fault: once the upstream run succeeds they can be done.
            now = time.time()
            outcomes = [
                Outcome(key, None, str(inputs[key]), now, 0.0, FAULT_ENVIRONMENT) for key in refused
            ]
            self.commit(ChunkResult(f"upstream-{group.key}", group.key, outcomes))
        waiting = sum(1 for o in observations if inputs[o.key] is None)
        if waiting:
            self.summary.locked += waiting
            self.summary.locked_groups.append(f"{group.key}: waiting for {group.needs[0].method}")
        tasks = []
        for chunk in chunks:
            items = [
                WorkItem(o.key, o.path, value)
                for o in chunk.observations
                if isinstance(value := inputs[o.key], tuple)
            ]
            if items:
                tasks.append(
                    numbering.make(
                        group.key, group.method, group.options, items, group.model.files_state
                    )
                )
        return tasks

    def _record(self, group: Group, observation: Observation, outcome: Outcome) -> RunRecord:
        return RunRecord(
            group_key=group.key,
            observation=observation.key,
            method=group.method,
            method_version=self.method_version,
            options=group.significant,
            identifiers=dict(observation.identifiers) or None,
            input_path=observation.path,
            status="ok" if outcome.ok else "failed",
            result=outcome.result,
            error=outcome.error,
            started_at=outcome.started_at,
            duration_s=outcome.duration_s,
            astra_version=__version__,
            input_state=group.input_states.get(observation.key),
            model_state=group.model.digest if group.fingerprinted else None,
            fault=None if outcome.ok else (outcome.fault or FAULT_RUN),
            requested_at=self.requested_at,
            request_position=observation.position,
        )
