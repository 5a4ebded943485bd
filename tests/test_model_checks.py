"""A model that passed its method's checks is not read again while its files are unchanged:
a nightly rerun with nothing to do imports neither numpy nor astropy, and a grid replaced,
another option, or a grid that failed is checked again."""

from __future__ import annotations

import json
import os
import shutil

from astropy.io import fits
from conftest import ROOT, astra_subprocess
from test_startup import heavy, imported_modules
from typer.testing import CliRunner

from astra_cli.cli.app import app

runner = CliRunner()


def analyse(grid, demo_files, out, *extra):
    paths = sorted(str(path) for path in demo_files.data_root.rglob("apStar-*.fits"))[:3]
    args = ["analyse", "grid", "--grid", str(grid), *paths, "-o", str(out), "-j", "1", *extra]
    return runner.invoke(app, args)


def test_a_rerun_with_nothing_to_do_reads_no_model_and_imports_no_science(demo_files, tmp_path):
    out = tmp_path / "out"
    assert analyse(demo_files.grid_fits, demo_files, out).exit_code == 0
    paths = sorted(str(path) for path in demo_files.data_root.rglob("apStar-*.fits"))[:3]
    modules = imported_modules(
        "analyse", "grid", "--grid", str(demo_files.grid_fits), *paths, "-o", str(out), "-q",
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert "astra_cli.engine.runner" in modules, "the rerun did not get as far as running"
    assert not heavy(modules), heavy(modules)


def test_a_grid_replaced_by_a_bad_one_is_refused_again(demo_files, tmp_path):
    grid = tmp_path / "grid.fits"
    shutil.copy(demo_files.grid_fits, grid)
    out = tmp_path / "out"
    assert analyse(grid, demo_files, out).exit_code == 0
    grid.write_bytes(b"SIMPLE  =                    T" + b" " * 50)  # not a grid any more

    refused = analyse(grid, demo_files, out, "--force")
    assert refused.exit_code == 2, refused.output
    assert str(grid) in refused.stderr


def test_another_option_is_checked_again(demo_files, tmp_path):
    """The demo grid is in vacuum: checked again with --weights naming a file of the wrong
    length, the request is refused although the grid alone passed before."""
    out = tmp_path / "out"
    assert analyse(demo_files.grid_fits, demo_files, out).exit_code == 0
    weights = tmp_path / "weights.txt"
    weights.write_text("1\n1\n")

    refused = analyse(demo_files.grid_fits, demo_files, out, "--weights", str(weights))
    assert refused.exit_code == 2, refused.output
    assert "weights" in refused.stderr


def test_a_failed_check_is_not_remembered(demo_files, tmp_path):
    grid = tmp_path / "grid.fits"
    grid.write_bytes(b"not a grid")
    out = tmp_path / "out"
    for _ in range(2):
        refused = analyse(grid, demo_files, out)
        assert refused.exit_code == 2, refused.output


def test_a_store_not_yet_set_up_is_no_reason_to_stop(demo_files, tmp_path):
    """An empty astra.sqlite (another invocation has just created it, its tables not yet
    written) remembers no check; the invocation sets it up and runs."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "astra.sqlite").touch()
    analysed = analyse(demo_files.grid_fits, demo_files, out)
    assert analysed.exit_code == 0, analysed.output


def test_a_damaged_model_is_refused_in_one_line_whatever_the_workers_met(demo_files, tmp_path):
    """The workers started beside the checks load the model too, and astropy warns of a
    damaged FITS file as it reads it: with two workers, its warnings came twice before
    astra's own refusal of the file."""
    data = demo_files.cannon_model.read_bytes()
    with fits.open(demo_files.cannon_model) as hdus:
        second, third = hdus.fileinfo(2)["datLoc"], hdus.fileinfo(3)["hdrLoc"]
    model = tmp_path / "cut.fits"
    model.write_bytes(data[: second + 50])  # inside HDU2's data
    paths = sorted(str(path) for path in demo_files.data_root.rglob("apStar-*.fits"))[:4]

    refused = astra_subprocess(
        "analyse", "cannon", "--model", str(model), *paths, "-o", str(tmp_path / "out"),
        "--jobs", "2",
    )  # fmt: skip

    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        f"astra: error: Cannon model {model} is truncated: HDU2 needs "
        f"{third:,} bytes, the file has {second + 50:,}"
    ]


def test_a_warning_of_a_model_that_loads_is_kept_though_the_warm_start_holds_it_back(
    plugin_env, real_apvisits, tmp_path
):
    """The warm start's loads keep their warnings until the request is accepted (a refused
    one says only why: above), then show them: none is lost, and none is shown twice by one
    load."""
    for jobs in ("1", "2"):
        ran = astra_subprocess(
            "analyse", "counting", *map(str, real_apvisits), "-o", str(tmp_path / jobs),
            "--load-warning", "the model's header is odd", "--jobs", jobs, "--json",
            env=plugin_env,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        loads = json.loads(ran.stdout)["model_loads"]
        shown = ran.stderr.count("UserWarning: the model's header is odd")
        assert 1 <= shown <= loads, (jobs, loads, ran.stderr)
