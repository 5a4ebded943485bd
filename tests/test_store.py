"""The results store: one SQLite file per output directory, one row per run, atomic writes."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import replace

import pytest

from astra_cli.errors import UsageError
from astra_cli.io.store import SCHEMA_VERSION, STORE_FILENAME, ResultsStore
from astra_cli.vocabulary import RunRecord


def ok(observation: str = "path:/data/a.fits", group: str = "g1", **changes) -> RunRecord:
    record = RunRecord(
        group_key=group,
        observation=observation,
        method="snr",
        method_version="1",
        options={"order": 5, "model": "/models/grid.fits", "fast": True},
        identifiers={"release": "dr17", "obj": "2M00000000+0000000"},
        input_path="/data/a.fits",
        status="ok",
        result={"snr": 101.25, "n_pixels": 8000, "flag": False, "note": "fine"},
        error=None,
        started_at=1_700_000_000.125,
        duration_s=0.0625,
        astra_version="0.1.0",
    )
    return replace(record, **changes)


def failed(observation: str = "path:/data/b.fits", group: str = "g1", **changes) -> RunRecord:
    defaults = {
        "status": "failed",
        "result": None,
        "error": "ValueError: every pixel is masked",
        "identifiers": None,
    }
    return ok(observation, group, **{**defaults, **changes})


def by_observation(store: ResultsStore, **filters) -> dict[str, RunRecord]:
    return {record.observation: record for record in store.records(**filters)}


@pytest.fixture
def store(tmp_path):
    with ResultsStore(tmp_path / "out") as opened:
        yield opened


# --- opening -------------------------------------------------------------------------------


def test_opening_creates_directory_and_database(tmp_path):
    output = tmp_path / "deep" / "out"
    with ResultsStore(output) as store:
        assert store.path == output / STORE_FILENAME

    assert output.is_dir()
    assert (output / STORE_FILENAME).is_file()


def test_reopening_keeps_rows(tmp_path):
    with ResultsStore(tmp_path) as store:
        store.write([ok(), failed()])

    with ResultsStore(tmp_path) as reopened:
        assert reopened.count() == 2
        assert by_observation(reopened) == {r.observation: r for r in (ok(), failed())}


def test_database_is_in_wal_mode(tmp_path):
    ResultsStore(tmp_path).close()

    with closing(sqlite3.connect(tmp_path / STORE_FILENAME)) as connection:
        (mode,) = connection.execute("PRAGMA journal_mode").fetchone()
    assert mode.lower() == "wal"


def test_another_connection_reads_while_the_store_is_open(store):
    store.write([ok()])

    with closing(sqlite3.connect(store.path)) as connection:
        (count,) = connection.execute("SELECT COUNT(*) FROM runs").fetchone()
    assert count == 1


def test_a_snapshot_reads_the_runs_as_they_were_while_another_invocation_writes(store):
    store.write([ok()])

    with ResultsStore(store.output_dir, read_only=True) as reader, reader.snapshot():
        first = list(reader.records())
        store.write([ok("path:/data/c.fits"), failed()])  # the writer is not kept waiting
        again = list(reader.records())
    assert again == first and len(first) == 1
    with ResultsStore(store.output_dir, read_only=True) as reader:
        assert len(list(reader.records())) == 3


# --- writing and reading -------------------------------------------------------------------


def test_write_then_records_round_trips_every_field(store):
    written = [ok(), failed(), ok("apStar:obj=2M1,release=dr17", group="g2", input_path="/x.fits")]

    assert store.write(written) == 3
    assert by_observation(store) == {record.observation: record for record in written}


def test_failed_run_keeps_its_error_and_no_result(store):
    store.write([failed()])

    (record,) = store.records()
    assert record.status == "failed"
    assert record.result is None
    assert record.error == "ValueError: every pixel is masked"


def test_records_and_count_filter_by_method_and_status(store):
    store.write(
        [
            ok("o1"),
            ok("o2"),
            failed("o3"),
            ok("o4", group="g2", method="ferre"),
            failed("o5", group="g2", method="ferre"),
        ]
    )

    assert store.count() == 5
    assert store.count(method="snr") == 3
    assert store.count(status="failed") == 2
    assert store.count(method="ferre", status="ok") == 1
    assert store.count(method="nothing") == 0
    assert set(by_observation(store, method="snr", status="ok")) == {"o1", "o2"}
    assert set(by_observation(store, status="failed")) == {"o3", "o5"}


def test_writing_nothing_writes_nothing(store):
    assert store.write([]) == 0
    assert store.count() == 0


def test_rewriting_a_run_replaces_it(store):
    """How --force and --retry-failed overwrite earlier results."""
    store.write([ok("o1")])
    store.write([failed("o1", error="RuntimeError: second try")])

    (record,) = store.records()
    assert store.count() == 1
    assert (record.status, record.result, record.error) == (
        "failed",
        None,
        "RuntimeError: second try",
    )
    assert statuses(store, ["g1"]) == {"g1": {"o1": "failed"}}


def test_same_observation_in_two_groups_is_two_runs(store):
    store.write([ok("o1", group="g1"), ok("o1", group="g2")])

    assert store.count() == 2


# --- statuses ------------------------------------------------------------------------------


def statuses(store, group_keys):
    return {
        key: {observation: run.status for observation, run in runs.items()}
        for key, runs in store.stored_runs(group_keys).items()
    }


def test_statuses_by_group(store):
    store.write([ok("o1"), failed("o2"), ok("o1", group="g2"), ok("o3", group="other")])

    assert statuses(store, ["g1", "g2", "empty"]) == {
        "g1": {"o1": "ok", "o2": "failed"},
        "g2": {"o1": "ok"},
        "empty": {},
    }


def test_statuses_of_no_groups(store):
    store.write([ok()])

    assert statuses(store, []) == {}


def test_statuses_of_many_groups_in_one_call(store):
    store.write([ok(f"o{i}", group=f"g{i}") for i in range(0, 2000, 7)])
    group_keys = [f"g{i}" for i in range(2000)]

    found = statuses(store, group_keys)

    assert set(found) == set(group_keys)
    assert sum(len(runs) for runs in found.values()) == len(range(0, 2000, 7))
    assert found["g7"] == {"o7": "ok"}


# --- atomic writes -------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), object()])
def test_unencodable_result_writes_nothing_of_its_batch(store, bad):
    store.write([ok("before")])

    with pytest.raises((ValueError, TypeError)):
        store.write([ok("first"), ok("bad", result={"snr": bad}), ok("last")])

    assert set(by_observation(store)) == {"before"}


def test_batch_rejected_by_the_database_is_rolled_back(store):
    store.write([ok("before")])

    with pytest.raises(sqlite3.IntegrityError):
        store.write([ok("first"), ok("bad", status="pending"), ok("last")])

    assert set(by_observation(store)) == {"before"}


def test_store_stays_writable_after_a_failed_write(store):
    with pytest.raises(sqlite3.IntegrityError):
        store.write([ok("first"), ok("bad", status="pending")])

    store.write([ok("first")])

    with closing(sqlite3.connect(store.path)) as other:
        (count,) = other.execute("SELECT COUNT(*) FROM runs").fetchone()
    assert count == 1


# --- refusing to open ----------------------------------------------------------------------


@pytest.mark.parametrize("under", ["file/out", "file"])
def test_unusable_output_directory_is_a_usage_error(words, tmp_path, under):
    (tmp_path / "file").write_text("not a directory")
    output = tmp_path / under

    with pytest.raises(UsageError) as raised:
        ResultsStore(output)

    message = str(raised.value)
    assert str(output) in message
    if under == "file":  # a file named as the directory itself: said in those words
        assert f"{words.argument('output_dir')} {output} is a file" in message
    else:
        assert f"choose a writable directory with {words.argument('output_dir')}" in message


def test_database_path_taken_by_a_directory_is_a_usage_error(words, tmp_path):
    (tmp_path / STORE_FILENAME).mkdir()

    with pytest.raises(UsageError, match=words.argument("output_dir")):
        ResultsStore(tmp_path)


def test_store_from_a_newer_astra_is_refused(tmp_path):
    with ResultsStore(tmp_path) as store:
        store.write([ok()])
    with closing(sqlite3.connect(tmp_path / STORE_FILENAME)) as connection:
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")

    with pytest.raises(UsageError) as raised:
        ResultsStore(tmp_path)

    assert str(tmp_path / STORE_FILENAME) in str(raised.value)
    with closing(sqlite3.connect(tmp_path / STORE_FILENAME)) as connection:
        (version,) = connection.execute("PRAGMA user_version").fetchone()
        (count,) = connection.execute("SELECT COUNT(*) FROM runs").fetchone()
    assert (version, count) == (SCHEMA_VERSION + 1, 1)


def test_new_store_records_the_schema_version(tmp_path):
    ResultsStore(tmp_path).close()

    with closing(sqlite3.connect(tmp_path / STORE_FILENAME)) as connection:
        (version,) = connection.execute("PRAGMA user_version").fetchone()
    assert version == SCHEMA_VERSION
