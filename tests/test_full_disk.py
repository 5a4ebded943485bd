"""A store that cannot take more data: a clear error, committed results intact.

A real process with a file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored) stands for a full disk:
once the store's write-ahead log reaches the limit every write to it fails, as writes fail on a
full file system (SQLite reports "disk I/O error" for the limit, "database or disk is full"
for ENOSPC; astra handles both alike).
"""

from __future__ import annotations

import resource
import signal
import sqlite3

from conftest import astra_subprocess
from fits_factory import write_apstars

from astra_cli.io.store import ResultsStore

FILE_SIZE_LIMIT = 50_000
"""Above SQLite's 32 KB shared-memory file, so the store opens; a few chunks' worth of WAL."""


def _limited_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


def test_full_store_stops_with_a_clear_error_and_keeps_what_was_committed(tmp_path):
    paths = [str(p) for p in write_apstars(tmp_path / "data", 40)]
    out = tmp_path / "out"
    args = ("analyse", "snr", *paths, "-o", str(out), "--chunk-size", "1", "--backend=sequential")
    assert astra_subprocess("plan", "snr", *paths, "-o", str(out)).returncode == 0  # the store

    full = astra_subprocess(*args, preexec_fn=_limited_file_size)

    assert full.returncode == 1, full.stderr
    assert f"cannot write results to {out / 'astra.sqlite'}: disk I/O error" in full.stderr
    assert "every result committed before this one is kept" in full.stderr
    assert "Traceback" not in full.stderr
    with sqlite3.connect(out / "astra.sqlite") as check:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with ResultsStore(out) as store:
        kept = store.count(status="ok")
    assert 0 < kept < 40, "what was committed before the disk filled is kept"
    rerun = astra_subprocess(*args, "--json")
    assert rerun.returncode == 0, rerun.stderr
    assert f'"ran": {40 - kept},' in rerun.stdout
