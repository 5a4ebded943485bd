"""`astra forget`: stored runs removed (and the spectra they saved), so that the next
invocation runs them again; nothing removed without --yes where nobody can be asked."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time

import pytest
from demo_paths import star_paths
from typer.testing import CliRunner

from astra_cli.cli.app import app
from astra_cli.io.store import ResultsStore

runner = CliRunner()


@pytest.fixture
def store(demo_files, tmp_path):
    """grid on 4 demo stars with their fits saved, and one missing input (failed)."""
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["analyse", "grid", *star_paths(demo_files)[:4], str(tmp_path / "apStar-gone.fits"),
              "--grid", str(demo_files.grid_fits), "--save-spectra", "-o", str(out), "-j", "1",
              "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    return out


def forget(out, *args, input=None):
    return runner.invoke(app, ["forget", "grid", *args, "--output-dir", str(out)], input=input)


def counts(out):
    with ResultsStore(out) as store:
        return store.count(status="ok"), store.count(status="failed")


def test_dry_run_says_what_and_changes_nothing(store):
    result = forget(store, "--dry-run")
    assert result.exit_code == 0
    assert "would forget 5 run(s) of grid and 4 file(s)" in result.stderr
    assert counts(store) == (4, 1)


def test_forgetting_failed_runs_only(store):
    result = forget(store, "--status", "failed", "--yes")
    assert result.exit_code == 0, result.output
    assert "forgot 1 run(s) of grid" in result.stderr
    assert counts(store) == (4, 0)


def test_forgotten_runs_and_their_files_go_and_are_run_again(demo_files, store):
    saved = sorted((store / "spectra").rglob("*.fits"))
    assert len(saved) == 4
    assert forget(store, "--status", "ok", "--yes").exit_code == 0
    assert counts(store) == (0, 1)
    assert not any(path.exists() for path in saved)
    again = runner.invoke(
        app, ["analyse", "grid", *star_paths(demo_files)[:4], "--grid", str(demo_files.grid_fits),
              "--save-spectra", "-o", str(store), "-j", "1", "--json"],
    )  # fmt: skip
    assert json.loads(again.stdout)["ran"] == 4


def test_before_a_time_and_one_group(store):
    later = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 3600))
    earlier = "2000-01-01"
    assert "nothing to forget" in forget(store, "--before", earlier, "--yes").stderr
    with ResultsStore(store) as opened:
        (group,) = opened.group_keys("grid")
    assert forget(store, "--group", group, "--before", later, "--yes").exit_code == 0
    assert counts(store) == (0, 0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--before", "yesterday"], "--before 'yesterday' is not an ISO 8601 date"),
        (["--group", "nosuch"], "grid has no group 'nosuch'"),
        ([], "needs --yes when nothing can ask"),
    ],
)
def test_mistakes_are_refused_and_nothing_is_forgotten(store, args, message):
    result = forget(store, *args)
    assert result.exit_code == 2
    assert message in result.output
    assert counts(store) == (4, 1)


def test_a_saved_file_outside_the_output_directory_is_never_deleted(store, tmp_path):
    outside = tmp_path / "precious.fits"
    outside.write_text("keep me")
    with ResultsStore(store) as opened:
        record = next(opened.records(status="ok"))
        result = {**record.result, "spectrum_file": os.path.relpath(outside, store)}
        opened.write([dataclasses.replace(record, result=result)])
    assert forget(store, "--yes").exit_code == 0
    assert outside.read_text() == "keep me"


@pytest.mark.parametrize("verbose", [[], ["--verbose"]])
def test_ctrl_c_at_the_question_forgets_nothing_and_says_so_in_one_line(store, verbose):
    """Asked on a real terminal (a pty), the user presses Ctrl-C: one line, exit 1, no
    traceback even with --verbose, every run kept."""
    import pty
    import select
    import sys

    command = [sys.executable, "-m", "astra_cli", "forget", "grid", "--output-dir", str(store)]
    pid, terminal = pty.fork()
    if pid == 0:  # the child: astra on the terminal
        os.execve(sys.executable, [*command, *verbose], {**os.environ, "NO_COLOR": "1"})
    said, asked, deadline = b"", False, time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([terminal], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(terminal, 4096)
            except OSError:  # the child is gone
                break
            if not chunk:
                break
            said += chunk
        if not asked and b"Forget" in said and b"?" in said:
            time.sleep(0.2)
            os.write(terminal, b"\x03")  # Ctrl-C, as the terminal sends it
            asked = True
    _, status = os.waitpid(pid, 0)
    text = re.sub(r"\x1b\[[0-9;]*m", "", said.decode(errors="replace"))  # no styles
    assert asked, text
    assert os.waitstatus_to_exitcode(status) == 1, text
    assert "astra: error: aborted" in text and "Traceback" not in text, text
    assert counts(store) == (4, 1)
