"""Worker processes for real: how often a model is loaded, what a crashed worker costs, and what
Ctrl-C keeps. Each test runs `astra` in its own process, as a shell or cron would, so that
worker pools and model caches start empty."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import astra_subprocess
from fits_factory import write_apstars

from astra_cli.io.store import ResultsStore


@pytest.fixture(scope="module")
def fifty_spectra(tmp_path_factory):
    return write_apstars(tmp_path_factory.mktemp("fifty"), 50)


def load_lines(log):
    return log.read_text().splitlines() if log.exists() else []


def run_counting(paths, tmp_path, *options, env):
    log = tmp_path / "loads.txt"
    result = astra_subprocess(
        "analyse", "counting", *map(str, paths), "--load-log", str(log),
        "-o", str(tmp_path / "out"), "--json", *options, env=env,
    )  # fmt: skip
    return result, load_lines(log)


@pytest.fixture
def plugin_env(plugin_dir):
    return {"PYTHONPATH": str(plugin_dir)}


def test_one_job_loads_each_groups_model_once(fifty_spectra, tmp_path, plugin_env):
    result, loads = run_counting(
        fifty_spectra, tmp_path, "--jobs", "1", "--order", "5", "--order", "10", env=plugin_env
    )

    assert result.returncode == 0, result.stderr
    assert sorted(line.split(" ", 1)[1] for line in loads) == ["a=3 order=10", "a=3 order=5"]
    summary = json.loads(result.stdout)
    assert (summary["ran"], summary["groups"], summary["model_loads"]) == (100, 2, 2)


def test_two_jobs_load_each_groups_model_at_most_twice(fifty_spectra, tmp_path, plugin_env):
    result, loads = run_counting(
        fifty_spectra, tmp_path, "--jobs", "2", "--order", "5", "--order", "10", env=plugin_env
    )

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["chunks"] >= 4, "both workers must get chunks of both groups"
    for group in ("a=3 order=5", "a=3 order=10"):
        per_group = [line for line in loads if line.endswith(group)]
        assert 1 <= len(per_group) <= 2, loads
        assert len({line.split()[0] for line in per_group}) == len(per_group), "one per worker"
    assert summary["model_loads"] == len(loads)


def test_insignificant_option_shares_the_model(fifty_spectra, tmp_path, plugin_env):
    result, loads = run_counting(
        fifty_spectra[:10], tmp_path, "--jobs", "1", "--threads", "8", env=plugin_env
    )

    assert result.returncode == 0, result.stderr
    assert len(loads) == 1
    with ResultsStore(tmp_path / "out") as store:
        assert all("threads" not in record.options for record in store.records())


def test_killed_worker_fails_only_what_it_held(fifty_spectra, tmp_path, plugin_env):
    crash = shutil.copy(fifty_spectra[0], tmp_path / "apStar-crash.fits")
    paths = [*fifty_spectra[:20], crash]

    result, _ = run_counting(paths, tmp_path, "--jobs", "2", "--chunk-size", "4", env=plugin_env)

    assert result.returncode == 1, result.stderr
    with ResultsStore(tmp_path / "out") as store:
        records = {record.input_path: record for record in store.records()}
    assert len(records) == 21, "every run has a row"
    assert records[str(crash)].status == "failed"
    assert "worker process died while analysing this observation" in records[str(crash)].error
    assert "SIGKILL" in records[str(crash)].error
    died = [r for r in records.values() if r.status == "failed"]
    assert len(died) <= 2, "at most the crashing run and the one the other worker held"

    retried, _ = run_counting(paths, tmp_path, "--jobs", "2", "--retry-failed", env=plugin_env)
    assert retried.returncode == 1
    assert json.loads(retried.stdout)["ran"] == len(died)
    with ResultsStore(tmp_path / "out") as store:
        assert [r.input_path for r in store.records(status="failed")] == [str(crash)]
        assert store.count(status="ok") == 20


def test_ctrl_c_keeps_what_finished_and_a_rerun_finishes(fifty_spectra, tmp_path, plugin_env):
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "astra_cli", "analyse", "counting", *map(str, fifty_spectra),
        "--delay", "0.1", "--jobs", "2", "--chunk-size", "5", "-o", str(out), "--json",
    ]  # fmt: skip
    env = {**os.environ, **plugin_env}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _some_stored(out):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 130, stderr
    summary = json.loads(stdout)
    assert summary["interrupted"] and summary["pending"] > 0
    with ResultsStore(out) as store:
        assert store.count(status="ok") == summary["ran"] == 50 - summary["pending"]

    rerun = astra_subprocess(*command[3:], env=plugin_env)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["ran"] == summary["pending"]


def _some_stored(out) -> bool:
    if not (out / "astra.sqlite").exists():
        return False
    with ResultsStore(out) as store:
        return store.count() > 0
