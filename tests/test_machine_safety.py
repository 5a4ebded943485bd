"""A bad night never takes the machine down: no more workers than chunks, no worker outliving
its invocation (kill -9 included), SIGHUP stopping like SIGTERM, and cron told what happened
even with --quiet.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import stored_count
from fits_factory import write_apstars
from typer.testing import CliRunner

from astra_cli.cli.app import app
from astra_cli.exit_codes import ExitCode

runner = CliRunner()


@pytest.fixture(scope="module")
def spectra(tmp_path_factory):
    return write_apstars(tmp_path_factory.mktemp("safety-spectra"), 30)


def counting(paths, out, *options):
    return [
        sys.executable, "-m", "astra_cli", "analyse", "counting", *map(str, paths),
        "-o", str(out), "--json", *map(str, options),
    ]  # fmt: skip


def processes_marked(marker: str) -> list[int]:
    """Every process whose environment holds the marker: an invocation and its children."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("trial", range(3))
def test_kill_9_of_the_invoking_process_leaves_no_process_behind(
    spectra, tmp_path, plugin_env, trial
):
    """20 trials in a row: bench/bench_orphans.py."""
    marker = f"ASTRA_TRIAL_{uuid.uuid4().hex}"
    loads = tmp_path / "loads.log"
    process = subprocess.Popen(
        counting(spectra, tmp_path / "out", "--jobs", "2", "--chunk-size", "3",
                 "--delay", "0.2", "--load-log", loads),
        env={**plugin_env, marker: "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert wait_for(lambda: loads.exists() and len(loads.read_text().splitlines()) >= 2, 60)
    assert len(processes_marked(marker)) >= 3, "the invocation and its two workers"

    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    assert wait_for(lambda: not processes_marked(marker), 10), processes_marked(marker)


def test_an_ignored_sighup_stays_ignored_as_under_nohup(spectra, tmp_path, plugin_env):
    out = tmp_path / "out"
    process = subprocess.Popen(
        counting(spectra[:10], out, "--jobs", "1", "--delay", "0.1"),
        env=plugin_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),
    )  # fmt: skip
    assert wait_for(lambda: stored_count(out) > 0, 60)
    process.send_signal(signal.SIGHUP)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert json.loads(stdout)["ok"] == 10


def test_sighup_stops_like_sigterm_and_keeps_what_finished(spectra, tmp_path, plugin_env):
    out = tmp_path / "out"
    process = subprocess.Popen(
        counting(spectra, out, "--jobs", "1", "--delay", "0.1"),
        env=plugin_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert wait_for(lambda: stored_count(out) > 0, 60)
    process.send_signal(signal.SIGHUP)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == ExitCode.HANGUP, stderr
    summary = json.loads(stdout)
    assert summary["signal"] == "SIGHUP" and summary["pending"] > 0
    assert stored_count(out) == summary["ok"] > 0


@pytest.mark.parametrize(("chunk_size", "workers"), [(30, 2), (10, 3), (3, 10)])
def test_no_more_workers_than_chunks_whatever_jobs_says(
    plugin_env, spectra, tmp_path, chunk_size, workers
):
    """Counted live, as processes of the invocation. A lone chunk still gets two: joblib
    would run one worker in the invoking process."""
    marker = f"ASTRA_TRIAL_{uuid.uuid4().hex}"
    process = subprocess.Popen(
        counting(spectra, tmp_path / "out", "--jobs", "1000", "--chunk-size", chunk_size,
                 "--delay", "0.1"),
        env={**plugin_env, marker: "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    most = 0
    while process.poll() is None:
        most = max(most, len(processes_marked(marker)))
        time.sleep(0.05)
    stdout, stderr = process.communicate()

    assert process.returncode == 0, stderr
    assert json.loads(stdout)["workers"] == workers
    # The invocation, its workers, and the resource trackers of loky and multiprocessing.
    assert workers + 1 <= most <= workers + 3
    assert "is more than the" in stderr and "core(s) of this machine" in stderr


def test_jobs_minus_one_is_every_core_and_zero_is_refused(with_plugin, spectra, tmp_path):
    every = runner.invoke(
        app, ["plan", "counting", *map(str, spectra), "-o", str(tmp_path), "--jobs", "-1",
              "--json"],
    )  # fmt: skip
    assert every.exit_code == 0, every.output
    assert json.loads(every.stdout)["chunk_size"] == -(-30 // (len(os.sched_getaffinity(0)) * 4))
    zero = runner.invoke(app, ["plan", "counting", str(spectra[0]), "--jobs", "0"])
    assert zero.exit_code == ExitCode.USAGE
    assert "--jobs must not be 0 (-1 is every core)" in zero.output


def test_quiet_still_says_what_happened_when_the_exit_code_is_not_0(spectra, tmp_path):
    missing = tmp_path / "apStar-missing.fits"
    result = runner.invoke(
        app, ["analyse", "snr", str(spectra[0]), str(missing), "-o", str(tmp_path / "out"),
              "-j", "1", "--quiet"],
    )  # fmt: skip
    assert result.exit_code == ExitCode.RUNS_FAILED
    lines = result.stderr.splitlines()
    assert lines[0].startswith("snr: 2 requested, 0 already done, 2 ran (1 ok, 1 failed)")
    assert lines[0].endswith("exit code 1")
    assert f"failed: path:{missing}: missing input: {missing}" in result.stderr

    again = runner.invoke(
        app, ["analyse", "snr", str(spectra[0]), "-o", str(tmp_path / "out"), "-j", "1",
              "--quiet"],
    )  # fmt: skip
    assert again.exit_code == 0 and again.stderr == ""
