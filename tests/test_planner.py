"""The planner: requests -> groups by significant options -> chunks, skipping runs already done."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from astra_cli.engine.planner import (
    MAX_CHUNK_SIZE,
    MIN_TAIL_CHUNK,
    automatic_chunk_size,
    group_key,
    make_plan,
)
from astra_cli.engine.requests import RequestSet, sweep
from astra_cli.errors import UsageError
from astra_cli.io.identifiers import observation_from_path
from astra_cli.io.store import ResultsStore
from astra_cli.methods.base import Method, Param
from astra_cli.vocabulary import Observation, RunRecord, StoredRun


class MyAnalysisTask(Method):
    """The seed's example task, plus an insignificant option."""

    name = "my-analysis"
    a = Param(3)
    order = Param(5)
    n_threads = Param(1, significant=False)


class Lookup:
    """A status lookup that returns canned statuses and records every call."""

    def __init__(self, statuses: dict[str, dict[str, str]] | None = None) -> None:
        self.statuses = statuses or {}
        self.calls: list[list[str]] = []

    def __call__(self, keys):
        self.calls.append(list(keys))
        return {
            key: {obs: StoredRun(status) for obs, status in self.statuses.get(key, {}).items()}
            for key in keys
        }


def star(field: str, obj: str) -> Observation:
    return Observation(
        key=f"apStar:field={field},obj={obj}", path=f"/sas/{field}/apStar-{obj}.fits"
    )


def files(count: int, prefix: str = "spec") -> list[Observation]:
    return [observation_from_path(f"/data/{prefix}-{i:04d}.fits") for i in range(count)]


def key_of(**significant) -> str:
    return group_key(MyAnalysisTask.name, MyAnalysisTask.version, significant)


def keys(observations) -> list[str]:
    return [observation.key for observation in observations]


# --- grouping ------------------------------------------------------------------------------


def test_seed_example_gives_three_groups():
    s1 = star("250+00", "2M123456+123456")
    s2 = star("omegaCen", "2M003341+289732")
    s3 = star("250+00", "2M004562-1234872")
    requests = [
        RequestSet({"a": 3, "order": 5}, [s1]),
        RequestSet({"a": 3, "order": 10}, [s1]),
        RequestSet({"a": 3, "order": 5}, [s2]),
        RequestSet({"a": 3, "order": 10}, [s2]),
        RequestSet({"a": -1, "order": 5}, [s3]),
    ]
    plan = make_plan(MyAnalysisTask, requests, Lookup())

    assert len(plan.groups) == 3
    by_options = {(g.significant["a"], g.significant["order"]): g for g in plan.groups}
    assert keys(by_options[3, 5].observations) == [s1.key, s2.key]
    assert keys(by_options[3, 10].observations) == [s1.key, s2.key]
    assert keys(by_options[-1, 5].observations) == [s3.key]
    assert all(set(g.significant) == {"a", "order"} for g in plan.groups)
    assert plan.requested == plan.to_run == 5


def test_insignificant_option_does_not_split_a_group():
    first, second = files(2)
    requests = [
        RequestSet({"order": 5, "n_threads": 1}, [first]),
        RequestSet({"order": 5, "n_threads": 8}, [second]),
    ]
    plan = make_plan(MyAnalysisTask, requests, Lookup())

    assert len(plan.groups) == 1
    assert keys(plan.groups[0].observations) == [first.key, second.key]
    assert plan.groups[0].key == key_of(a=3, order=5)


def test_option_values_are_coerced_before_grouping():
    """ "10" from a command line and 10 from Python are the same run."""
    first, second = files(2)
    requests = [RequestSet({"order": "10"}, [first]), RequestSet({"order": 10}, [second])]
    plan = make_plan(MyAnalysisTask, requests, Lookup())

    assert len(plan.groups) == 1
    assert plan.groups[0].significant == {"a": 3, "order": 10}


# --- sweep ---------------------------------------------------------------------------------


def test_sweep_gives_every_combination():
    combinations = sweep({"order": [5, 10], "a": [3, -1]}, MyAnalysisTask)

    assert all(isinstance(combination, dict) for combination in combinations)
    assert len(combinations) == 4
    assert sorted((c["order"], c["a"]) for c in combinations) == [
        (5, -1),
        (5, 3),
        (10, -1),
        (10, 3),
    ]


def test_sweep_combines_single_values_with_swept_ones():
    combinations = sweep({"order": [5, 10], "n_threads": [4]}, MyAnalysisTask)

    assert sorted(combinations, key=lambda c: c["order"]) == [
        {"order": 5, "n_threads": 4},
        {"order": 10, "n_threads": 4},
    ]


def test_sweeping_an_insignificant_option_is_refused(words):
    with pytest.raises(UsageError, match=f"option {words.option('n_threads')} does not change"):
        sweep({"order": [5], "n_threads": [1, 2]}, MyAnalysisTask)


def test_repeating_an_insignificant_value_is_not_a_sweep():
    combinations = sweep({"order": [5], "n_threads": [2, 2]}, MyAnalysisTask)

    assert combinations
    assert all(c == {"order": 5, "n_threads": 2} for c in combinations)


def test_swept_plan_has_one_group_per_value():
    observations = files(3)
    requests = [
        RequestSet(options, observations) for options in sweep({"order": [5, 10]}, MyAnalysisTask)
    ]
    plan = make_plan(MyAnalysisTask, requests, Lookup())

    assert sorted(g.significant["order"] for g in plan.groups) == [5, 10]
    assert all(keys(g.observations) == keys(observations) for g in plan.groups)


# --- duplicates ----------------------------------------------------------------------------


def test_same_observation_twice_is_planned_once():
    (observation,) = files(1)
    twin = observation_from_path(observation.path)
    plan = make_plan(MyAnalysisTask, [RequestSet({}, [observation, twin])], Lookup())

    assert plan.requested == plan.to_run == 1
    assert [keys(chunk.observations) for chunk in plan.chunks] == [[observation.key]]


def test_observation_in_two_request_sets_of_one_group_is_planned_once():
    first, second, third = files(3)
    requests = [
        RequestSet({"order": 5}, [first, second]),
        RequestSet({"order": 5, "n_threads": 4}, [second, third]),
    ]
    plan = make_plan(MyAnalysisTask, requests, Lookup())

    assert len(plan.groups) == 1
    assert keys(plan.groups[0].observations) == keys([first, second, third])
    assert plan.requested == 3
    assert sum(len(chunk.observations) for chunk in plan.chunks) == 3


# --- stored statuses -----------------------------------------------------------------------


def test_runs_already_ok_are_dropped_and_counted():
    done, todo = files(2)
    key = key_of(a=3, order=5)
    plan = make_plan(
        MyAnalysisTask, [RequestSet({}, [done, todo])], Lookup({key: {done.key: "ok"}})
    )

    assert keys(plan.groups[0].observations) == [todo.key]
    assert plan.already_done == 1
    assert plan.requested == 2
    assert plan.to_run == 1
    assert keys(o for chunk in plan.chunks for o in chunk.observations) == [todo.key]


def test_failed_runs_are_skipped_without_retry_failed():
    failed, todo = files(2)
    key = key_of(a=3, order=5)
    plan = make_plan(
        MyAnalysisTask, [RequestSet({}, [failed, todo])], Lookup({key: {failed.key: "failed"}})
    )

    assert keys(plan.groups[0].observations) == [todo.key]
    assert plan.skipped_failed == 1
    assert plan.already_done == 0


def test_retry_failed_plans_failed_runs_but_not_ok_ones():
    done, failed, todo = files(3)
    key = key_of(a=3, order=5)
    lookup = Lookup({key: {done.key: "ok", failed.key: "failed"}})
    plan = make_plan(
        MyAnalysisTask, [RequestSet({}, [done, failed, todo])], lookup, retry_failed=True
    )

    assert keys(plan.groups[0].observations) == [failed.key, todo.key]
    assert plan.skipped_failed == 0
    assert plan.already_done == 1


def test_force_plans_everything_without_a_lookup():
    done, failed = files(2)
    lookup = Lookup({key_of(a=3, order=5): {done.key: "ok", failed.key: "failed"}})
    plan = make_plan(MyAnalysisTask, [RequestSet({}, [done, failed])], lookup, force=True)

    assert lookup.calls == []
    assert keys(plan.groups[0].observations) == [done.key, failed.key]
    assert plan.already_done == plan.skipped_failed == 0


def test_statuses_are_looked_up_in_one_call_with_every_group():
    requests = [
        RequestSet(options, files(4))
        for options in sweep({"order": [5, 10, 15], "a": [3, -1]}, MyAnalysisTask)
    ]
    lookup = Lookup()
    plan = make_plan(MyAnalysisTask, requests, lookup)

    assert len(lookup.calls) == 1
    assert sorted(lookup.calls[0]) == sorted(group.key for group in plan.groups)
    assert len(plan.groups) == 6


def test_statuses_of_one_group_do_not_affect_another():
    (observation,) = files(1)
    requests = [RequestSet({"order": 5}, [observation]), RequestSet({"order": 10}, [observation])]
    lookup = Lookup({key_of(a=3, order=5): {observation.key: "ok"}})
    plan = make_plan(MyAnalysisTask, requests, lookup)

    assert plan.group(key_of(a=3, order=10)).observations == [observation]
    assert plan.group(key_of(a=3, order=5)).observations == []
    assert plan.already_done == 1


def stored(observation: Observation, status: str) -> RunRecord:
    return RunRecord(
        group_key=key_of(a=3, order=5),
        observation=observation.key,
        method=MyAnalysisTask.name,
        method_version=MyAnalysisTask.version,
        options={"a": 3, "order": 5},
        identifiers=None,
        input_path=observation.path,
        status=status,
        result={"snr": 10.0} if status == "ok" else None,
        error=None if status == "ok" else "ValueError: boom",
        started_at=1.0,
        duration_s=0.5,
        astra_version="0.1.0",
    )


def test_plan_against_a_real_store(tmp_path):
    done, failed, todo = files(3)
    with ResultsStore(tmp_path / "out") as store:
        store.write([stored(done, "ok"), stored(failed, "failed")])
        plan = make_plan(MyAnalysisTask, [RequestSet({}, [done, failed, todo])], store.stored_runs)

    assert keys(plan.groups[0].observations) == [todo.key]
    assert (plan.already_done, plan.skipped_failed, plan.to_run) == (1, 1, 1)


# --- chunking ------------------------------------------------------------------------------


def three_groups() -> list[RequestSet]:
    """Three groups with disjoint observations, so a chunk that mixes groups shows."""
    return [
        RequestSet({"order": 5}, files(37, "five")),
        RequestSet({"order": 10}, files(5, "ten")),
        RequestSet({"order": 15}, files(100, "fifteen")),
    ]


@pytest.mark.parametrize("chunk_size", [None, 1, 7, 1000])
@pytest.mark.parametrize("jobs", [1, 3, 16])
def test_every_planned_run_is_in_exactly_one_chunk(jobs, chunk_size):
    plan = make_plan(MyAnalysisTask, three_groups(), Lookup(), jobs=jobs, chunk_size=chunk_size)

    chunked = keys(o for chunk in plan.chunks for o in chunk.observations)
    planned = keys(o for group in plan.groups for o in group.observations)
    assert sorted(chunked) == sorted(planned)
    assert len(chunked) == len(set(chunked)) == 142
    assert all(1 <= len(chunk.observations) <= plan.chunk_size for chunk in plan.chunks)


@pytest.mark.parametrize("jobs", [1, 4])
def test_a_chunk_never_mixes_groups(jobs):
    plan = make_plan(MyAnalysisTask, three_groups(), Lookup(), jobs=jobs, chunk_size=16)

    for chunk in plan.chunks:
        group = plan.group(chunk.group_key)
        assert set(keys(chunk.observations)) <= set(keys(group.observations))


def test_the_last_chunks_shrink_so_that_the_workers_finish_together():
    plan = make_plan(MyAnalysisTask, [RequestSet({}, files(2000))], Lookup(), jobs=2)

    lengths = [len(chunk.observations) for chunk in plan.chunks]
    assert lengths[0] == plan.chunk_size == automatic_chunk_size(2000, 2)
    assert lengths == sorted(lengths, reverse=True)
    assert max(lengths[-2:]) <= MIN_TAIL_CHUNK, "the last chunk of each worker is small"


def test_one_job_or_a_given_chunk_size_cuts_equal_chunks():
    one = make_plan(MyAnalysisTask, [RequestSet({}, files(100))], Lookup(), jobs=1)
    given = make_plan(MyAnalysisTask, [RequestSet({}, files(100))], Lookup(), jobs=4, chunk_size=30)

    assert [len(chunk.observations) for chunk in one.chunks] == [25] * 4
    assert [len(chunk.observations) for chunk in given.chunks] == [30, 30, 30, 10]


def test_chunk_size_override():
    plan = make_plan(MyAnalysisTask, [RequestSet({}, files(25))], Lookup(), chunk_size=10)

    assert plan.chunk_size == 10
    assert [len(chunk.observations) for chunk in plan.chunks] == [10, 10, 5]


def test_chunks_keep_the_requested_order():
    observations = files(25)
    plan = make_plan(MyAnalysisTask, [RequestSet({}, observations)], Lookup(), chunk_size=4)

    assert keys(o for chunk in plan.chunks for o in chunk.observations) == keys(observations)


def test_every_worker_gets_work():
    plan = make_plan(MyAnalysisTask, [RequestSet({}, files(50))], Lookup(), jobs=2)

    assert len(plan.chunks) >= 2


def test_chunks_cover_only_runs_left_to_do():
    observations = files(10)
    statuses = {key_of(a=3, order=5): {o.key: "ok" for o in observations[:6]}}
    plan = make_plan(MyAnalysisTask, [RequestSet({}, observations)], Lookup(statuses), jobs=4)

    assert sorted(keys(o for c in plan.chunks for o in c.observations)) == keys(observations[6:])


@pytest.mark.parametrize("chunk_size", [0, -1])
def test_chunk_size_below_one_is_refused(words, chunk_size):
    with pytest.raises(UsageError, match=words.argument("chunk_size")):
        make_plan(MyAnalysisTask, [RequestSet({}, files(3))], Lookup(), chunk_size=chunk_size)


@pytest.mark.parametrize(
    ("runs", "jobs"), [(0, 1), (1, 1), (1, 64), (50, 2), (10_000, 1), (10**7, 8), (5, 0)]
)
def test_automatic_chunk_size_is_bounded(runs, jobs):
    size = automatic_chunk_size(runs, jobs)

    assert 1 <= size <= MAX_CHUNK_SIZE


def test_automatic_chunk_size_caps_large_batches():
    assert automatic_chunk_size(10**7, 1) == MAX_CHUNK_SIZE


# --- group keys ----------------------------------------------------------------------------


def test_group_key_is_stable():
    first = group_key("m", "1", {"order": 5, "model": "/models/grid.fits"})
    again = group_key("m", "1", {"order": 5, "model": "/models/grid.fits"})
    reordered = group_key("m", "1", {"model": "/models/grid.fits", "order": 5})

    assert first == again == reordered


def test_group_key_is_the_same_in_another_process():
    """The store keeps keys across invocations, so they must not depend on hash seeds."""
    code = (
        "from astra_cli.engine.planner import group_key; "
        "print(group_key('m', '1', {'b': 'x', 'a': 5}))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("1", "2")
    }

    assert outputs == {group_key("m", "1", {"a": 5, "b": "x"})}


@pytest.mark.parametrize(
    ("method", "version", "significant"),
    [
        ("other", "1", {"a": 3, "order": 5}),
        ("m", "2", {"a": 3, "order": 5}),
        ("m", "1", {"a": 3, "order": 10}),
        ("m", "1", {"a": -1, "order": 5}),
        ("m", "1", {"a": 3}),
    ],
)
def test_group_key_changes_with_method_version_and_significant_options(
    method, version, significant
):
    assert group_key(method, version, significant) != group_key("m", "1", {"a": 3, "order": 5})


def test_new_method_version_plans_runs_done_by_the_old_one():
    (observation,) = files(1)

    class Bumped(MyAnalysisTask):
        name = "my-analysis"
        version = "2"

    lookup = Lookup({key_of(a=3, order=5): {observation.key: "ok"}})
    plan = make_plan(Bumped, [RequestSet({}, [observation])], lookup)

    assert plan.groups[0].observations == [observation]
    assert plan.already_done == 0
