"""`grid`: labels by chi-square over a grid of model spectra, on the demo's synthetic spectra.

What users rely on: the accuracy the issue asks for at S/N 100, the same answers from a FERRE
grid, an astra FITS grid and an .npz grid, the same labels whether spectra are fitted as one
batch or one at a time, the flags, columns named after the grid's labels, and the grid loaded
once per group per worker.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
import pytest
from demo_paths import star_paths, stored_results
from typer.testing import CliRunner

import astra_cli
from astra_cli.cli.app import app
from astra_cli.demo.dataset import write_apstar
from astra_cli.demo.report import TARGETS
from astra_cli.io.grids import read_grid
from astra_cli.io.store import ResultsStore

LABELS = ("teff", "logg", "m_h")
COLUMNS = {
    "teff", "e_teff", "logg", "e_logg", "m_h", "e_m_h",
    "chi2", "rchi2", "n_pixels", "snr", "flags",
}  # fmt: skip
NPZ_COLUMNS = {
    "t_eff", "e_t_eff", "log_g", "e_log_g", "fe_h", "e_fe_h",
    "chi2", "rchi2", "n_pixels", "snr", "flags",
}  # fmt: skip
FLAG_GRID_EDGE, FLAG_LOW_SNR = 1, 4

runner = CliRunner()


def assert_same_labels(got: dict, expected: dict, names=LABELS, rtol=1e-6) -> None:
    for name in names:
        assert got[name] == pytest.approx(expected[name], rel=rtol), name


@pytest.fixture(scope="module")
def fits_results(demo_files, tmp_path_factory):
    """The grid method on every demo star, with the astra FITS grid, in this process."""
    output = tmp_path_factory.mktemp("grid-fits")
    summary = astra_cli.run(
        "grid", star_paths(demo_files), output_dir=output, jobs=1, grid=demo_files.grid_fits
    )
    assert (summary.ok, summary.failed) == (len(demo_files.stars), 0)
    return stored_results(output, "grid")


def test_grid_recovers_labels_between_nodes_within_the_targets(demo_files, fits_results):
    paths = star_paths(demo_files)
    assert set(fits_results) == set(paths)

    for label, target in TARGETS["grid"].items():
        errors = np.array(
            [
                fits_results[p][label] - row[label]
                for p, row in zip(paths, demo_files.stars, strict=True)
            ]
        )
        rms = float(np.sqrt(np.mean(errors**2)))
        assert rms <= target, f"grid {label}: rms {rms:.4g} > {target}"
    assert TARGETS["grid"] == {"teff": 50.0, "logg": 0.1, "m_h": 0.05}


def test_columns_are_named_after_the_grid_labels_and_interior_stars_are_not_flagged(
    demo_files, fits_results
):
    assert read_grid(demo_files.grid_fits).columns == LABELS
    for result in fits_results.values():
        assert set(result) == COLUMNS
        assert result["flags"] == 0
        assert result["n_pixels"] > 7000
        assert 0.5 < result["rchi2"] < 2.0, "S/N 100 spectra fitted by their own model"


def test_errors_are_positive_and_of_the_size_of_the_actual_errors(demo_files, fits_results):
    paths = star_paths(demo_files)
    for label in LABELS:
        errors = np.array([fits_results[p][f"e_{label}"] for p in paths])
        assert np.all(np.isfinite(errors)) and np.all(errors > 0), label
        pulls = np.array(
            [
                (fits_results[p][label] - row[label]) / fits_results[p][f"e_{label}"]
                for p, row in zip(paths, demo_files.stars, strict=True)
            ]
        )
        rms_pull = float(np.sqrt(np.mean(pulls**2)))
        assert 0.25 < rms_pull < 5.0, f"{label}: errors off by a factor {rms_pull:.3g}"


def test_ferre_grid_reads_back_equal_to_the_fits_grid(demo_files):
    fits_grid = read_grid(demo_files.grid_fits)
    ferre_grid = read_grid(demo_files.grid_ferre)

    assert ferre_grid.columns == fits_grid.columns == LABELS
    assert ferre_grid.shape == fits_grid.shape == (11, 9, 9)
    assert ferre_grid.sections == fits_grid.sections and ferre_grid.vacuum is fits_grid.vacuum
    np.testing.assert_allclose(ferre_grid.llimits, fits_grid.llimits, rtol=1e-12)
    np.testing.assert_allclose(ferre_grid.steps, fits_grid.steps, rtol=1e-12)
    np.testing.assert_allclose(ferre_grid.wavelength(), fits_grid.wavelength(), rtol=1e-9)
    np.testing.assert_allclose(ferre_grid.values, fits_grid.values, rtol=1e-6, atol=1e-7)
    assert not np.allclose(fits_grid.values[0], fits_grid.values[-1]), "a real grid"


def test_ferre_grid_gives_the_same_labels_as_the_fits_grid(demo_files, fits_results, tmp_path):
    summary = astra_cli.run(
        "grid", star_paths(demo_files), output_dir=tmp_path, jobs=1, grid=demo_files.grid_ferre
    )
    assert summary.ok == len(demo_files.stars)

    ferre_results = stored_results(tmp_path, "grid")
    assert set(ferre_results) == set(fits_results)
    for path, expected in fits_results.items():
        got = ferre_results[path]
        assert set(got) == COLUMNS
        for label in LABELS:
            # 7 significant digits in the FERRE file: far below the fit's own uncertainty.
            assert abs(got[label] - expected[label]) <= 0.02 * expected[f"e_{label}"], label
        assert got["flags"] == expected["flags"]


def test_npz_grid_round_trip_reads_back_and_fits_the_same(demo_files, fits_results, tmp_path):
    grid = read_grid(demo_files.grid_fits)
    archive = tmp_path / "grid.npz"
    (section,) = grid.sections
    np.savez(
        archive,
        flux=np.asarray(grid.values).reshape(*grid.shape, grid.npix),  # what the FITS grid holds
        labels=np.array(["T_eff", "log_g", "Fe_H"]),
        llimits=grid.llimits,
        steps=grid.steps,
        wave=np.array(section.wave),
        logw=np.array(section.logw),
    )

    back = read_grid(archive)
    assert back.columns == ("t_eff", "log_g", "fe_h")
    assert back.shape == grid.shape and back.sections == grid.sections
    np.testing.assert_array_equal(back.values, grid.values)
    np.testing.assert_array_equal(back.llimits, grid.llimits)
    np.testing.assert_array_equal(back.steps, grid.steps)
    np.testing.assert_array_equal(back.wavelength(), grid.wavelength())

    paths = star_paths(demo_files)[:4]
    summary = astra_cli.run("grid", paths, output_dir=tmp_path / "out", jobs=1, grid=archive)
    assert summary.ok == 4
    for path, result in stored_results(tmp_path / "out", "grid").items():
        expected = fits_results[path]
        assert set(result) == NPZ_COLUMNS
        for mine, theirs in (("t_eff", "teff"), ("log_g", "logg"), ("fe_h", "m_h")):
            assert result[mine] == pytest.approx(expected[theirs], rel=1e-6)
            assert result[f"e_{mine}"] == pytest.approx(expected[f"e_{theirs}"], rel=1e-6)


def test_flags_mark_labels_outside_the_grid_and_low_snr(demo_files, tmp_path):
    rng = np.random.default_rng(7)
    stars = {
        "apStar-hot.fits": ([7000.0, 3.0, -0.5], 100.0),  # grid Teff ends at 6500 K
        "apStar-metal-rich.fits": ([5000.0, 3.0, 0.9], 100.0),  # grid [M/H] ends at +0.5
        "apStar-faint.fits": ([5100.0, 3.2, -0.6], 5.0),
    }
    for name, (labels, snr) in stars.items():
        write_apstar(tmp_path / name, labels, snr, rng, "2M00000000+0000000", 0.0)

    summary = astra_cli.run(
        "grid", [tmp_path / name for name in stars], output_dir=tmp_path / "out", jobs=1,
        grid=demo_files.grid_fits,
    )  # fmt: skip

    assert summary.ok == 3
    results = {
        path.rsplit("/", 1)[-1]: r for path, r in stored_results(tmp_path / "out", "grid").items()
    }
    hot, metal_rich, faint = (results[name] for name in stars)
    assert hot["flags"] & FLAG_GRID_EDGE and hot["teff"] == pytest.approx(6500.0)
    assert metal_rich["flags"] & FLAG_GRID_EDGE and metal_rich["m_h"] == pytest.approx(0.5)
    assert faint["flags"] & FLAG_LOW_SNR
    assert not faint["flags"] & FLAG_GRID_EDGE, "an interior star is not at the edge"
    assert not hot["flags"] & FLAG_LOW_SNR
    assert faint["e_teff"] > 5 * hot["e_teff"], "S/N 5 is much less certain than S/N 100"


def test_the_grid_is_loaded_once_per_group(demo_files, tmp_path):
    grid = shutil.copy(demo_files.grid_fits, tmp_path / "grid.fits")  # a group of its own
    paths = star_paths(demo_files)[:3]

    result = runner.invoke(
        app,
        ["analyse", "grid", *paths, "--grid", str(grid), "--continuum-order", "3",
         "--continuum-order", "4", "--chunk-size", "1", "-j", "1", "-o", str(tmp_path / "out"),
         "--json"],
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["groups"], summary["chunks"], summary["ok"]) == (2, 6, 6)
    assert summary["model_loads"] == 2
    with ResultsStore(tmp_path / "out") as store:
        orders = sorted(r.options["continuum_order"] for r in store.records(method="grid"))
    assert orders == [3, 3, 3, 4, 4, 4]


def test_worker_processes_load_each_group_at_most_once(demo_files, fits_results, tmp_path):
    grid = shutil.copy(demo_files.grid_fits, tmp_path / "grid.fits")
    paths = star_paths(demo_files)[:4]

    summary = astra_cli.run(
        "grid", paths, output_dir=tmp_path / "out", jobs=2, backend="loky", chunk_size=1,
        grid=grid, continuum_order=[3, 4],
    )  # fmt: skip

    assert (summary.groups, summary.chunks, summary.ok) == (2, 8, 8)
    assert 2 <= summary.model_loads <= 4, "at most once per group in each of the two workers"
    with ResultsStore(tmp_path / "out") as store:
        order_4 = {
            r.input_path: r.result
            for r in store.records(method="grid")
            if r.options["continuum_order"] == 4
        }
    for path in paths:
        assert_same_labels(order_4[path], fits_results[path], rtol=1e-9)


def test_a_rewritten_model_file_is_loaded_again_by_a_reused_worker(demo_files, tmp_path):
    grid = tmp_path / "grid.fits"
    shutil.copy(demo_files.grid_fits, grid)
    paths = star_paths(demo_files)[:2]

    first = astra_cli.run("grid", paths, output_dir=tmp_path / "a", backend="sequential", grid=grid)
    cached = astra_cli.run(
        "grid", paths, output_dir=tmp_path / "b", backend="sequential", grid=grid
    )
    os.utime(grid, ns=(time.time_ns(), time.time_ns() + 10**9))  # as if rewritten
    rewritten = astra_cli.run(
        "grid", paths, output_dir=tmp_path / "c", backend="sequential", grid=grid
    )

    assert (first.model_loads, cached.model_loads, rewritten.model_loads) == (1, 0, 1)
