"""`--backend dask` against a real dask.distributed scheduler and two worker processes on
127.0.0.1 (random ports), started and stopped by the tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import astra_subprocess
from fits_factory import write_apstars

distributed = pytest.importorskip(
    "distributed", reason="the dask extra is not installed: pip install 'astra-cli[dask]'"
)

DASK = str(Path(sys.executable).parent / "dask")


@pytest.fixture(scope="module")
def cluster(plugin_dir, tmp_path_factory):
    """A scheduler and two single-threaded worker processes that can import the test plugin;
    always shut down, even when a test fails."""
    directory = tmp_path_factory.mktemp("dask")
    scheduler_file = directory / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": str(plugin_dir)}
    processes = [
        subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(scheduler_file)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    ]  # fmt: skip
    try:
        _wait_for(scheduler_file.exists)
        for _ in range(2):
            processes.append(
                subprocess.Popen(
                    [DASK, "worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1",
                     "--no-nanny", "--no-dashboard", "--host", "127.0.0.1",
                     "--memory-limit", "4GB"],
                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip
        with distributed.Client(scheduler_file=str(scheduler_file), timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
            address = client.scheduler.address
        yield {"file": scheduler_file, "address": address, "env": env}
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("the dask scheduler did not start")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def spectra(tmp_path_factory):
    return write_apstars(tmp_path_factory.mktemp("dask-spectra"), 40)


def test_runs_on_the_cluster_and_loads_each_model_once_per_worker(cluster, spectra, tmp_path):
    loads = tmp_path / "loads.log"
    result = astra_subprocess(
        "analyse", "counting", *map(str, spectra), "--order", "5", "--order", "10",
        "--backend", "dask", "--scheduler-file", str(cluster["file"]), "--chunk-size", "5",
        "--load-log", str(loads), "-o", str(tmp_path / "out"), "--json", env=cluster["env"],
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["ran"], summary["ok"], summary["groups"]) == (80, 80, 2)
    lines = loads.read_text().splitlines()
    for group in ("order=5", "order=10"):
        pids = [line.split()[0] for line in lines if line.endswith(group)]
        assert 1 <= len(pids) <= 2 and len(set(pids)) == len(pids), lines
    assert os.getpid() not in {int(line.split()[0]) for line in lines}
    assert summary["model_loads"] == len(lines)


def test_scheduler_address_works_too_and_results_match_local_ones(cluster, spectra, tmp_path):
    common = ("analyse", "counting", *map(str, spectra[:10]), "--json")
    on_dask = astra_subprocess(
        *common, "--backend", "dask", "--scheduler", cluster["address"],
        "-o", str(tmp_path / "dask"), env=cluster["env"],
    )  # fmt: skip
    local = astra_subprocess(
        *common, "--backend", "sequential", "-o", str(tmp_path / "local"), env=cluster["env"]
    )
    assert on_dask.returncode == local.returncode == 0, on_dask.stderr + local.stderr

    from astra_cli.io.store import ResultsStore

    def means(directory):
        with ResultsStore(directory) as store:
            return {r.observation: r.result["mean_flux"] for r in store.records()}

    assert means(tmp_path / "dask") == means(tmp_path / "local")


def test_unreachable_scheduler_is_a_usage_error(tmp_path, spectra):
    result = astra_subprocess(
        "analyse", "snr", str(spectra[0]), "--backend", "dask", "--scheduler",
        "tcp://127.0.0.1:9", "-o", str(tmp_path / "out"),
        env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"},
    )  # fmt: skip
    assert result.returncode == 2
    assert "cannot reach the dask scheduler at tcp://127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr


def test_scheduler_without_dask_backend_is_refused(tmp_path, spectra):
    result = astra_subprocess(
        "analyse", "snr", str(spectra[0]), "--scheduler", "tcp://127.0.0.1:9",
        "-o", str(tmp_path / "out"),
    )  # fmt: skip
    assert result.returncode == 2 and "--backend dask" in result.stderr


def _start_scheduler(directory, env):
    scheduler_file = directory / "scheduler.json"
    process = subprocess.Popen(
        [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
         "--scheduler-file", str(scheduler_file)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    _wait_for(scheduler_file.exists)
    return process, scheduler_file


def _stop(*processes):
    for process in processes:
        process.kill()
        process.wait()


def test_a_cluster_whose_workers_all_die_is_given_up_on(plugin_dir, spectra, tmp_path):
    """With one single-threaded worker too, the runs go to the cluster (joblib would run them
    in the invoking process), and when it dies, the invocation gives up after --dask-timeout
    instead of waiting for ever with its groups locked."""
    env = {**os.environ, "PYTHONPATH": str(plugin_dir)}
    scheduler, scheduler_file = _start_scheduler(tmp_path, env)
    worker = subprocess.Popen(
        [DASK, "worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1",
         "--no-nanny", "--no-dashboard", "--host", "127.0.0.1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    out, runs, loads = tmp_path / "out", tmp_path / "runs.log", tmp_path / "loads.log"
    try:
        analysis = subprocess.Popen(
            [sys.executable, "-m", "astra_cli", "analyse", "counting", *map(str, spectra),
             "--backend", "dask", "--scheduler-file", str(scheduler_file), "--dask-timeout",
             "3", "--delay", "0.1", "--run-log", str(runs), "--load-log", str(loads),
             "-o", str(out), "--json"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        _wait_for(lambda: runs.exists() and runs.read_text().count("\n") >= 2)
        _stop(worker)
        started = time.monotonic()
        stdout, stderr = analysis.communicate(timeout=60)
        waited = time.monotonic() - started
    finally:
        _stop(worker, scheduler)

    assert [int(line.split()[0]) for line in loads.read_text().splitlines()] == [worker.pid]
    assert analysis.returncode == 1, stderr
    assert f"no dask worker at {scheduler_file} for 3 s (--dask-timeout): gave up" in stderr
    assert json.loads(stdout)["exit_code"] == 1, "--json prints a document, error included"
    assert waited < 30
    again = astra_subprocess(
        "analyse", "counting", *map(str, spectra), "--backend", "sequential", "-o", str(out),
        "--json", env=env,
    )  # fmt: skip
    assert again.returncode == 0, "the groups' locks were released"


def test_a_cluster_without_workers_is_given_up_on(spectra, tmp_path):
    scheduler, scheduler_file = _start_scheduler(tmp_path, dict(os.environ))
    try:
        result = astra_subprocess(
            "analyse", "snr", *map(str, spectra[:2]), "--backend", "dask", "--scheduler-file",
            str(scheduler_file), "--dask-timeout", "2", "-o", str(tmp_path / "out"), "--json",
        )  # fmt: skip
    finally:
        _stop(scheduler)
    assert result.returncode == 1, result.stderr
    assert f"no dask worker at {scheduler_file} for 2 s" in result.stderr
    assert json.loads(result.stdout)["error"].startswith("no dask worker")
    assert "Traceback" not in result.stderr


def test_a_spectrum_that_kills_every_worker_fails_alone_and_the_run_ends(
    plugin_dir, spectra, tmp_path
):
    """On a cluster whose nannies restart dead workers, dask gives up on a task that killed
    four of them (KilledWorker): the invocation goes on (it waited for ever), the other runs
    of the chunk are done and the killer alone fails, as its own fault."""
    from fits_factory import write_apstar

    killer = write_apstar(tmp_path / "apStar-crash.fits", seed=99)
    paths = [*map(str, spectra[:3]), str(killer), *map(str, spectra[3:6])]
    out = tmp_path / "out"
    analysis = astra_subprocess(
        "analyse", "counting", *paths, "--backend", "dask", "-j", "2", "--chunk-size", "20",
        "-o", str(out), "--json", env={"PYTHONPATH": str(plugin_dir)}, timeout=180,
    )  # fmt: skip

    assert analysis.returncode == 1, analysis.stderr
    summary = json.loads(analysis.stdout)
    assert (summary["ok"], summary["failed"]) == (6, 1), summary
    (failure,) = summary["failures"]
    assert "crash" in failure["observation"] and "alone" in failure["error"]


def test_a_local_cluster_keeps_workers_whose_mapped_grid_fills_their_memory(
    plugin_dir, spectra, tmp_path
):
    """dask holds a worker to its resident memory, where the pages of a memory-mapped grid
    count once fits have read them (in every worker, though the workers share them): it would
    pause and restart the workers of a local cluster, each restart loading the model again.
    Here dask's limits are brought down to 400 MB rather than a grid brought up past a
    worker's share of this machine's memory."""
    import logging

    from distributed.worker_memory import parse_memory_limit

    model, log, mapped = tmp_path / "model.txt", tmp_path / "log.txt", tmp_path / "grid.bin"
    model.write_text("a model")
    with open(mapped, "wb") as handle:  # sparse: no disk, its pages are read as zeros
        handle.truncate(480 * 2**20)
    share = parse_memory_limit("auto", 1, logger=logging.getLogger())  # a worker's by default
    fraction = f"{400e6 / share:.6f}"
    env = {
        "PYTHONPATH": str(plugin_dir),
        "DASK_DISTRIBUTED__WORKER__MEMORY__PAUSE": fraction,
        "DASK_DISTRIBUTED__WORKER__MEMORY__TERMINATE": fraction,
    }

    result = astra_subprocess(
        "analyse", "text-model", *map(str, spectra[:8]), "--model", str(model),
        "--log", str(log), "--mapped", str(mapped), "--delay", "0.3", "--backend", "dask",
        "-j", "2", "--chunk-size", "2", "-o", str(tmp_path / "out"), "--json",
        env=env, timeout=180,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["ok"], summary["model_loads"]) == (8, 2), "a worker was restarted"
    loads = [line for line in log.read_text().splitlines() if line.startswith("load ")]
    assert len(loads) == 2, loads
