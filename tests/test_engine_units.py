"""Fast unit tests of the engine's seams, beside the real-process tests of workers, cron and
signals: what a chunk's journal says after a worker died, how recovery splits a chunk, group
locks between holders, the re-check of a group once its lock is taken, and the worker's check
of results."""

from __future__ import annotations

import os
import socket
import threading
import time

import numpy as np
import pytest
from fits_factory import write_apstars

from astra_cli import api
from astra_cli.engine.backends import Backend, resolve_jobs
from astra_cli.engine.journal import ChunkJournal, read_journal
from astra_cli.engine.locks import GroupLocks
from astra_cli.engine.pool import ChunkTasks, recover
from astra_cli.engine.runner import execute_plan
from astra_cli.engine.worker import WorkItem, clean_result
from astra_cli.errors import UsageError
from astra_cli.io.identifiers import observation_from_path
from astra_cli.io.store import ResultsStore
from astra_cli.version import __version__
from astra_cli.vocabulary import FAULT_ENVIRONMENT, FAULT_RUN, Observation, Outcome, RunRecord

KEYS = ("obs-a", "obs-b", "obs-c", "obs-d")


def chunk(tmp_path, numbering=None):
    numbering = numbering or ChunkTasks(tmp_path, "inv", str(tmp_path))
    items = [WorkItem(key, f"/{key}.fits") for key in KEYS]
    return numbering, numbering.make("group", "snr", {}, items, "")


def done(key: str) -> Outcome:
    return Outcome(key, {"snr": 1.0}, None, time.time(), 0.1)


# --- journals and recovery ------------------------------------------------------------------


def test_a_journal_says_what_finished_and_what_was_in_hand(tmp_path):
    _, task = chunk(tmp_path)
    journal = ChunkJournal(task.journal)
    journal.loading()
    journal.loaded()
    journal.started(list(KEYS[:2]))
    journal.finished(done(KEYS[0]))
    journal.close()
    with open(task.journal, "a") as torn:
        torn.write('{"finished": {"observ')  # the worker died mid-line

    state = read_journal(task.journal)

    assert state.exists and not state.loading
    assert [outcome.observation for outcome in state.finished] == [KEYS[0]]
    assert state.finished[0].result == {"snr": 1.0}
    assert state.in_progress == [KEYS[1]]


def test_no_journal_means_the_chunk_never_started(tmp_path):
    assert not read_journal(tmp_path / "none.jsonl").exists


def test_a_worker_death_keeps_the_finished_retries_the_rest_and_suspects_the_run_in_hand(
    tmp_path,
):
    numbering, task = chunk(tmp_path)
    journal = ChunkJournal(task.journal)
    journal.started([KEYS[0]])
    journal.finished(done(KEYS[0]))
    journal.started([KEYS[1]])
    journal.close()

    (result,), retry, suspects = recover([task], numbering, died="exit codes {-9}")

    assert [(o.observation, o.ok) for o in result.outcomes] == [(KEYS[0], True)]
    (again,) = retry
    assert [item.key for item in again.observations] == list(KEYS[2:])
    assert again.chunk_id != task.chunk_id and again.group_key == task.group_key
    (suspect,) = suspects
    assert [item.key for item in suspect.observations] == [KEYS[1]]
    assert not os.path.exists(task.journal)


def test_a_run_that_kills_its_worker_alone_fails_as_its_own_fault(tmp_path):
    numbering, task = chunk(tmp_path)
    journal = ChunkJournal(task.journal)
    journal.started([KEYS[0]])
    journal.close()

    (result,), retry, suspects = recover([task], numbering, died="exit codes {-9}", alone=True)

    (failed,) = result.outcomes
    assert failed.observation == KEYS[0] and failed.fault == FAULT_RUN
    assert "the second time alone: exit codes {-9}" in failed.error
    assert suspects == [] and [i.key for i in retry[0].observations] == list(KEYS[1:])


def test_a_worker_death_in_a_batch_suspects_each_run_of_the_batch_on_its_own(tmp_path):
    numbering, task = chunk(tmp_path)
    journal = ChunkJournal(task.journal)
    journal.started(list(KEYS))  # analyse_batch: every observation in hand at once
    journal.close()

    (result,), retry, suspects = recover([task], numbering, died="killed")

    assert result.outcomes == [] and retry == []
    assert [[item.key for item in s.observations] for s in suspects] == [[key] for key in KEYS]


def test_a_death_while_loading_the_model_runs_the_chunk_again(tmp_path):
    """The pool's death takes every busy worker: the one loading may not be the culprit."""
    numbering, task = chunk(tmp_path)
    journal = ChunkJournal(task.journal)
    journal.loading()
    journal.close()

    (result,), retry, suspects = recover([task], numbering, died="out of memory")

    assert result.outcomes == [] and suspects == []
    assert [item.key for item in retry[0].observations] == list(KEYS)


def test_a_death_while_loading_the_model_alone_fails_every_unfinished_run(tmp_path):
    numbering, task = chunk(tmp_path)
    journal = ChunkJournal(task.journal)
    journal.loading()
    journal.close()

    (result,), retry, suspects = recover([task], numbering, died="out of memory", alone=True)

    assert all("died while loading the model: out of memory" in o.error for o in result.outcomes)
    assert all(o.fault == FAULT_ENVIRONMENT for o in result.outcomes)
    assert len(result.outcomes) == len(KEYS) and retry == [] and suspects == []


def test_an_interruption_keeps_what_finished_and_fails_nothing(tmp_path):
    numbering, task = chunk(tmp_path)
    journal = ChunkJournal(task.journal)
    journal.started([KEYS[0]])
    journal.finished(done(KEYS[0]))
    journal.started([KEYS[1]])
    journal.close()

    (result,), retry, suspects = recover([task], numbering, died=None)

    assert [o.observation for o in result.outcomes] == [KEYS[0]]
    assert retry == [] and suspects == []


def test_a_chunk_without_a_journal_is_run_again_whole(tmp_path):
    numbering, task = chunk(tmp_path)

    results, retry, suspects = recover([task], numbering, died="killed")

    assert results == [] and retry == [task] and suspects == []


# --- group locks ------------------------------------------------------------------------------


def test_a_group_lock_is_held_against_other_holders_and_says_who_holds_it(tmp_path):
    first, second = GroupLocks(tmp_path), GroupLocks(tmp_path)

    assert first.acquire("g1")
    assert not second.acquire("g1")
    assert second.acquire("g2"), "other groups are free"
    assert second.holder("g1") == f"{socket.gethostname()} pid {os.getpid()}"
    first.release("g1")
    assert second.acquire("g1")
    second.release_all()
    assert first.acquire("g1") and first.acquire("g2")


def test_waiting_for_a_lock_returns_once_its_holder_lets_go(tmp_path):
    holder, waiter = GroupLocks(tmp_path), GroupLocks(tmp_path)
    holder.acquire("g")
    got = threading.Event()
    thread = threading.Thread(target=lambda: waiter.acquire("g", wait=True) and got.set())
    thread.start()
    time.sleep(0.2)
    assert not got.is_set()
    holder.release("g")
    thread.join(5)
    assert got.is_set()


# --- the re-check once a group's lock is taken ------------------------------------------------


def record(observation, plan, status="ok") -> RunRecord:
    group = plan.groups[0]
    return RunRecord(
        group.key, observation.key, "snr", plan.method_version, group.significant, None,
        observation.path, status, {"snr": 0.0} if status == "ok" else None,
        None if status == "ok" else "failed elsewhere", time.time(), 0.0, __version__,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("force", "retry_failed", "ran", "done", "skipped"),
    [(False, False, 3, 2, 1), (False, True, 4, 2, 0), (True, False, 6, 0, 0)],
)
def test_runs_finished_meanwhile_by_another_invocation_are_not_run_again(
    tmp_path, force, retry_failed, ran, done, skipped
):
    observations = [observation_from_path(p) for p in write_apstars(tmp_path / "data", 6)]
    plan = api.prepare(
        "snr", observations, {}, output_dir=tmp_path / "out", force=force,
        retry_failed=retry_failed, chunk_size=2,
    )  # fmt: skip
    assert plan.to_run == 6
    with ResultsStore(tmp_path / "out") as store:  # another invocation, while this one waited
        store.write([record(observations[0], plan), record(observations[3], plan)])
        store.write([record(observations[5], plan, status="failed")])

    summary = execute_plan(plan, backend=Backend("sequential", 1))

    assert (summary.ran, summary.already_done, summary.skipped_failed) == (ran, done, skipped)
    assert summary.pending == 0 and summary.exit_code == (1 if skipped else 0)


# --- backends and the worker's check of results -------------------------------------------------


def test_backends_are_checked_and_jobs_resolved_once(words):
    assert resolve_jobs(3) == 3
    assert resolve_jobs(None) == len(os.sched_getaffinity(0))
    assert Backend.chosen("loky", None).jobs == resolve_jobs(None)
    with pytest.raises(UsageError, match=f"{words.argument('backend')} must be one of"):
        Backend("celery")
    with pytest.raises(UsageError, match=f"go with {words.argument('backend')} dask"):
        Backend("loky", 1, scheduler="tcp://head:8786")


def test_results_are_made_storable_or_refused():
    cleaned = clean_result({"a": np.float32(1.5), "b": np.int64(2), "c": float("nan"), "d": True})
    assert cleaned == {"a": 1.5, "b": 2, "c": None, "d": True}
    assert type(cleaned["b"]) is int
    with pytest.raises(TypeError, match="not an array of shape"):
        clean_result({"flux": np.ones(3)})
    with pytest.raises(TypeError, match="not a dict of columns"):
        clean_result([1.0])


def test_an_observations_inputs_are_part_of_its_key_and_come_off_again():
    # A file name may hold '|' itself: only the inputs' own suffix comes off.
    plain = Observation("path:/data/a|b/apVisit-1.fits", "/data/a|b/apVisit-1.fits")
    moving = plain.with_inputs((("v_rad", -12.5),))
    assert moving.key == "path:/data/a|b/apVisit-1.fits|v_rad=-12.5"
    assert moving.bare_key == plain.bare_key == plain.key
    assert plain.with_inputs(()) is plain
