"""Shared fixtures: the real APOGEE files, synthetic apStar files, and the test plugin
installed the way users install method plugins."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from astra_cli.errors import API_SPELLING, Spelling, command_line_spelling
from astra_cli.methods import registry

ROOT = Path(__file__).resolve().parent.parent
REAL_DATA = ROOT.parent / "shared" / "data" / "apogee"
REAL_APVISITS = sorted(REAL_DATA.glob("apVisit-*.fits"))
PLUGIN_SOURCE = Path(__file__).resolve().parent / "plugin"


@pytest.fixture(scope="session")
def real_apvisits() -> list[Path]:
    if len(REAL_APVISITS) != 2:
        pytest.fail(f"the real APOGEE test files are missing from {REAL_DATA}")
    return REAL_APVISITS


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory) -> Path:
    """The test plugin, pip-installed into a directory of its own, from a copy of its source:
    pip builds in the source tree, where the test processes running at once would collide."""
    source = tmp_path_factory.mktemp("plugin-source") / "plugin"
    shutil.copytree(PLUGIN_SOURCE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = tmp_path_factory.mktemp("plugin-site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
         str(source)],
        check=True,
    )  # fmt: skip
    return target


@pytest.fixture
def plugin_env(plugin_dir) -> dict[str, str]:
    """The environment of a real `astra` process (and its workers) that sees the plugin."""
    return {**os.environ, "PYTHONPATH": str(plugin_dir)}


def stored_count(output_dir: Path) -> int:
    """Runs in a store, read as `astra status` reads it (0 while it is not created yet), for
    tests that watch another process fill it."""
    from astra_cli.errors import UsageError
    from astra_cli.io.store import ResultsStore

    try:
        with ResultsStore(output_dir, read_only=True) as store:
            return store.count()
    except UsageError:  # not there yet, or its tables not yet created
        return 0


@pytest.fixture
def with_plugin(plugin_dir, monkeypatch) -> Path:
    """Make the installed plugin visible to this process (and its workers)."""
    monkeypatch.syspath_prepend(str(plugin_dir))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(plugin_dir), os.environ.get("PYTHONPATH")]))
    )
    registry._entry_points.cache_clear()
    registry.load_method.cache_clear()
    yield plugin_dir
    registry._entry_points.cache_clear()
    registry.load_method.cache_clear()


def astra_subprocess(*args: str, env: dict | None = None, cwd: Path | None = None, **kwargs):
    """Run the installed `astra` in a real process, as a shell or cron would."""
    return subprocess.run(
        [sys.executable, "-m", "astra_cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        **kwargs,
    )


@pytest.fixture(scope="session")
def demo_files(tmp_path_factory):
    """A small demo data set (16 test stars at S/N 100, 200 training stars), written once."""
    from astra_cli.demo.dataset import DemoConfig, write_demo

    return write_demo(tmp_path_factory.mktemp("demo"), DemoConfig(n_stars=16, n_train=200))


@pytest.fixture(scope="session")
def fitted_store(demo_files, tmp_path_factory) -> Path:
    """A store of the demo stars, named by identifier: grid (rv first, spectra saved) and snr
    (which saves none). Only read by the tests that use it."""
    from typer.testing import CliRunner

    from astra_cli.cli.app import app

    out = tmp_path_factory.mktemp("fitted")
    common = ["--from-file", str(demo_files.stars_manifest), "--data-root",
              str(demo_files.data_root), "-o", str(out), "-j", "1", "--quiet"]  # fmt: skip
    grid = ["analyse", "grid", "--grid", str(demo_files.grid_fits), "--save-spectra", *common]
    assert CliRunner().invoke(app, grid).exit_code == 0
    assert CliRunner().invoke(app, ["analyse", "snr", *common]).exit_code == 0
    return out


@pytest.fixture(params=["python", "command line"])
def words(request) -> Spelling:
    """Run the test in the words of each kind of caller, the Python API's and the command
    line's; the fixture is how options are spelled there (`'order'` or `--order`)."""
    if request.param == "python":
        yield API_SPELLING
        return
    with command_line_spelling():
        from astra_cli.errors import spelling

        yield spelling()


def drawn(path: Path) -> Any:
    """The image's pixels, after checking that it is a real image with something on it."""
    from matplotlib.image import imread

    pixels = imread(path)[..., :3]
    assert pixels.shape[0] > 300 and pixels.shape[1] > 300
    not_white = (pixels < 0.9).any(axis=-1).mean()
    assert 0.02 < not_white < 0.9, f"{path} looks blank or filled ({not_white:.3f} inked)"
    return pixels
