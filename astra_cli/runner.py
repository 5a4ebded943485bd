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

from astra_cli.backends import Backend
from astra_cli.errors import AstraError
from astra_cli.executor import ChunkResult, ChunkTask, ChunkTasks, execute
from astra_cli.exit_codes import ExitCode
from astra_cli.identifiers import Observation
from astra_cli.journal import JournalArea
from astra_cli.locks import GroupLocks
from astra_cli.planner import Chunk, Group, make_chunks
from astra_cli.progress import Progress, SilentProgress
from astra_cli.store import ResultsStore, RunRecord
from astra_cli.summary import Summary
from astra_cli.version import __version__


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered like Ctrl-C so that the same code keeps what finished."""


class StoreWriteError(AstraError):
    """The store refused a write (disk full, read-only): stop, keep what was committed."""

    exit_code = ExitCode.RUNS_FAILED


def execute_plan(
    prepared,
    *,
    backend: str | Backend = "loky",
    jobs: int | None = None,
    progress: Progress | None = None,
    wait: bool = False,
    force: bool = False,
    retry_failed: bool = False,
) -> Summary:
    """Run every group of the plan; returns the Summary (its exit_code is the CLI's).

    backend
        A backend name (see `astra_cli.backends.BACKENDS`) run with `jobs` workers, or a
        `Backend` (a dask scheduler, say).
    force, retry_failed
        As given to the planner: they decide which runs another invocation finished while this
        one waited for a lock still count as to do.
    """
    from astra_cli.api import default_jobs

    if not isinstance(backend, Backend):
        backend = Backend(backend, jobs or default_jobs())
    plan, store = prepared.plan, prepared.store
    progress = progress or SilentProgress()
    summary = Summary(
        method=plan.method,
        output_dir=str(store.output_dir),
        requested=plan.requested,
        already_done=plan.already_done,
        skipped_failed=plan.skipped_failed,
        bad_rows=prepared.bad_rows,
        groups=len(plan.groups),
    )
    clock = time.perf_counter()
    invocation = uuid.uuid4().hex[:12]
    journals = JournalArea(store.output_dir, invocation)
    locks = GroupLocks(store.output_dir)
    numbering = ChunkTasks(journals.directory, invocation)
    committer = _Committer(prepared, summary)
    progress.started(plan)
    remaining = [group for group in plan.groups if group.observations]
    try:
        with _sigterm_interrupts():
            while remaining:
                ready = [group for group in remaining if locks.acquire(group.key)]
                locked = [group for group in remaining if group not in ready]
                if not ready and wait:
                    progress.notice(_waiting(locked, locks))
                    locks.acquire(locked[0].key, wait=True)
                    ready, locked = locked[:1], locked[1:]
                if not ready:
                    break
                groups = [_refresh(group, store, summary, force, retry_failed) for group in ready]
                chunks = make_chunks(groups, plan.chunk_size)
                summary.chunks += len(chunks)
                tasks = [committer.task(numbering, chunk) for chunk in chunks]
                for result in execute(tasks, numbering, backend):
                    committer.commit(result)
                    progress.chunk_done(result, summary)
                for group in ready:
                    locks.release(group.key)
                    progress.notice(committer.group_line(group.key))
                remaining = locked
            for group in remaining:
                summary.locked += len(group.observations)
                summary.locked_groups.append(f"{group.key}: {locks.holder(group.key)}")
    except KeyboardInterrupt as interrupt:
        summary.interrupted = True
        summary.signal = "SIGTERM" if isinstance(interrupt, Terminated) else "SIGINT"
    finally:
        locks.release_all()
        journals.close()
        done_meanwhile = (summary.already_done - plan.already_done) + (
            summary.skipped_failed - plan.skipped_failed
        )
        summary.pending = plan.to_run - summary.ran - summary.locked - done_meanwhile
        summary.wall_seconds = time.perf_counter() - clock
    progress.finished(summary)
    return summary


def _refresh(
    group: Group, store: ResultsStore, summary: Summary, force: bool, retry_failed: bool
) -> Group:
    """The group's runs still to do now that this invocation holds its lock: another one may
    have finished some since the plan was made."""
    if force:
        return group
    statuses = store.statuses([group.key])[group.key]
    todo: list[Observation] = []
    for observation in group.observations:
        status = statuses.get(observation.key)
        if status == "ok":
            summary.already_done += 1
        elif status == "failed" and not retry_failed:
            summary.skipped_failed += 1
        else:
            todo.append(observation)
    if len(todo) == len(group.observations):
        return group
    return Group(group.key, group.method, group.options, group.significant, todo)


def _waiting(locked: Sequence[Group], locks: GroupLocks) -> str:
    return (
        f"waiting for {len(locked)} group(s) locked by another invocation "
        f"({locks.holder(locked[0].key)})"
    )


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """While running, SIGTERM interrupts like Ctrl-C (only the main thread can set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while a chunk commits, so that its transaction completes; the
    signal is delivered as soon as it has."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


class _Committer:
    """Turns chunk results into store rows, one transaction per chunk, and counts them."""

    def __init__(self, prepared, summary: Summary) -> None:
        self.store = prepared.store
        self.summary = summary
        self.method_version = prepared.method_class.version
        self.groups = {group.key: group for group in prepared.plan.groups}
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
        for outcome in result.outcomes:
            if outcome.ok:
                self.summary.ok += 1
                counts[0] += 1
            else:
                self.summary.note_failure(outcome.observation, outcome.error or "")
                counts[1] += 1

    def group_line(self, group_key: str) -> str:
        group = self.groups[group_key]
        ok, failed = self._counts.get(group_key, [0, 0])
        options = " ".join(f"{name}={value}" for name, value in group.significant.items())
        described = f"{group.method} {options}".strip()
        return f"group {group_key} ({described}): {ok} ok, {failed} failed"

    def task(self, numbering: ChunkTasks, chunk: Chunk) -> ChunkTask:
        group = self.groups[chunk.group_key]
        pairs = [(observation.key, observation.path) for observation in chunk.observations]
        return numbering.make(chunk.group_key, group.method, group.options, pairs)

    def _record(self, group: Group, observation: Observation, outcome) -> RunRecord:
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
        )
