"""Worker processes for real: how often a model is loaded, what a crashed worker costs, and what
Ctrl-C keeps. Each test runs `astra` in its own process, as a shell or cron would, so that
worker pools and model caches start empty."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import astra_subprocess
from demo_paths import star_paths
from fits_factory import write_apstars

from astra_cli.engine.locks import GroupLocks
from astra_cli.exit_codes import ExitCode
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


def test_workers_load_the_model_and_check_the_request(fifty_spectra, tmp_path, plugin_env):
    """The workers start before the request is checked: the check is made in one of them
    while the other loads the model, and then it loads the model too."""
    model, log = tmp_path / "model.txt", tmp_path / "log.txt"
    model.write_text("a model")

    result = astra_subprocess(
        "analyse", "text-model", *map(str, fifty_spectra[:8]), "--model", str(model),
        "--log", str(log), "--check-waits-for", "1", "--load-waits-for", "2", "--jobs", "2",
        "--chunk-size", "2",
        "-o", str(tmp_path / "out"), "--json", env=plugin_env,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    lines = load_lines(log)
    loads = [line for line in lines if line.startswith("load ")]
    assert len(loads) == len(set(loads)) == 2, "the chunks ran on the workers that loaded it"
    workers = {line.split()[1] for line in loads}
    checks = [line.split() for line in lines if line.startswith("checked ")]
    assert [check[2] for check in checks] == ["1"], "one check, made as the other worker loaded"
    assert checks[0][-1] in workers, "the check was made in a worker"
    summary = json.loads(result.stdout)
    assert (summary["ok"], summary["chunks"], summary["model_loads"]) == (8, 4, 2)


def test_chunks_start_on_a_worker_whose_model_is_loaded_while_another_loads(
    fifty_spectra, tmp_path, plugin_env
):
    """A worker whose model is loaded takes chunks at once: it does not wait for the others.
    Here each worker starts a load (the first waits for the second to start), and the second
    load ends only once an observation has been analysed."""
    model, log = tmp_path / "model.txt", tmp_path / "log.txt"
    model.write_text("a model")

    result = astra_subprocess(
        "analyse", "text-model", *map(str, fifty_spectra[:8]), "--model", str(model),
        "--log", str(log), "--load-waits-for", "2", "--second-load-waits-for-analysis",
        "--jobs", "2",
        "--chunk-size", "2", "-o", str(tmp_path / "out"), "--json", env=plugin_env,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["ok"], summary["model_loads"]) == (8, 2)
    lines = load_lines(log)
    ended = [index for index, line in enumerate(lines) if line.startswith("loaded ")]
    analysed = [index for index, line in enumerate(lines) if line.startswith("analysed ")]
    assert len(ended) == 2 and analysed[0] < ended[1], (
        "the second load ended before any observation was analysed: the chunks waited for it"
    )


def test_a_request_refused_while_the_workers_load_leaves_nothing(
    fifty_spectra, tmp_path, plugin_env
):
    model, log = tmp_path / "model.txt", tmp_path / "log.txt"
    model.write_text("refuse this model")

    result = astra_subprocess(
        "analyse", "text-model", *map(str, fifty_spectra[:8]), "--model", str(model),
        "--log", str(log), "--check-waits-for", "1", "--load-waits-for", "2", "--jobs", "2",
        "-o", str(tmp_path / "out"), env=plugin_env,
    )  # fmt: skip

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"astra: error: {model}: this model is refused by its check"
    ], "one line: no traceback from the workers stopped under it"
    lines = load_lines(log)
    workers = {line.split()[1] for line in lines if line.startswith("load ")}
    checked_in = [line.split()[-1] for line in lines if line.startswith("checked after ")]
    assert len(checked_in) == 2 and checked_in[0] in workers and checked_in[1] not in workers, (
        "refused in a worker, then checked again by the invoking process, to say why"
    )
    assert not (tmp_path / "out").exists(), "nothing may be created for a refused request"


CHILDREN = """
def children():
    \"\"\"This process's children, found by their parent in /proc: the command line of each,
    and whether it loaded numpy.\"\"\"
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\\0", b" ").decode()
            with open(f"/proc/{pid}/maps") as maps:
                numpy = "_multiarray_umath" in maps.read()
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
        if parent == os.getpid():
            found.append({"command": command, "numpy": numpy})
    return found
"""

INVOKING_PROCESS = (
    "import json, os, runpy, sys\n"
    + CHILDREN
    + """
report, sys.argv = sys.argv[1], ["astra", *sys.argv[2:]]
try:
    runpy.run_module("astra_cli", run_name="__main__")
except SystemExit as end:
    code = end.code
with open(report, "w") as file:
    json.dump({"exit": code, "numpy": "numpy" in sys.modules,
               "joblib": "joblib" in sys.modules, "children": children()}, file)
"""
)


def invoking_process(tmp_path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """Run `astra ARGS` in a process that says, once the command is over, whether it imported
    numpy and joblib, and which processes it started that still run (loky's workers and
    helpers live until the process exits)."""
    report = tmp_path / "invoking.json"
    report.unlink(missing_ok=True)
    result = subprocess.run(
        [sys.executable, "-c", INVOKING_PROCESS, str(report), *args],
        capture_output=True,
        text=True,
    )
    return result, json.loads(report.read_text())


def loky_processes(invoking: dict) -> dict[str, list[bool]]:
    """The invoking process's children that loky started, by kind: whether each loaded numpy."""
    kinds = {
        "workers": "popen_loky",
        "lokys tracker": "astra_cli.engine.lokytracker",
        "multiprocessing's tracker": "multiprocessing.resource_tracker",
    }
    return {
        kind: [child["numpy"] for child in invoking["children"] if marker in child["command"]]
        for kind, marker in kinds.items()
    }


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="finds child processes in /proc")
def test_numpy_is_left_to_the_workers_and_a_rerun_with_nothing_to_do_starts_no_process(
    demo_files, tmp_path
):
    """Into a new output directory, the invoking process imports joblib without numpy, which
    only the workers need (`start_helpers`, which also starts loky's helpers there). loky's
    resource tracker imports none either (`lokytracker`), there and on a rerun that adds runs
    to the store. A rerun with nothing left to do imports no joblib and starts no process."""
    stars = star_paths(demo_files)

    def command(paths: list[str]) -> tuple[str, ...]:
        manifest = tmp_path / "paths.txt"
        manifest.write_text("\n".join(paths) + "\n")
        return (
            "analyse", "grid", "--grid", str(demo_files.grid_fits), "--from-file",
            str(manifest), "--jobs", "2", "-o", str(tmp_path / "out"), "--json",
        )  # fmt: skip

    first, invoking = invoking_process(tmp_path, *command(stars[:-2]))

    assert invoking["exit"] == 0, first.stderr
    assert json.loads(first.stdout)["ok"] == len(stars) - 2
    assert invoking["joblib"] and not invoking["numpy"], "numpy was imported by astra itself"
    assert loky_processes(invoking) == {
        "workers": [True, True],
        "lokys tracker": [False],
        "multiprocessing's tracker": [False],
    }, invoking["children"]

    added, invoking = invoking_process(tmp_path, *command(stars))

    assert invoking["exit"] == 0, added.stderr
    assert json.loads(added.stdout)["ok"] == 2
    assert loky_processes(invoking)["lokys tracker"] == [False], invoking["children"]

    again, invoking = invoking_process(tmp_path, *command(stars))

    assert invoking["exit"] == 0, again.stderr
    assert json.loads(again.stdout)["already_done"] == len(stars)
    assert not invoking["joblib"] and invoking["children"] == []


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="finds child processes in /proc")
def test_one_job_starts_no_process(demo_files, tmp_path):
    """With --jobs 1 joblib runs the chunks in the invoking process: astra starts neither a
    worker nor loky's resource tracker."""
    result, invoking = invoking_process(
        tmp_path, "analyse", "grid", *star_paths(demo_files)[:3], "--grid",
        str(demo_files.grid_fits), "--jobs", "1", "-o", str(tmp_path / "out"), "--json",
    )  # fmt: skip

    assert invoking["exit"] == 0, result.stderr
    assert json.loads(result.stdout)["ok"] == 3
    assert invoking["children"] == []


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="finds child processes in /proc")
def test_lokys_tracker_finds_astra_where_a_program_found_it(demo_files, tmp_path):
    """A program that put astra and its dependencies on sys.path itself (here: one run
    without site-packages, `python -S`, which its children inherit) still gets the tracker
    without numpy, started where it finds astra and joblib as the program did."""
    import site

    import astra_cli

    added = [*site.getsitepackages(), str(Path(astra_cli.__file__).resolve().parents[1])]
    script = (
        "import json, os, sys\n"
        + CHILDREN
        + f"""
sys.path.extend({added!r})
import astra_cli
summary = astra_cli.run(
    "grid", {star_paths(demo_files)[:4]!r}, output_dir={str(tmp_path / "out")!r},
    grid={str(demo_files.grid_fits)!r}, jobs=2,
)
print(json.dumps([summary.ok, children()]))
"""
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", script], capture_output=True, text=True, cwd=tmp_path
    )

    assert result.returncode == 0, result.stderr
    ok, children = json.loads(result.stdout)
    assert ok == 4
    trackers = [child for child in children if "lokytracker" in child["command"]]
    assert len(trackers) == 1 and not trackers[0]["numpy"], children
    assert "Traceback" not in result.stderr and "died" not in result.stderr, result.stderr


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="finds child processes in /proc")
def test_lokys_tracker_started_by_astra_removes_what_a_dead_process_left(tmp_path):
    """The tracker astra starts without numpy (`backends.start_loky_tracker`) is loky's own:
    a folder registered by a process that dies without removing it is removed, with loky's
    warning."""
    leaked = tmp_path / "leaked"
    script = (
        "import json, os, sys\n"
        + CHILDREN
        + f"""
from joblib.externals.loky.backend import resource_tracker
from astra_cli.engine.backends import start_loky_tracker
start_loky_tracker()
os.mkdir({str(leaked)!r})
resource_tracker.register({str(leaked)!r}, "folder")
print(json.dumps(children()), flush=True)
os._exit(0)  # gone without removing it, as a killed worker would be
"""
    )
    # Returns once the tracker, which writes to the same stderr, has exited.
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    (tracker,) = json.loads(result.stdout)
    assert "astra_cli.engine.lokytracker" in tracker["command"], tracker
    assert not leaked.exists()
    assert "leaked folder" in result.stderr, result.stderr


TRACKER_IMPORTS = """
import json, sys
if sys.argv[1:] == ["--joblib-first"]:
    import joblib
from astra_cli.engine import lokytracker
main = lokytracker.main  # as the tracker's command asks for it
from joblib.externals.loky.backend import resource_tracker
import joblib
seen = {
    "same main": main is resource_tracker.main,
    "joblib run": hasattr(joblib, "Parallel"),
    "numpy": "numpy" in sys.modules,
}
if sys.argv[1:] == ["--whole"]:  # what the tracker does when joblib needs its packages' code
    main = lokytracker._with_numpy_hidden()
    import joblib
    seen = {
        "same main": main is sys.modules[lokytracker.TRACKER_MODULE].main,
        "joblib run": hasattr(joblib, "Parallel"),
        "numpy": "numpy" in sys.modules,
    }
print(json.dumps(seen))
"""


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ([], {"same main": True, "joblib run": False, "numpy": False}),
        (["--whole"], {"same main": True, "joblib run": True, "numpy": False}),
        (["--joblib-first"], {"same main": True, "joblib run": True, "numpy": True}),
    ],
    ids=["packages-unrun", "whole-joblib", "joblib-imported-first"],
)
def test_lokys_tracker_imports_loky_main_without_joblibs_packages(how, expected):
    """The tracker's interpreter gets loky's own `main` with joblib's packages left unrun
    (no joblib.Parallel, no numpy), or, where a joblib needs them, joblib whole without numpy,
    the partial packages dropped first. A process that imported joblib keeps it whole."""
    result = subprocess.run(
        [sys.executable, "-c", TRACKER_IMPORTS, *how], capture_output=True, text=True
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected


def test_a_request_refused_after_lokys_helpers_started_says_one_line(demo_files, tmp_path):
    """The helpers started for a new output directory say nothing when the request is then
    refused (their output would reach the terminal), and nothing is created."""
    missing = tmp_path / "no-such-grid.fits"

    result = astra_subprocess(
        "analyse", "grid", *star_paths(demo_files)[:4], "--grid", str(missing), "--jobs", "2",
        "-o", str(tmp_path / "out"),
    )  # fmt: skip

    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and str(missing) in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("backend", "jobs", "store", "started"),
    [
        ("loky", 2, False, True),
        ("loky", 2, True, False),  # it may hold every run already: a rerun starts nothing
        ("loky", 1, False, False),  # joblib runs a lone worker in the invoking process
        ("threading", 2, False, False),
    ],
)
def test_lokys_helpers_start_early_only_for_work_that_needs_them(
    tmp_path, backend, jobs, store, started
):
    if store:
        ResultsStore(tmp_path / "out").close()
    script = f"""
import sys
from astra_cli.engine.backends import Backend
from astra_cli.engine.warmstart import start_helpers
started = start_helpers(Backend({backend!r}, {jobs}), {str(tmp_path / "out")!r})
print(started, "joblib" in sys.modules, "numpy" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(started), str(started), "False"]


@pytest.mark.skipif(
    not hasattr(os, "confstr") or not os.confstr("CS_GNU_LIBC_VERSION"), reason="glibc's malloc"
)
@pytest.mark.parametrize(
    "workers",
    [
        ["--jobs", "1"],
        ["--jobs", "2"],
        pytest.param(
            ["--backend", "dask", "--jobs", "2"],
            marks=pytest.mark.skipif(
                importlib.util.find_spec("distributed") is None, reason="the dask extra"
            ),
        ),
    ],
)
def test_the_process_that_analyses_keeps_one_chunks_memory_for_the_next(
    fifty_spectra, tmp_path, plugin_env, workers
):
    """The process that analyses the chunks (a loky worker, a worker of the dask cluster
    astra starts, astra's own with --jobs 1) keeps the memory a chunk freed, where glibc
    would hand it back to the kernel and the next chunk would fault it in again, zeroed
    (`worker.keep_freed_heap`). Each analysis here frees 48 MiB; a plain Python process
    hands it back."""
    log = tmp_path / "heap.txt"
    result = astra_subprocess(
        "analyse", "counting", *map(str, fifty_spectra[:4]), "--heap-log", str(log), *workers,
        "--chunk-size", "2", "-o", str(tmp_path / "out"), "--json", env=plugin_env,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    given_back = [int(line.split()[1]) for line in load_lines(log)]
    assert len(given_back) == 4
    assert max(given_back) < 8, f"handed back {given_back} MiB"
    plain = subprocess.run(
        [sys.executable, "-c", "from astra_test_plugin import given_back; print(given_back())"],
        capture_output=True, text=True, env=plugin_env, check=True,
    )  # fmt: skip
    assert int(plain.stdout) > 40, "a plain process kept the memory too: the test tells nothing"


def test_no_model_is_loaded_for_a_group_another_invocation_holds(
    fifty_spectra, tmp_path, plugin_env
):
    model, log, out = tmp_path / "model.txt", tmp_path / "log.txt", tmp_path / "out"
    model.write_text("a model")
    options = ("--model", str(model), "--log", str(log), "--jobs", "2", "-o", str(out), "--json")
    first = astra_subprocess(
        "analyse", "text-model", str(fifty_spectra[0]), *options, env=plugin_env
    )
    assert first.returncode == 0, first.stderr
    with ResultsStore(out) as store:
        (group_key,) = {record.group_key for record in store.records()}
    log.unlink()

    locks = GroupLocks(out)
    assert locks.acquire(group_key), "the first invocation left its lock held"
    try:
        result = astra_subprocess(
            "analyse", "text-model", *map(str, fifty_spectra[1:9]), *options, env=plugin_env
        )
    finally:
        locks.release_all()

    assert result.returncode == ExitCode.LOCKED, result.stderr
    assert json.loads(result.stdout)["locked"] == 8
    assert not log.exists(), "a model was loaded for runs this invocation could not do"


def test_a_plan_prepared_twice_runs_on_its_workers(fifty_spectra, tmp_path, plugin_env):
    """A notebook cell that prepares a plan, run again before the plan is executed: the first
    plan's workers must not be killed under the second."""
    model, log = tmp_path / "model.txt", tmp_path / "log.txt"
    model.write_text("a model")
    script = f"""
import json
from astra_cli.api import execute_plan, prepare
from astra_cli.engine.backends import Backend
from astra_cli.vocabulary import numbered, Observation
from astra_cli.io.identifiers import observation_from_path

backend = Backend.chosen("loky", 2)
observations = numbered([observation_from_path(p) for p in {list(map(str, fifty_spectra[:6]))!r}])
options = {{"model": [{str(model)!r}], "log": [{str(log)!r}]}}
for _ in range(2):
    plan = prepare("text-model", observations, options, output_dir={str(tmp_path / "out")!r},
                   backend=backend, chunk_size=2)
summary = execute_plan(plan, backend=backend)
print(json.dumps(summary.to_dict()))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=plugin_env
    )

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr, result.stderr
    assert json.loads(result.stdout)["ok"] == 6
    loads = [line for line in load_lines(log) if line.startswith("load ")]
    assert len(loads) == len(set(loads)) <= 2, "once per worker: the second plan ran on the first's"


def test_ctrl_c_while_the_request_is_checked_says_one_line(fifty_spectra, tmp_path, plugin_env):
    model, log = tmp_path / "model.txt", tmp_path / "log.txt"
    model.write_text("a model")
    command = [
        sys.executable, "-m", "astra_cli", "analyse", "text-model",
        *map(str, fifty_spectra[:8]), "--model", str(model), "--log", str(log),
        "--check-waits-for", "2", "--jobs", "2", "-o", str(tmp_path / "out"),
    ]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=plugin_env
    )
    deadline = time.monotonic() + 60
    while not any(line.startswith("loaded ") for line in load_lines(log)):
        assert time.monotonic() < deadline, "no worker loaded the model"
        time.sleep(0.05)  # one worker loaded; the other makes the check, which waits for a
        # second load that only that worker would make, after the check
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == ExitCode.INTERRUPTED, stderr
    assert stderr.splitlines() == ["astra: error: interrupted"]
    assert not (tmp_path / "out").exists()


def test_a_worker_whose_mapped_files_fill_its_memory_keeps_its_model(
    fifty_spectra, tmp_path, plugin_env
):
    """A fit reads a memory-mapped grid, whose pages then count in the worker's resident
    memory: loky's leak guard would take 300 MB more than after the worker's first task for a
    leak, restart the worker (which loads the model again) and warn. astra bounds what its
    workers hold itself, so its workers keep theirs."""
    model, log, mapped = tmp_path / "model.txt", tmp_path / "log.txt", tmp_path / "grid.bin"
    model.write_text("a model")
    with open(mapped, "wb") as handle:  # sparse: no disk, its pages are read as zeros
        handle.truncate(320 * 2**20)

    result = astra_subprocess(
        "analyse", "text-model", *map(str, fifty_spectra[:8]), "--model", str(model),
        "--log", str(log), "--mapped", str(mapped), "--delay", "0.3", "--jobs", "2",
        "--chunk-size", "2", "-o", str(tmp_path / "out"), "--json", env=plugin_env,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["ok"], summary["chunks"], summary["model_loads"]) == (8, 4, 2)
    loads = [line for line in load_lines(log) if line.startswith("load ")]
    assert len(loads) == 2, "a worker was restarted and loaded the model again"
    assert "worker stopped" not in result.stderr, result.stderr


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
    assert records[str(crash)].fault == "run"
    died = [r for r in records.values() if r.status == "failed"]
    assert len(died) == 1, "the run the other worker held was run again"

    again, _ = run_counting(paths, tmp_path, "--jobs", "2", env=plugin_env)
    assert again.returncode == 1
    assert json.loads(again.stdout)["ran"] == 0, "a run that kills its worker is not retried"


def test_a_worker_killed_in_a_batch_fails_only_the_run_that_killed_it(
    fifty_spectra, tmp_path, plugin_env
):
    """`analyse_batch` holds the whole chunk in hand: the chunk's runs are run again one by
    one, alone, and only the one that kills its worker again fails."""
    crash = shutil.copy(fifty_spectra[0], tmp_path / "apStar-crash.fits")
    paths = [*fifty_spectra[1:25], crash]
    result = astra_subprocess(
        "analyse", "vectorised", *map(str, paths), "--chunk-size", "25", "--jobs", "2",
        "-o", str(tmp_path / "out"), "--json", env=plugin_env,
    )  # fmt: skip

    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["failed"] == 1
    with ResultsStore(tmp_path / "out") as store:
        failed = list(store.records(status="failed"))
        assert store.count(status="ok") == 24
    assert [record.input_path for record in failed] == [str(crash)]


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
