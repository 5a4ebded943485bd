"""A run knows what it was computed from: a changed input or model makes it stale, and the next
plain invocation runs it again; nothing else reruns. One invocation never stores results of
two versions of a model under one group.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import replace

import numpy as np
import pytest
from conftest import stored_count
from demo_paths import star_paths
from fits_factory import write_apstars
from typer.testing import CliRunner

from astra_cli.cli.app import app
from astra_cli.engine.fingerprints import Fingerprints, file_digest
from astra_cli.engine.planner import CurrentState, RunPolicy, classify
from astra_cli.errors import UsageError
from astra_cli.io.grids import read_grid, write_grid
from astra_cli.io.store import _SCHEMA_1, SCHEMA_VERSION, ResultsStore
from astra_cli.methods.base import Method
from astra_cli.vocabulary import Observation, StoredRun

runner = CliRunner()


@pytest.fixture(scope="module")
def spectra(tmp_path_factory):
    return write_apstars(tmp_path_factory.mktemp("fingerprint-spectra"), 40)


def analyse(paths, out, *options, method="counting"):
    """`astra analyse METHOD` in this process, sequentially; its JSON summary."""
    result = runner.invoke(
        app,
        ["analyse", method, *map(str, paths), "-o", str(out), "--json",
         "--backend", "sequential", *map(str, options)],
    )  # fmt: skip
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def later(path):
    """Give a file a later modification time, as an edit does, without changing its bytes."""
    status = os.stat(path)
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + 5_000_000_000))


def rewrite(path, text):
    path.write_text(text)
    later(path)  # a rewrite within the file system's time resolution still shows


def results(out):
    with ResultsStore(out) as store:
        return {(r.options.get("model"), r.input_path): r for r in store.records()}


def test_unchanged_reruns_nothing_and_a_touched_input_reruns_only_its_run(
    with_plugin, spectra, tmp_path
):
    out = tmp_path / "out"
    assert analyse(spectra[:3], out)["ran"] == 3
    assert analyse(spectra[:3], out)["ran"] == 0

    later(spectra[1])
    summary = analyse(spectra[:3], out)
    assert (summary["ran"], summary["stale"], summary["already_done"]) == (1, 1, 2)
    assert analyse(spectra[:3], out)["ran"] == 0


def test_with_checksum_a_touched_input_is_not_stale_but_changed_bytes_are(
    with_plugin, spectra, tmp_path
):
    out = tmp_path / "out"
    copies = []
    for index, path in enumerate(spectra[:2]):
        copies.append(tmp_path / f"apStar-copy{index}.fits")
        copies[-1].write_bytes(path.read_bytes())
    assert analyse(copies, out, "--checksum")["ran"] == 2

    later(copies[0])
    assert analyse(copies, out, "--checksum")["ran"] == 0
    copies[1].write_bytes(spectra[5].read_bytes())
    summary = analyse(copies, out, "--checksum")
    assert (summary["ran"], summary["stale"]) == (1, 1)


def test_a_model_rewritten_in_place_reruns_exactly_its_runs(with_plugin, spectra, tmp_path):
    out, first, second = tmp_path / "out", tmp_path / "m1.txt", tmp_path / "m2.txt"
    first.write_text("first, v1")
    second.write_text("second, v1")
    model_options = ("--model", first, "--model", second)
    assert analyse(spectra[:3], out, *model_options, method="text-model")["ran"] == 6

    later(second)  # touched, not changed: its digest is the same
    assert analyse(spectra[:3], out, *model_options, method="text-model")["ran"] == 0

    rewrite(first, "first, v2")
    summary = analyse(spectra[:3], out, *model_options, method="text-model")
    assert (summary["ran"], summary["stale"]) == (3, 3)
    texts = {key: run.result["model_text"] for key, run in results(out).items()}
    assert sorted(texts.values()) == ["first, v2"] * 3 + ["second, v1"] * 3

    status = runner.invoke(
        app, ["status", "text-model", *map(str, spectra[:3]), *map(str, model_options),
              "-o", str(out), "--json"],
    )  # fmt: skip
    assert json.loads(status.stdout)["stale"] == 0
    rewrite(second, "second, v2")
    status = runner.invoke(
        app, ["status", "text-model", *map(str, spectra[:3]), *map(str, model_options),
              "-o", str(out), "--json"],
    )  # fmt: skip
    assert (json.loads(status.stdout)["stale"], json.loads(status.stdout)["done"]) == (3, 3)


def test_a_grid_rewritten_in_place_reruns_its_runs(demo_files, tmp_path):
    grid_path, out = tmp_path / "grid.fits", tmp_path / "out"
    grid = read_grid(demo_files.grid_fits)
    write_grid(grid, grid_path, "astra")
    stars = star_paths(demo_files)[:3]
    args = ["analyse", "grid", *stars, "--grid", str(grid_path), "-o", str(out), "--json"]
    assert json.loads(runner.invoke(app, args).stdout)["ran"] == 3

    values = np.array(grid.values, dtype=np.float32) * np.float32(0.999)
    write_grid(replace(grid, values=values), grid_path, "astra")
    summary = json.loads(runner.invoke(app, args).stdout)
    assert (summary["ran"], summary["stale"]) == (3, 3)
    with ResultsStore(out) as store:
        (state,) = {record.model_state for record in store.records()}
    assert state and json.loads(runner.invoke(app, args).stdout)["ran"] == 0


def test_model_digests_are_remembered_by_size_and_modification_time(with_plugin, spectra, tmp_path):
    out, model = tmp_path / "out", tmp_path / "model.txt"
    model.write_text("v1")
    analyse(spectra[:1], out, "--model", model, method="text-model")
    with sqlite3.connect(out / "astra.sqlite") as connection:
        rows = connection.execute("SELECT path, size, digest FROM model_digests").fetchall()
    assert rows == [(str(model), 2, file_digest(model))]


class PipeModel(Method):
    """A method whose model file is a named pipe: reading it waits until a test writes it."""

    name = "pipe-model"

    def __init__(self, model):
        self.model = model

    def model_files(self):
        return [self.model]


def write_into(pipe, data, returned, *, keep_mtime=False):
    """Write `data` into a named pipe from another thread once `returned` is set, or after 5 s
    (the thread's `saw_it_set` says which), and 50 ms: a time that a file system with a
    coarse clock still tells from the moment the pipe was looked at. With `keep_mtime`, the
    pipe gets its modification time back before the reader sees the end."""

    def write():
        thread.saw_it_set = returned.wait(5)
        time.sleep(0.05)
        before = os.stat(pipe)
        with open(pipe, "wb") as writer:
            writer.write(data)
            writer.flush()
            if keep_mtime:
                os.utime(pipe, ns=(before.st_atime_ns, before.st_mtime_ns))

    thread = threading.Thread(target=write)
    thread.start()
    return thread


def test_a_new_stores_model_digest_is_read_while_the_plan_goes_on(tmp_path):
    """Without a store yet, nothing stored is compared with the digest: it is read in the
    background, and waited for where it is stored."""
    pipe = tmp_path / "model.pipe"
    os.mkfifo(pipe)
    fingerprints = Fingerprints(None)
    returned = threading.Event()
    writer = write_into(pipe, b"a model", returned, keep_mtime=True)

    fingerprint = fingerprints.model(PipeModel(str(pipe)))
    returned.set()
    digest = fingerprint.digest
    writer.join()

    assert writer.saw_it_set, "the plan waited for the model file to be read"
    assert len(digest) == 16
    with ResultsStore(tmp_path / "out") as store:
        fingerprints.remember(store)
    with sqlite3.connect(tmp_path / "out" / "astra.sqlite") as connection:
        rows = connection.execute("SELECT path, digest FROM model_digests").fetchall()
    assert rows == [(str(pipe), hashlib.sha256(b"a model").hexdigest())]


def test_a_model_that_changes_while_read_in_the_background_is_refused(tmp_path):
    pipe = tmp_path / "model.pipe"
    os.mkfifo(pipe)
    returned = threading.Event()
    writer = write_into(pipe, b"written after the plan looked at it", returned)
    fingerprint = Fingerprints(None).model(PipeModel(str(pipe)))
    returned.set()

    with pytest.raises(UsageError, match=r"model file .*model\.pipe changed while astra read it"):
        _ = fingerprint.digest
    writer.join()


def test_a_model_replaced_mid_run_never_mixes_two_models_in_a_group(plugin_env, spectra, tmp_path):
    out, model = tmp_path / "out", tmp_path / "model.txt"
    model.write_text("v1")
    command = [
        sys.executable, "-m", "astra_cli", "analyse", "text-model", *map(str, spectra),
        "--model", str(model), "--delay", "0.05", "--jobs", "1", "--chunk-size", "5",
        "-o", str(out), "--json",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=plugin_env
    )
    deadline = time.monotonic() + 60
    while not stored_count(out) and time.monotonic() < deadline:
        time.sleep(0.05)
    rewrite(model, "v2")
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == 1, stderr
    runs = results(out).values()
    ok = [run for run in runs if run.status == "ok"]
    failed = [run for run in runs if run.status == "failed"]
    assert ok and failed and len(ok) + len(failed) == len(spectra)
    assert {run.result["model_text"] for run in ok} == {"v1"}, "one model per group"
    assert all("model files changed" in run.error for run in failed)
    assert {run.fault for run in failed} == {"environment"}

    rerun = subprocess.run(command, capture_output=True, text=True, env=plugin_env)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["ran"] == len(spectra), "the old model's results are stale too"
    assert {run.result["model_text"] for run in results(out).values()} == {"v2"}


def test_a_store_of_the_previous_schema_is_migrated_and_its_runs_kept(
    with_plugin, spectra, tmp_path
):
    out = tmp_path / "out"
    assert analyse(spectra[:2], out)["ran"] == 2
    with sqlite3.connect(out / "astra.sqlite") as connection:
        rows = connection.execute(
            "SELECT group_key, observation, method, method_version, options, identifiers, "
            "input_path, status, result, error, started_at, duration_s, astra_version FROM runs"
        ).fetchall()
    (out / "astra.sqlite").unlink()
    with sqlite3.connect(out / "astra.sqlite") as connection:
        for statement in _SCHEMA_1:
            connection.execute(statement)
        connection.executemany(f"INSERT INTO runs VALUES ({','.join('?' * 13)})", rows)
        connection.execute("PRAGMA user_version = 1")

    exported = runner.invoke(
        app, ["results", "counting", "--output-dir", str(out), "-o", "-", "--format", "csv"]
    )
    assert exported.exit_code == 0 and exported.stdout.count("\n") == 3, exported.output
    assert analyse(spectra[:2], out)["already_done"] == 2, "runs of older astra are kept"
    with sqlite3.connect(out / "astra.sqlite") as connection:
        assert connection.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


def test_train_refuses_to_replace_a_model_without_overwrite(demo_files, tmp_path):
    existing = tmp_path / "cannon.fits"
    existing.write_bytes(demo_files.cannon_model.read_bytes())
    result = runner.invoke(
        app, ["train", "cannon", "--from-file", str(demo_files.training_manifest),
              "--labels", "teff,logg,m_h", "-o", str(existing), "--data-root",
              str(demo_files.data_root)],
    )  # fmt: skip
    assert result.exit_code == 2
    assert f"--output {existing} exists; add --overwrite to replace it" in result.output
    assert existing.read_bytes() == demo_files.cannon_model.read_bytes()


def test_an_input_missing_now_or_known_the_other_way_is_not_taken_for_changed():
    """An unmounted disk must not turn every good result into a failure; switching
    --checksum on must not rerun everything."""
    observation = Observation("path:/data/a.fits", "/data/a.fits")
    stored = {observation.key: StoredRun("ok", "100:5", "model-1")}
    policy = RunPolicy()

    def sorted_runs(now: str, model: str = "model-1"):
        return classify([observation], stored, policy, CurrentState({observation.key: now}, model))

    assert sorted_runs("missing").done == 1
    assert sorted_runs("sha256:" + "0" * 64).done == 1
    assert sorted_runs("100:6").stale == 1
    assert sorted_runs("100:5", model="model-2").stale == 1
