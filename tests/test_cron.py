"""Cron-grade operation with real processes: overlapping invocations, kill -9 of the invoking
process, a worker killed from outside, SIGTERM, and the log file."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter

import pytest
from conftest import astra_subprocess, stored_count
from fits_factory import write_apstars

from astra_cli.io.store import ResultsStore


@pytest.fixture(scope="module")
def spectra(tmp_path_factory):
    return write_apstars(tmp_path_factory.mktemp("cron-spectra"), 200)


@pytest.fixture
def env(plugin_dir):
    return {**os.environ, "PYTHONPATH": str(plugin_dir)}


def counting(paths, out, *options):
    return [
        sys.executable, "-m", "astra_cli", "analyse", "counting", *map(str, paths),
        "-o", str(out), "--json", *options,
    ]  # fmt: skip


def start(command, env):
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def wait_until(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_overlapping_invocations_do_every_run_exactly_once(spectra, tmp_path, env):
    out, runs = tmp_path / "out", tmp_path / "runs.log"
    options = ("--order", "5", "--order", "10", "--run-log", str(runs), "--delay", "0.005",
               "--jobs", "2", "--wait")  # fmt: skip
    first = start(counting(spectra, out, *options), env)
    second = start(counting(spectra, out, *options), env)
    results = [process.communicate(timeout=240) for process in (first, second)]

    assert [first.returncode, second.returncode] == [0, 0], results
    analysed = Counter(runs.read_text().splitlines())
    assert len(analysed) == 400, "every run was done"
    assert max(analysed.values()) == 1, "no run was done twice"
    ran = [json.loads(stdout)["ran"] for stdout, _ in results]
    assert sum(ran) == 400
    with ResultsStore(out) as store:
        assert store.count(status="ok") == 400


def test_everything_locked_exits_75_and_names_the_holder(spectra, tmp_path, env):
    out = tmp_path / "out"
    holder = start(counting(spectra[:40], out, "--delay", "0.1", "--jobs", "1"), env)
    wait_until(lambda: stored_count(out) > 0)

    blocked = subprocess.run(
        counting(spectra[:40], out, "--jobs", "1"), capture_output=True, text=True, env=env
    )
    holder.communicate(timeout=120)

    assert blocked.returncode == 75, blocked.stderr
    summary = json.loads(blocked.stdout)
    assert summary["ran"] == 0 and summary["locked"] > 0
    assert f"pid {holder.pid}" in blocked.stderr and "--wait" in blocked.stderr
    assert holder.returncode == 0


def test_some_groups_locked_and_the_rest_done_exits_1(spectra, tmp_path, env):
    """Exit code 0 would tell cron that everything asked for is done."""
    out = tmp_path / "out"
    holder = start(counting(spectra[:40], out, "--delay", "0.25", "--jobs", "1"), env)
    wait_until(lambda: stored_count(out) > 0)

    partly = subprocess.run(
        counting(spectra[:40], out, "--order", "5", "--order", "6", "--jobs", "1"),
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    holder.communicate(timeout=120)

    assert partly.returncode == 1, partly.stderr
    summary = json.loads(partly.stdout)
    assert summary["ran"] == 40 and summary["locked"] > 0
    assert holder.returncode == 0


def test_kill_9_of_the_invoking_process_loses_nothing_committed(spectra, tmp_path, env):
    out = tmp_path / "out"
    paths = spectra * 3  # 600 requests: 200 observations x 3 option values below
    command = counting(spectra, out, "--order", "1", "--order", "2", "--order", "3",
                       "--delay", "0.01", "--jobs", "2", "--chunk-size", "10")  # fmt: skip
    process = start(command, env)
    wait_until(lambda: stored_count(out) >= 100)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)

    with sqlite3.connect(out / "astra.sqlite") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    committed = stored_count(out)
    assert 0 < committed < len(paths)

    rerun = astra_subprocess(*command[3:], env=env)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["ran"] == len(paths) - committed, "the rerun did only what was missing"
    assert summary["already_done"] == committed
    with ResultsStore(out) as store:
        assert store.count(status="ok") == len(paths)


def test_a_worker_killed_from_outside_costs_no_run(spectra, tmp_path, env):
    """The run it held is run again alone, and succeeds: nothing was wrong with it."""
    out, loads = tmp_path / "out", tmp_path / "loads.log"
    command = counting(spectra[:60], out, "--delay", "0.05", "--jobs", "2", "--chunk-size", "10",
                       "--load-log", str(loads))  # fmt: skip
    process = start(command, env)
    wait_until(lambda: loads.exists() and stored_count(out) > 0)
    # A chunk just came back, so its worker may be between chunks, where a kill loses nothing;
    # three observations (0.15 s) later it is inside its next chunk.
    time.sleep(0.15)
    worker = int(loads.read_text().split()[0])
    os.kill(worker, signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=120)

    assert process.returncode == 0, stderr
    summary = json.loads(stdout)
    assert (summary["ok"], summary["failed"]) == (60, 0)
    assert summary["model_loads"] > 2, "the killed worker's replacement loaded the model"
    with ResultsStore(out) as store:
        assert store.count(status="ok") == 60


def test_sigterm_keeps_what_finished_and_exits_143(spectra, tmp_path, env):
    out, log = tmp_path / "out", tmp_path / "astra.log"
    command = counting(spectra[:60], out, "--delay", "0.1", "--jobs", "2", "--chunk-size", "5",
                       "--log-file", str(log))  # fmt: skip
    process = start(command, env)
    wait_until(lambda: stored_count(out) > 0)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 143, stderr
    summary = json.loads(stdout)
    assert summary["interrupted"] and summary["signal"] == "SIGTERM"
    assert stored_count(out) == summary["ran"] > 0
    assert "interrupted by SIGTERM" in log.read_text()
    assert not any((out / ".journals").glob("*")), "the journals of finished chunks are gone"


def test_log_file_has_a_line_per_group_and_per_failure(tmp_path, env, spectra):
    out, log = tmp_path / "out", tmp_path / "astra.log"
    failing = tmp_path / "apStar-fail.fits"
    failing.write_bytes(spectra[0].read_bytes())
    log.write_text("earlier line\n")

    result = astra_subprocess(
        "analyse", "counting", str(spectra[0]), str(spectra[1]), str(failing),
        "--order", "5", "--order", "10", "--jobs", "1", "-o", str(out),
        "--log-file", str(log), "--quiet", env=env,
    )  # fmt: skip

    assert result.returncode == 1
    lines = log.read_text().splitlines()
    assert lines[0] == "earlier line", "the log is appended to"
    stamped = lines[1:]
    assert all(line[:4].isdigit() and line[10] == "T" for line in stamped)
    assert sum(" group " in f" {line}" and "ok," in line for line in stamped) == 2
    assert sum("failed: path:" in line and "apStar-fail.fits" in line for line in stamped) == 2
    assert "exit code 1" in stamped[-1]
    assert "failed" in result.stderr, "--quiet still prints errors"
    assert "exit code 1" in result.stderr, "--quiet says what happened when the code is not 0"


def readme_crontab() -> list[str]:
    """The lines of README's crontab block."""
    from test_readme import BLOCKS

    (block,) = [block for block in BLOCKS if block.marker == "test: crontab"]
    return [line for line in block.text.splitlines() if line.strip()]


def test_readme_crontab_runs_as_cron_runs_it(demo_files, tmp_path):
    """Cron's environment: PATH=/usr/bin:/bin, HOME, SHELL, the crontab's own variables, and
    the job line given to /bin/sh; nothing of the virtualenv that runs these tests."""
    places = {
        "/opt/astra/.venv": sys.prefix,
        "/data/sas": str(demo_files.data_root),
        "/data/models/grid.fits": str(demo_files.grid_fits),
        "/data/lists/tonight.csv": str(demo_files.stars_manifest),
        "/data/astra.log": str(tmp_path / "astra.log"),
        "/data/astra": str(tmp_path / "astra"),
    }
    environment = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SHELL": "/bin/sh"}
    job = None
    for line in readme_crontab():
        for placeholder, real in places.items():
            line = line.replace(placeholder, real)
        if line.startswith("#"):
            continue
        name, equals, value = line.partition("=")
        if equals and " " not in name:
            environment[name] = value
        else:
            job = line.split(None, 5)[5]  # after the five time fields
    assert job is not None and job.startswith(sys.prefix), "the full path of the venv's astra"

    def night():
        return subprocess.run(
            ["env", "-i", *(f"{k}={v}" for k, v in environment.items()), "/bin/sh", "-c", job],
            capture_output=True, text=True, cwd=tmp_path,
        )  # fmt: skip

    first = night()
    assert first.returncode == 0, first.stderr
    assert first.stdout == first.stderr == "", "--quiet: cron mails nothing when all went well"
    with ResultsStore(tmp_path / "astra") as store:
        assert store.count(status="ok") == len(demo_files.stars)
    second = night()
    assert second.returncode == 0 and second.stderr == ""
    log = (tmp_path / "astra.log").read_text()
    assert log.count("exit code 0") == 2 and "0 ran" in log.splitlines()[-1]
