"""A store that cannot take more data: a clear error, committed results intact.

SQLite reports a full disk as SQLITE_FULL ("database or disk is full"); capping the database's
page count makes SQLite itself raise exactly that error once the cap is reached, without
needing a small file system.
"""

from __future__ import annotations

import sqlite3

import pytest
from fits_factory import write_apstars

from astra_cli import api
from astra_cli.identifiers import observation_from_path
from astra_cli.runner import StoreWriteError
from astra_cli.store import ResultsStore


def test_full_store_stops_with_a_clear_error_and_keeps_what_was_committed(tmp_path):
    paths = write_apstars(tmp_path / "data", 40)
    out = tmp_path / "out"
    prepared = api.prepare(
        "snr", [observation_from_path(p) for p in paths], {}, output_dir=out, chunk_size=1
    )
    connection = prepared.store._connection
    (pages,) = connection.execute("PRAGMA page_count").fetchone()
    connection.execute(f"PRAGMA max_page_count = {pages + 2}")

    with pytest.raises(StoreWriteError, match="database or disk is full") as raised:
        api.execute_plan(prepared, backend="sequential", jobs=1)
    prepared.store.close()

    assert str(out / "astra.sqlite") in str(raised.value)
    assert int(raised.value.exit_code) != 0
    with sqlite3.connect(out / "astra.sqlite") as check:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with ResultsStore(out) as store:
        kept = store.count(status="ok")
    assert 0 < kept < 40, "what was committed before the disk filled is kept"
    rerun = api.run("snr", paths, output_dir=out, backend="sequential")
    assert rerun.ran == 40 - kept
