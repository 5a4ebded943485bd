"""`astra results` writes its table a block of rows at a time, in memory that does not grow
with the store: the file is the one a single table makes, and a failed export leaves the table
there as it was, and no part of a new one."""

from __future__ import annotations

import os
import random
import re
import resource
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import replace

import numpy as np
import pytest
from astropy.table import Table
from conftest import astra_subprocess
from typer.testing import CliRunner

import astra_cli
from astra_cli.cli.app import app
from astra_cli.exit_codes import ExitCode
from astra_cli.io import tablewriter
from astra_cli.io.export import StoreChanged, TableLayout, table_blocks
from astra_cli.io.store import ResultsStore
from astra_cli.tables import export_results
from astra_cli.vocabulary import RunRecord

runner = CliRunner()
RUNS = 90


def varied_run(index: int, rng: random.Random) -> RunRecord:
    """Runs whose columns come and go and change type along the store: identifiers of
    apStar and apVisit files and none, a result column that is a float in some runs and text
    in others, one that mixes bools and integers (text), an integer sometimes missing
    (masked), text beyond ASCII, an integer too large for int64 (float), failed runs with no
    result, an option named like a result, and a mapping-valued option."""
    half = index >= RUNS // 2
    identifiers: dict[str, str] | None = {"telescope": "apo25m", "obj": f"2M{index:08d}"}
    if index % 3 == 0:
        identifiers = {**(identifiers or {}), "mjd": str(59000 + index % 5), "fiber": "12"}
    if index % 11 == 0:
        identifiers = None
    failed = index % 13 == 0
    result: dict | None = None
    if not failed:
        result = {"teff": rng.uniform(3500, 7000), "flags": index % 4, "good": index % 2 == 0}
        if index % 4 == 0:
            result["note"] = "ö" * (index % 5) + "x" * (index % 17)
        if index % 6 == 0:
            result["mixed"] = 1.5 if index % 12 else "text"
            result["boolint"] = True if index % 5 == 0 else index
        result["sometimes"] = index if index % 10 else None
        if index == 5:
            result["huge"] = 2**70
    options = {"order": index % 3, "upstream": {"v_rad": f"rv:{index % 3}"}}
    if index % 3 == 1:
        options["teff"] = 5000.0
    return RunRecord(
        group_key=f"{'h' if half else 'g'}{index % 3}",
        observation=f"obs{index % (RUNS // 2)}",
        method="m",
        method_version="1",
        options=options,
        identifiers=identifiers,
        input_path=f"/data/spectres-reçus/{index}.fits" if index % 9 == 0 else f"/d/{index}.fits",
        status="failed" if failed else "ok",
        result=result,
        error=f"boom {index}\nsecond line" if failed else None,
        started_at=1.7e9 + index * 10,
        duration_s=rng.uniform(0, 2) if index % 7 else None,
        astra_version="0.1.0",
    )


@pytest.fixture(scope="module")
def varied_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("varied")
    rng = random.Random(3)
    with ResultsStore(out) as store:
        store.write([varied_run(index, rng) for index in range(RUNS)])
    return out


def _exported(store, target, *args):
    args = ("--status", "all", *args, "-o", str(target), "--output-dir", str(store))
    result = runner.invoke(app, ["results", "m", *args])
    assert result.exit_code == 0, result.output
    # The time of writing, in the FITS header and the ECSV metadata, is all that may differ.
    return re.sub(rb"(CREATED = '|created: ')[0-9T:+-]{25}", rb"\1", target.read_bytes())


@pytest.mark.parametrize("ending", ["fits", "csv", "tsv", "ecsv", "vot"])
@pytest.mark.parametrize("args", [(), ("--latest-per-observation",)], ids=["all", "latest"])
def test_a_table_written_in_blocks_is_the_table_written_whole(
    varied_store, tmp_path, monkeypatch, ending, args
):
    whole = _exported(varied_store, tmp_path / f"whole.{ending}", *args)
    monkeypatch.setattr(tablewriter, "BLOCK_ROWS", 7)
    in_blocks = _exported(varied_store, tmp_path / f"blocks.{ending}", *args)

    assert in_blocks == whole
    assert not list(tmp_path.glob("*.partial"))


def test_the_exported_table_is_the_one_the_python_api_gives(varied_store, tmp_path, monkeypatch):
    monkeypatch.setattr(tablewriter, "BLOCK_ROWS", 7)
    _exported(varied_store, tmp_path / "blocks.ecsv")
    written = Table.read(tmp_path / "blocks.ecsv")
    table = astra_cli.results("m", varied_store, status="all")

    assert written.colnames == table.colnames and len(written) == len(table) == RUNS
    for name in table.colnames:
        expected, got = table[name], written[name]
        assert got.dtype.kind == expected.dtype.kind, name
        if got.dtype.kind == "U":  # ECSV reads an empty text as missing
            assert list(np.ma.filled(got, "")) == list(np.ma.filled(expected, "")), name
            continue
        assert np.array_equal(np.ma.getmaskarray(got), np.ma.getmaskarray(expected)), name
        assert list(np.ma.filled(got, 0)) == list(np.ma.filled(expected, 0)), name
    assert written["mixed"].dtype.kind == "U" and set(written["mixed"].compressed()) == {
        "1.5",
        "text",
    }
    assert written["huge"].dtype.kind == "f" and written["sometimes"].dtype.kind == "i"


def _file_size_limit(limit: int):
    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limited


def test_a_failed_export_leaves_the_table_there_as_it_was(varied_store, tmp_path):
    target = tmp_path / "m.vot"
    first = astra_subprocess("results", "m", "-o", str(target), "--output-dir", str(varied_store))
    assert first.returncode == 0, first.stderr
    before = target.read_bytes()

    # A file system that fills up at 40 KB: room for SQLite's 32 KB shared-memory file, short
    # of the table of every run.
    full = astra_subprocess(
        "results", "m", "--status", "all", "-o", str(target), "--output-dir", str(varied_store),
        preexec_fn=_file_size_limit(40_000),
    )  # fmt: skip

    assert full.returncode == 1, full.stderr
    assert f"cannot write {target}: File too large; no table was written" in full.stderr
    assert "(the one there is as it was)" in full.stderr and "Traceback" not in full.stderr
    assert target.read_bytes() == before
    assert sorted(tmp_path.iterdir()) == [target], "nothing half-written is left"


def test_an_out_file_that_cannot_be_made_is_refused(varied_store, tmp_path):
    target = tmp_path / "no-such-folder" / "m.fits"
    result = runner.invoke(
        app, ["results", "m", "-o", str(target), "--output-dir", str(varied_store)]
    )
    assert result.exit_code == 2
    assert f"--out {target}: cannot write there: No such file or directory" in result.stderr


def test_an_export_tells_how_far_each_reading_of_the_store_got(varied_store, tmp_path, monkeypatch):
    monkeypatch.setattr(tablewriter, "BLOCK_ROWS", 7)
    heard: dict[str, list[tuple[int, int]]] = {}
    target = tmp_path / "m.fits"

    exported = export_results(
        "m", varied_store, str(target), "fits", status="all",
        progress=lambda stage, done, total: heard.setdefault(stage, []).append((done, total)),
    )  # fmt: skip

    assert exported.rows == RUNS and len(Table.read(target)) == RUNS
    # The table's columns, then a text column that held numbers (`mixed`), then the rows.
    assert list(heard) == ["reading the runs", "measuring text columns", f"writing {target}"]
    for reports in heard.values():
        assert reports[0] == (0, RUNS) and reports[-1] == (RUNS, RUNS)


def test_a_link_is_followed_and_a_fifo_written_in_place(varied_store, tmp_path):
    """Only a regular file is replaced by the new table: a link keeps pointing at the table,
    and a FIFO (or /dev/null, or a shell's `>(...)`) is written to, as before."""
    target = tmp_path / "tables" / "m.csv"
    target.parent.mkdir()
    target.write_text("old\n")
    target.chmod(0o640)
    link = tmp_path / "latest.csv"
    link.symlink_to(target)
    assert export_and_say(varied_store, link).exit_code == 0
    assert link.is_symlink() and len(Table.read(target, format="ascii.csv")) == RUNS - 7
    assert stat.S_IMODE(target.stat().st_mode) == 0o640, "the table keeps its file's mode"

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    written = export_and_say(varied_store, fifo)
    reader.join(timeout=60)
    assert written.exit_code == 0, written.output
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert received and received[0] == target.read_bytes()

    parquet = runner.invoke(
        app, ["results", "m", "--format", "parquet", "-o", str(fifo), "--output-dir",
              str(varied_store)],
    )  # fmt: skip
    assert parquet.exit_code == 2
    assert f"--format parquet writes a file, and --out {fifo} is not one" in parquet.stderr


def export_and_say(store, target):
    return runner.invoke(
        app, ["results", "m", "--format", "csv", "-o", str(target), "--output-dir", str(store)]
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write a read-only file")
def test_a_read_only_table_is_not_replaced(varied_store, tmp_path):
    target = tmp_path / "m.csv"
    target.write_text("kept\n")
    target.chmod(0o444)
    result = export_and_say(varied_store, target)
    assert result.exit_code == 2 and f"--out {target}: the file is read-only" in result.stderr
    assert target.read_text() == "kept\n"


def test_an_export_stopped_by_sigterm_leaves_the_table_there_and_no_part_of_a_new_one(
    tmp_path,
):
    store = tmp_path / "store"
    rng = random.Random(5)
    with ResultsStore(store) as writer:
        writer.write(
            [replace(varied_run(index % RUNS, rng), observation=f"o{index}") for index in
             range(20_000)]
        )  # fmt: skip
    target = tmp_path / "m.fits"
    target.write_bytes(b"the table of yesterday")
    process = subprocess.Popen(
        [sys.executable, "-m", "astra_cli", "results", "m", "-o", str(target),
         "--output-dir", str(store)],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("*.partial")) and time.monotonic() < deadline:
        time.sleep(0.01)  # the table's file is made first, then the store is read
    process.send_signal(signal.SIGTERM)
    stderr = process.communicate(timeout=60)[1]

    assert process.returncode == ExitCode.TERMINATED, stderr
    assert stderr.strip() == "astra: error: stopped by SIGTERM"
    assert target.read_bytes() == b"the table of yesterday"
    assert sorted(tmp_path.iterdir()) == [target, store]


def test_rows_that_do_not_fit_the_columns_read_first_are_refused(varied_store):
    """Were the store to change between the two readings (where it cannot be read in one
    snapshot), a longer text would be cut short to the width read first: refused instead."""
    with ResultsStore(varied_store, read_only=True) as store:
        records = list(store.records("m"))
    layout = TableLayout()
    for record in records:
        layout.add(record)
    longer = replace(records[0], input_path=records[0].input_path + "/and/more")

    with pytest.raises(StoreChanged, match="the store changed while its runs were read"):
        list(table_blocks([longer], layout, layout.meta("m"), 10))
