"""Nothing wrong is stored as ok: model files holding NaN or impossible steps are refused
before any work (exit 2, naming the file), spectra that cannot be analysed fail alone with a
message, option values beyond their bounds are refused, and export survives odd values.

Each case is tried as a user would meet it: the file is written to disk and `astra` is run
on it.
"""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest
from astropy.io import fits
from demo_paths import star_paths
from typer.testing import CliRunner

from astra_cli.cli.app import app
from astra_cli.engine.worker import clean_result
from astra_cli.io.export import results_table
from astra_cli.io.grids import read_grid, write_grid
from astra_cli.io.store import STORE_FILENAME, ResultsStore
from astra_cli.vocabulary import RunRecord

runner = CliRunner()


def analyse(*args: str):
    return runner.invoke(app, ["analyse", *args, "--quiet"])


def stored_runs(output) -> list[RunRecord]:
    if not (output / STORE_FILENAME).exists():
        return []
    with ResultsStore(output) as store:
        return list(store.records())


@pytest.fixture(scope="module")
def nan_grid_values(demo_files):
    grid = read_grid(demo_files.grid_fits)
    values = np.array(grid.values, dtype=np.float32)
    values[7, 300:310] = np.nan
    return replace(grid, values=values)


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("nan.fits", "astra"),
        ("nan.hdr", "ferre-binary"),
        ("nan.npz", "npz"),
        ("nan.dat", "ferre-ascii"),
    ],
)
def test_a_grid_holding_nan_is_refused_before_any_work(
    demo_files, nan_grid_values, tmp_path, name, fmt
):
    path = tmp_path / name
    write_grid(nan_grid_values, path, fmt)
    output = tmp_path / "out"
    star = star_paths(demo_files)[0]
    result = analyse("grid", star, "--grid", str(path), "--output-dir", str(output))
    assert result.exit_code == 2, result.output
    assert str(path) in result.output
    assert "NaN or infinite" in result.output
    assert stored_runs(output) == []


def test_a_grid_error_names_the_node_of_the_first_nan(demo_files, nan_grid_values, tmp_path):
    path = tmp_path / "nan.fits"
    write_grid(nan_grid_values, path, "astra")
    output = tmp_path / "out"
    result = analyse("grid", star_paths(demo_files)[0], "--grid", str(path), "-o", str(output))
    assert "the first at node 8 (" in result.output
    assert "value 301" in result.output


def test_a_ferre_grid_with_a_zero_step_is_refused(demo_files, tmp_path):
    grid = read_grid(demo_files.grid_fits)
    path = tmp_path / "grid.hdr"
    write_grid(grid, path, "ferre-binary")
    header = path.read_text()
    path.write_text(re.sub(r"STEPS = (\S+)", "STEPS = 0.0", header, count=1))
    output = tmp_path / "out"
    result = analyse("grid", star_paths(demo_files)[0], "--grid", str(path), "-o", str(output))
    assert result.exit_code == 2, result.output
    assert "STEPS must be positive" in result.output


def test_a_cannon_model_holding_nan_is_refused(demo_files, tmp_path):
    path = tmp_path / "cannon.fits"
    with fits.open(demo_files.cannon_model) as hdus:
        hdus["THETA"].data[3, 2] = np.nan
        hdus.writeto(path)
    output = tmp_path / "out"
    result = analyse("cannon", star_paths(demo_files)[0], "--model", str(path), "-o", str(output))
    assert result.exit_code == 2, result.output
    assert f"Cannon model {path}: THETA holds NaN" in result.output


def test_rv_templates_holding_infinity_are_refused(demo_files, tmp_path):
    path = tmp_path / "templates.fits"
    with fits.open(demo_files.templates) as hdus:
        hdus[0].data[0, 10] = np.inf
        hdus.writeto(path)
    result = analyse("rv", star_paths(demo_files)[0], "--templates", str(path))
    assert result.exit_code == 2, result.output
    assert f"RV templates {path}: the flux holds infinite values" in result.output


def _broken_star(demo_files, tmp_path, name, change):
    path = tmp_path / name
    with fits.open(star_paths(demo_files)[0]) as hdus:
        change(hdus)
        hdus.writeto(path)
    return path


def _three_dimensional(hdus):
    for index in (1, 2, 3):
        pixels = hdus[index].data.shape[-1]
        hdus[index].data = np.ascontiguousarray(
            np.broadcast_to(hdus[index].data.reshape(-1, pixels)[0], (2, 2, pixels))
        )


def _nan_flux(hdus):
    hdus[1].data = hdus[1].data * np.nan


def _no_error(hdus):
    hdus[2].data = hdus[2].data * 0.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_three_dimensional, "has 3 dimensions"),
        (_nan_flux, "no usable pixel"),
        (_no_error, "no usable pixel"),
    ],
)
def test_a_spectrum_that_cannot_be_analysed_fails_with_a_message(
    demo_files, tmp_path, change, message
):
    star = _broken_star(demo_files, tmp_path, f"apStar-{change.__name__}.fits", change)
    good = star_paths(demo_files)[1]
    output = tmp_path / "out"
    result = analyse(
        "grid", str(star), good, "--grid", str(demo_files.grid_fits), "--output-dir", str(output)
    )
    assert result.exit_code == 1, result.output
    runs = {run.input_path: run for run in stored_runs(output)}
    assert runs[str(star)].status == "failed"
    assert message in runs[str(star)].error
    assert runs[good].status == "ok"
    exported = runner.invoke(
        app, ["results", "grid", "--output-dir", str(output), "--status", "all", "-o", "-",
              "--format", "csv"],
    )  # fmt: skip
    assert exported.exit_code == 0, exported.output


@pytest.mark.parametrize("value", ["99999999999999999999", "-1", "13"])
def test_an_option_beyond_its_bounds_is_refused(demo_files, tmp_path, value):
    output = tmp_path / "out"
    result = analyse(
        "grid", star_paths(demo_files)[0], "--grid", str(demo_files.grid_fits),
        "--continuum-order", value, "--output-dir", str(output),
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert f"option --continuum-order: {value} is out of range; it must be 0 to 12" in (
        result.output
    )
    assert stored_runs(output) == []


def test_help_shows_an_options_bounds():
    result = runner.invoke(app, ["analyse", "grid", "--help"], env={"COLUMNS": "300"})
    assert "default: 4; 0 to 12]" in result.output
    assert "default: 0; at least 0]" in result.output


def test_a_result_beyond_64_bits_fails_the_run():
    with pytest.raises(TypeError, match="does not fit a 64-bit integer"):
        clean_result({"count": 2**70})
    assert clean_result({"count": 2**62}) == {"count": 2**62}


def test_export_survives_integers_beyond_64_bits():
    """An older store may hold them; the table holds them as floats, not an error."""
    record = RunRecord(
        "g", "path:/a.fits", "m", "1", {"order": 10**20}, None, "/a.fits", "ok", {"n": 1},
        None, 0.0, 1.0, "0",
    )  # fmt: skip
    table = results_table([record], method="m")
    assert table["order"][0] == pytest.approx(1e20)
