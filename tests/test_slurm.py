"""`--backend slurm` on a real SLURM cluster of one node with two cores (tests/slurm_cluster.py),
brought up once for this file and stopped by pid afterwards. Every SLURM test is in this file,
so that one test process owns the cluster. astra runs as a real process, as a user runs it on
a login node, with the cluster's SLURM_CONF; its jobs' output files land in the test's
directory (astra's working directory)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import astra_subprocess
from fits_factory import write_apstars
from slurm_cluster import NODE_CPUS, SlurmCluster, unavailable

from astra_cli.io.store import ResultsStore

WHY_NOT = unavailable()
needs_slurm = pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")


@pytest.fixture(scope="session")
def slurm():
    """The cluster, in a scratch directory of its own: munged wants every directory above its
    socket open to all, which pytest's temporary directories are not."""
    pytest.importorskip("dask_jobqueue", reason="the slurm extra is not installed")
    directory = Path(tempfile.mkdtemp(prefix="astra-slurm-"))
    cluster = SlurmCluster(directory)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def on_slurm(slurm, plugin_env, tmp_path):
    """Run astra as a process that sees the cluster and the test plugin, in tmp_path; the
    queue is empty before each test. Jobs ask for 1GB (through the environment, as a site
    would set it), which any machine that runs the tests has to spare."""
    assert slurm.wait_for_empty_queue() == [], "a job of an earlier test is still queued"
    env = {**plugin_env, **slurm.env, "ASTRA_SLURM_MEMORY": "1GB"}

    def run(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
        return astra_subprocess(*args, env=env, cwd=tmp_path, timeout=120, **kwargs)

    run.env = env
    return run


def _job_outputs(directory: Path) -> set[str]:
    """The SLURM jobs that ran in this directory: each wrote its slurm-ID.out there."""
    return {path.stem.removeprefix("slurm-") for path in directory.glob("slurm-*.out")}


@needs_slurm
def test_demo_stars_run_in_slurm_jobs_and_the_jobs_end_with_astra(
    on_slurm, slurm, demo_files, tmp_path
):
    out, log = tmp_path / "out", tmp_path / "astra.log"
    result = on_slurm(
        "analyse", "grid", "--grid", str(demo_files.grid_fits), "--from-file",
        str(demo_files.stars_manifest), "--data-root", str(demo_files.data_root),
        "--backend", "slurm", "--slurm-jobs", "2", "-o", str(out), "--log-file", str(log),
        "--json",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert slurm.wait_for_empty_queue() == [], "the jobs outlived astra"
    summary = json.loads(result.stdout)
    stages = [*summary["upstream"], summary]
    assert summary["ran"] == summary["ok"] == summary["requested"] == len(demo_files.stars)
    jobs = _job_outputs(tmp_path)
    assert 1 <= len(jobs) <= 2, jobs
    for stage in stages:  # every chunk ran in one of the jobs astra submitted
        assert sum(stage["slurm_jobs"].values()) == stage["chunks"], stage
        assert set(stage["slurm_jobs"]) <= jobs
        assert stage["model_loads"] <= len(jobs) * stage["groups"], "a model loaded twice"
    with ResultsStore(out, read_only=True) as store:
        assert store.count(method="grid", status="ok") == len(demo_files.stars)
    assert "ran in SLURM job(s) " in log.read_text()


@needs_slurm
def test_each_worker_in_a_job_loads_each_model_once(on_slurm, slurm, tmp_path):
    spectra = write_apstars(tmp_path / "spectra", 12)
    loads = tmp_path / "loads.log"
    result = on_slurm(
        "analyse", "counting", *map(str, spectra), "--order", "5", "--order", "10",
        "--chunk-size", "2", "--load-log", str(loads), "--backend", "slurm", "--slurm-jobs",
        "2", "-o", str(tmp_path / "out"), "--json",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["ran"], summary["ok"], summary["chunks"]) == (24, 24, 12)
    lines = loads.read_text().splitlines()
    for group in ("order=5", "order=10"):
        pids = [line.split()[0] for line in lines if line.endswith(group)]
        assert 1 <= len(pids) <= 2 and len(set(pids)) == len(pids), lines
    assert str(os.getpid()) not in {line.split()[0] for line in lines}
    assert sum(summary["slurm_jobs"].values()) == 12
    assert slurm.wait_for_empty_queue() == []


@needs_slurm
def test_a_job_keeps_workers_whose_mapped_grid_fills_their_memory(on_slurm, slurm, tmp_path):
    """dask-jobqueue gives each worker a memory limit of its own (the job's memory shared
    among its workers), which counts the pages of a memory-mapped grid once fits have read
    them: dask would restart the worker, which loads the model again. astra lifts it and
    leaves the job to SLURM's limit. Here dask's limit is brought down to 400 MB of the job's
    1 GB rather than a grid brought up past it."""
    spectra = write_apstars(tmp_path / "spectra", 8)
    model, log, mapped = tmp_path / "model.txt", tmp_path / "log.txt", tmp_path / "grid.bin"
    model.write_text("a model")
    with open(mapped, "wb") as handle:  # sparse: no disk, its pages are read as zeros
        handle.truncate(480 * 2**20)
    env = {
        **on_slurm.env,
        "DASK_DISTRIBUTED__WORKER__MEMORY__PAUSE": "0.4",
        "DASK_DISTRIBUTED__WORKER__MEMORY__TERMINATE": "0.4",
    }

    result = astra_subprocess(
        "analyse", "text-model", *map(str, spectra), "--model", str(model), "--log", str(log),
        "--mapped", str(mapped), "--delay", "0.3", "--backend", "slurm", "--slurm-jobs", "1",
        "--chunk-size", "2", "-o", str(tmp_path / "out"), "--json",
        env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["ok"], summary["model_loads"]) == (8, 1), "the worker was restarted"
    assert slurm.wait_for_empty_queue() == []


@needs_slurm
def test_sigterm_in_the_middle_cancels_the_jobs(on_slurm, slurm, tmp_path):
    spectra = write_apstars(tmp_path / "spectra", 30)
    runs = tmp_path / "runs.log"
    analysis = subprocess.Popen(
        [sys.executable, "-m", "astra_cli", "analyse", "counting", *map(str, spectra),
         "--delay", "0.2", "--run-log", str(runs), "--backend", "slurm", "--slurm-jobs", "2",
         "-o", str(tmp_path / "out"), "--json"],
        env=on_slurm.env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (runs.exists() and runs.read_text().count("\n") >= 2):
            assert analysis.poll() is None, analysis.communicate()[1]
            assert time.monotonic() < deadline, "no run started in a SLURM job"
            time.sleep(0.1)
        assert slurm.queue(), "runs are done, and no job is in the queue"
        analysis.send_signal(signal.SIGTERM)
        stdout, stderr = analysis.communicate(timeout=60)
    finally:
        if analysis.poll() is None:
            analysis.kill()
            analysis.communicate()

    assert analysis.returncode == 143, stderr
    assert slurm.wait_for_empty_queue() == [], "SIGTERM left jobs in the queue"
    summary = json.loads(stdout)
    assert summary["interrupted"] and summary["pending"] > 0
    with ResultsStore(tmp_path / "out", read_only=True) as store:
        assert store.count(status="ok") == summary["ran"] == 30 - summary["pending"]


@needs_slurm
def test_more_cores_than_any_node_has_is_refused_at_once(on_slurm, slurm, demo_files, tmp_path):
    started = time.monotonic()
    result = on_slurm(
        "analyse", "snr", "--from-file", str(demo_files.stars_manifest), "--data-root",
        str(demo_files.data_root), "--backend", "slurm", "--slurm-cores", "64",
        "-o", str(tmp_path / "out"),
    )  # fmt: skip

    assert result.returncode == 2, result.stderr
    assert time.monotonic() - started < 20
    assert result.stderr.strip().splitlines() == [
        f"astra: error: --slurm-cores 64: more cores than any node of the cluster has (the "
        f"largest has {NODE_CPUS} cores and {slurm.memory_mb} MB)"
    ]
    assert slurm.queue() == [], "a refused request submitted a job"
    assert not (tmp_path / "out").exists(), "a refused request planned or wrote something"


@needs_slurm
def test_what_slurm_itself_refuses_is_refused_before_planning(on_slurm, slurm, tmp_path):
    spectra = write_apstars(tmp_path / "spectra", 1)
    result = on_slurm(
        "analyse", "snr", str(spectra[0]), "--backend", "slurm", "--slurm-extra=--no-such-option",
        "-o", str(tmp_path / "out"),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "SLURM refuses the job astra would submit: sbatch: unrecognized option" in result.stderr
    assert not (tmp_path / "out").exists() and slurm.queue() == []


@needs_slurm
def test_no_worker_in_time_says_why_from_the_queue(on_slurm, slurm, tmp_path):
    """Both cores taken by another job: astra's job waits for resources, and after
    --dask-timeout astra gives up, saying so, and cancels it (the other job runs on)."""
    blocker = slurm.run("sbatch", "--parsable", "-o", "/dev/null", "-c", str(NODE_CPUS),
                        "--wrap", "sleep 120").stdout.strip()  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while slurm.queue() != [f"{blocker} RUNNING"]:
            assert time.monotonic() < deadline, slurm.queue()
            time.sleep(0.1)
        spectra = write_apstars(tmp_path / "spectra", 2)
        result = on_slurm(
            "analyse", "snr", *map(str, spectra), "--backend", "slurm", "--dask-timeout", "3",
            "-o", str(tmp_path / "out"),
        )  # fmt: skip
        assert result.returncode == 1, result.stderr
        assert "no dask worker from the SLURM jobs of this invocation for 3 s" in result.stderr
        assert "PENDING (Resources)" in result.stderr
        assert "Traceback" not in result.stderr
        assert slurm.queue() == [f"{blocker} RUNNING"]
    finally:
        slurm.run("scancel", blocker)


@pytest.mark.parametrize(
    "option", ["--slurm-partition=debug", "--slurm-jobs=2", "--slurm-extra=--exclusive"]
)
def test_slurm_options_go_with_backend_slurm(option, tmp_path):
    """Refused at once, on any machine: no SLURM needed to say so."""
    spectra = write_apstars(tmp_path / "spectra", 1)
    result = astra_subprocess(
        "analyse", "snr", str(spectra[0]), option, "-o", str(tmp_path / "out")
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"astra: error: {option.split('=')[0]} goes with --backend slurm"
    )


def test_each_value_comes_from_the_command_line_then_the_environment_then_dask_config():
    """No SLURM needed: how a request is settled, and errors naming where a value came from."""
    pytest.importorskip("dask_jobqueue", reason="the slurm extra is not installed")
    import dask.config

    from astra_cli.engine.slurm import SlurmOptions, resolve
    from astra_cli.errors import UsageError, command_line_spelling

    environ = {"ASTRA_SLURM_PARTITION": "env-part", "ASTRA_SLURM_EXTRA": "--exclusive -C 'a b'"}
    configured = {"jobqueue.slurm.cores": 4, "jobqueue.slurm.queue": "conf-part"}
    with dask.config.set(configured), command_line_spelling():
        request = resolve(SlurmOptions(memory="3GB"), jobs=5, environ=environ)
        assert (request.jobs, request.cores, request.memory) == (5, 4, "3GB")
        assert request.partition == "env-part"
        assert request.extra == ("--exclusive", "-C", "a b")
        assert request.said["jobs"] == "--jobs 5"
        assert request.said["cores"] == "jobqueue.slurm.cores: 4 (dask configuration)"
        assert resolve(SlurmOptions(partition="cli", jobs=2), jobs=5, environ={}).partition == (
            "cli"
        )
        assert resolve(SlurmOptions(jobs=2), jobs=5, environ={}).partition == "conf-part"
        with pytest.raises(UsageError, match=r"^ASTRA_SLURM_JOBS=two: must be a whole number"):
            resolve(SlurmOptions(), environ={"ASTRA_SLURM_JOBS": "two"})
        with pytest.raises(UsageError, match=r"^--slurm-walltime soon: not a SLURM time limit"):
            resolve(SlurmOptions(walltime="soon"), environ={})
    with dask.config.set({"jobqueue.slurm.memory": None}):  # whatever ~/.config/dask says
        default = resolve(SlurmOptions(cores=3), environ={})
    assert (default.jobs, default.memory, default.memory_mb) == (1, "6GB", 5723)
