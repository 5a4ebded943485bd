"""Reading a store never writes it, and a store that is damaged, foreign or closed under the
reader gives one line and an exit code, not a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from astra_cli.cli.app import app
from astra_cli.exit_codes import ExitCode
from astra_cli.io.store import ResultsStore
from astra_cli.vocabulary import RunRecord

runner = CliRunner()


def record(index: int, **changes) -> RunRecord:
    values = dict(
        group_key="g", observation=f"path:/data/x{index}.fits", method="snr", method_version="1",
        options={}, identifiers=None, input_path=f"/data/x{index}.fits", status="ok",
        result={"snr": float(index)}, error=None, started_at=1.0, duration_s=0.1,
        astra_version="0",
    )  # fmt: skip
    return RunRecord(**{**values, **changes})


@pytest.fixture
def analysed(real_apvisits, tmp_path):
    """A store holding snr's runs of the real apVisit files, as `astra analyse` left it."""
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["analyse", "snr", *map(str, real_apvisits), "-o", str(out), "-j", "1", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    return out


def read_only_command(directory, *args: str) -> list[str]:
    """`astra ARGS` with `directory` mounted read-only for it alone (root), or made read-only
    by its permissions (anyone else)."""
    astra = [sys.executable, "-m", "astra_cli", *args]
    if os.geteuid() != 0:
        return astra
    script = 'mount --bind -o ro "$1" "$1" && shift && exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, "sh", str(directory), *astra]


@pytest.fixture
def read_only(analysed):
    if os.geteuid() == 0:
        probe = subprocess.run(read_only_command(analysed, "--help"), capture_output=True)
        if probe.returncode != 0 or shutil.which("unshare") is None:
            pytest.skip("as root, a read-only directory needs unshare and mount --bind")
    else:
        for path in [analysed, *analysed.iterdir()]:
            path.chmod(path.stat().st_mode & 0o555)
    yield analysed
    for path in [analysed, *analysed.iterdir()]:
        path.chmod(path.stat().st_mode | 0o200)


def test_status_and_results_read_a_store_in_a_read_only_directory(
    read_only, real_apvisits, tmp_path
):
    status = subprocess.run(
        read_only_command(read_only, "status", "snr", *map(str, real_apvisits),
                          "-o", str(read_only), "--json"),
        capture_output=True, text=True,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["done"] == 2

    table = tmp_path / "snr.csv"
    exported = subprocess.run(
        read_only_command(read_only, "results", "snr", "--output-dir", str(read_only),
                          "-o", str(table)),
        capture_output=True, text=True,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert table.read_text().count("\n") == 3


def test_reading_a_store_creates_and_changes_no_file(analysed, real_apvisits, tmp_path):
    (analysed / ".store.lock").unlink(missing_ok=True)
    before = {path.name: path.stat().st_mtime_ns for path in analysed.iterdir()}
    status = runner.invoke(
        app, ["status", "snr", *map(str, real_apvisits), "-o", str(analysed), "--json"]
    )
    exported = runner.invoke(
        app, ["results", "snr", "--output-dir", str(analysed), "-o", str(tmp_path / "t.fits")]
    )
    assert status.exit_code == exported.exit_code == 0
    assert {path.name: path.stat().st_mtime_ns for path in analysed.iterdir()} == before


@pytest.mark.parametrize("command", ["status", "results", "analyse"])
def test_a_file_that_is_not_a_store_is_one_line_and_exit_2(real_apvisits, tmp_path, command):
    out = tmp_path / "out"
    out.mkdir()
    (out / "astra.sqlite").write_bytes(b"this is not SQLite\n" * 100)
    args = {
        "status": ["status", "snr", str(real_apvisits[0]), "-o", str(out)],
        "results": ["results", "snr", "--output-dir", str(out)],
        "analyse": ["analyse", "snr", str(real_apvisits[0]), "-o", str(out)],
    }[command]
    result = runner.invoke(app, args)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert f"{out / 'astra.sqlite'} is not a readable astra results store" in result.output
    assert "Traceback" not in result.output and "unexpected" not in result.output


@pytest.mark.parametrize("table", ["runs", "observations"])
def test_another_programs_database_is_refused_and_left_as_it_is(real_apvisits, tmp_path, table):
    out = tmp_path / "out"
    out.mkdir()
    with sqlite3.connect(out / "astra.sqlite") as connection:
        connection.execute(f"CREATE TABLE {table} (id INTEGER)")
    before = (out / "astra.sqlite").read_bytes()
    exported = runner.invoke(app, ["results", "snr", "--output-dir", str(out)])
    analysed = runner.invoke(app, ["analyse", "snr", str(real_apvisits[0]), "-o", str(out)])
    assert exported.exit_code == analysed.exit_code == ExitCode.USAGE
    assert "is not an astra results store" in exported.output
    assert f"it holds the tables {table} of another program" in analysed.output
    assert (out / "astra.sqlite").read_bytes() == before


def test_a_damaged_row_is_reported_and_the_rest_exported(tmp_path):
    out = tmp_path / "out"
    with ResultsStore(out) as store:
        store.write([record(index) for index in range(200)])
    with sqlite3.connect(out / "astra.sqlite") as connection:
        connection.execute(
            "UPDATE runs SET result = '{not json' WHERE observation = 'path:/data/x7.fits'"
        )
    table = tmp_path / "snr.csv"
    result = runner.invoke(app, ["results", "snr", "--output-dir", str(out), "-o", str(table)])
    assert result.exit_code == ExitCode.RUNS_FAILED
    assert "1 stored run(s) could not be read" in result.output
    assert "g/path:/data/x7.fits" in result.output
    assert table.read_text().count("\n") == 200  # the header and 199 rows


def test_results_into_a_closed_pipe_stop_quietly(tmp_path):
    out = tmp_path / "out"
    with ResultsStore(out) as store:
        store.write([record(index) for index in range(5000)])
    process = subprocess.Popen(
        [sys.executable, "-m", "astra_cli", "results", "snr", "--output-dir", str(out),
         "-o", "-", "--format", "csv"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    process.stdout.readline()
    process.stdout.close()  # what `| head -1` does
    stderr = process.communicate(timeout=60)[1]
    assert process.returncode == ExitCode.BROKEN_PIPE
    assert stderr == b""


@pytest.mark.parametrize("where", ["missing/dir/astra.log", "."])
def test_a_log_file_that_cannot_be_written_is_refused_before_any_work(
    real_apvisits, tmp_path, where
):
    out = tmp_path / "out"
    log = tmp_path / where
    result = runner.invoke(
        app, ["analyse", "snr", str(real_apvisits[0]), "-o", str(out), "--log-file", str(log),
              "--json"],
    )  # fmt: skip
    assert result.exit_code == ExitCode.USAGE
    assert f"--log-file {log}: " in result.stderr
    assert json.loads(result.stdout)["exit_code"] == ExitCode.USAGE
    assert not out.exists(), "nothing was run, nothing left behind"


def test_analyse_into_a_read_only_store_is_refused_before_any_work(read_only, real_apvisits):
    result = subprocess.run(
        read_only_command(read_only, "analyse", "snr", *map(str, real_apvisits), "--force",
                          "-o", str(read_only), "-j", "1"),
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert "cannot open the results store" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["analyse", "status", "status-all", "show", "forget"])
def test_a_file_given_as_the_store_directory_is_one_line_and_exit_2(
    real_apvisits, tmp_path, command
):
    # -o is the store's directory for these commands; a table's name given to it by habit
    # (`-o grid.fits`) must not be taken for a directory, nor silently ignored.
    table = tmp_path / "grid.fits"
    table.write_bytes(b"SIMPLE")
    visit = str(real_apvisits[0])
    args = {
        "analyse": ["analyse", "snr", visit, "-o", str(table)],
        "status": ["status", "snr", visit, "-o", str(table)],
        "status-all": ["status", "-o", str(table)],
        "show": ["show", visit, "-o", str(table)],
        "forget": ["forget", "snr", "--yes", "-o", str(table)],
    }[command]
    result = runner.invoke(app, args)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert f"--output-dir {table} is a file" in result.output
    assert "Traceback" not in result.output
    assert table.read_bytes() == b"SIMPLE"


def test_a_directory_given_as_the_model_file_of_train_is_refused_before_training(tmp_path):
    directory = tmp_path / "models"
    directory.mkdir()
    manifest = tmp_path / "training.csv"
    manifest.write_text("path,teff\n/nowhere/apStar-x.fits,5000\n")
    args = ["train", "cannon", "--from-file", str(manifest), "--labels", "teff"]
    result = runner.invoke(app, [*args, "-o", str(directory), "--overwrite"])
    assert result.exit_code == ExitCode.USAGE, result.output
    assert f"--output {directory} is a directory; -o names the model file" in result.output
    assert list(directory.iterdir()) == []
