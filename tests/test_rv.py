"""`rv`: radial velocities by cross-correlation, on the demo's apVisit files (observed frame,
3 chips x 4096 pixels, wavelengths decreasing in the file) and apStar files (rest frame)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from conftest import ROOT

import astra_cli
from astra_cli.demo.report import STAR_KEYS, TARGETS, VISIT_KEYS
from astra_cli.demo.synthesis import normalised_flux
from astra_cli.io.identifiers import IdentifierResolver
from astra_cli.io.store import ResultsStore
from astra_cli.science.ccf import FLAG_LOW_PEAK

COLUMNS = {
    "v_rad", "e_v_rad", "ccf_peak", "ccf_second_peak", "ccf_fwhm", "template",
    "template_teff", "template_logg", "template_m_h", "n_pixels", "flags",
}  # fmt: skip


def paths(files, rows, keys) -> list[str]:
    resolver = IdentifierResolver(files.data_root)
    return [resolver.resolve({key: row[key] for key in keys}).path for row in rows]


def run_rv(observations, output_dir, templates) -> dict[str, dict]:
    summary = astra_cli.run("rv", observations, output_dir=output_dir, jobs=1, templates=templates)
    assert (summary.ok, summary.failed) == (len(observations), 0)
    with ResultsStore(output_dir) as store:
        return {record.input_path: record.result for record in store.records(method="rv")}


@pytest.fixture(scope="module")
def visit_results(demo_files, tmp_path_factory):
    visits = paths(demo_files, demo_files.visits, VISIT_KEYS)
    return run_rv(visits, tmp_path_factory.mktemp("rv-visits"), demo_files.templates)


def test_the_visits_are_observed_frame_apvisit_files_over_the_whole_range(demo_files):
    visits = paths(demo_files, demo_files.visits, VISIT_KEYS)
    for path in visits:
        assert path.rsplit("/", 1)[-1].startswith("apVisit-")
        with fits.open(path) as hdus:
            assert hdus[1].data.shape == (3, 4096)
            wavelength = hdus[4].data
            assert wavelength.shape == (3, 4096)
            assert np.all(np.diff(wavelength, axis=1) < 0), "decreasing along each chip"
    velocities = np.array([row["v_rad"] for row in demo_files.visits])
    assert np.all(np.abs(velocities) <= 300.0)
    assert velocities.min() < -150 and velocities.max() > 150


def test_rv_recovers_injected_velocities_from_apvisits(demo_files, visit_results):
    visits = paths(demo_files, demo_files.visits, VISIT_KEYS)
    assert set(visit_results) == set(visits)

    differences = np.array(
        [
            visit_results[p]["v_rad"] - row["v_rad"]
            for p, row in zip(visits, demo_files.visits, strict=True)
        ]
    )
    rms = float(np.sqrt(np.mean(differences**2)))
    assert TARGETS["rv"]["v_rad"] == 0.5
    assert rms <= 0.5, f"v_rad rms {rms:.3g} km/s"
    assert np.max(np.abs(differences)) < 1.0


def test_columns_errors_and_flags_on_apvisits(visit_results):
    for result in visit_results.values():
        assert set(result) == COLUMNS
        assert result["flags"] == 0
        assert 0 < result["e_v_rad"] < 0.5
        assert 0 < result["ccf_peak"] <= 1
        assert result["n_pixels"] > 7000


def test_the_best_template_and_its_labels_are_reported(demo_files, visit_results):
    with fits.open(demo_files.templates) as hdus:
        table = hdus["LABELS"].data
        template_labels = {name.lower(): np.array(table[name]) for name in table.names}
    visits = paths(demo_files, demo_files.visits, VISIT_KEYS)

    for path, truth in zip(visits, demo_files.visits, strict=True):
        result = visit_results[path]
        index = result["template"]
        assert 0 <= index < len(template_labels["teff"])
        for label in ("teff", "logg", "m_h"):
            assert result[f"template_{label}"] == template_labels[label][index]
        assert abs(result["template_teff"] - truth["teff"]) < 500, "a template like the star"


def test_apstar_files_are_in_the_rest_frame(demo_files, tmp_path):
    stars = paths(demo_files, demo_files.stars, STAR_KEYS)
    assert {row["v_rad"] for row in demo_files.stars} != {0.0}, "the stars do move"

    results = run_rv(stars, tmp_path, demo_files.templates)

    assert set(results) == set(stars)
    for result in results.values():
        assert abs(result["v_rad"]) < 0.5
        assert result["flags"] == 0


# --- real APOGEE spectra: the built-in templates, and a template set that does not fit ----------

REAL = ROOT.parent / "shared" / "data" / "apogee"
PIPELINE_VREL = {
    "apVisit-r13-5095-55844-128.fits": (-44.42, 3.0),
    "apVisit-r13-9518-57729-104.fits": (-67.47, 1.0),
}
"""The pipeline's VREL and how close astra must come (3 km/s at S/N 45, 1 km/s at S/N 90)."""


@pytest.fixture(scope="module")
def real_results(tmp_path_factory):
    files = sorted(REAL.glob("ap*.fits"))
    assert len(files) == 4, f"the real APOGEE files are missing from {REAL}"
    out = tmp_path_factory.mktemp("rv-real")
    summary = astra_cli.run("rv", files, output_dir=out, jobs=1)  # no templates: the built-in set
    assert summary.ok == 4, summary.failures
    with ResultsStore(out) as store:
        return {Path(r.input_path).name: r.result for r in store.records()}


def test_built_in_templates_measure_real_visits_like_the_pipeline(real_results):
    for name, (vrel, tolerance) in PIPELINE_VREL.items():
        result = real_results[name]
        assert abs(result["v_rad"] - vrel) <= tolerance, (name, result["v_rad"])
        assert result["flags"] == 0


def test_built_in_templates_find_real_apstar_spectra_at_rest(real_results):
    for name in ("apStar-dr17-2M17335483-2753043.fits", "apStar-dr17-2M19485057+5005279.fits"):
        assert abs(real_results[name]["v_rad"]) <= 1.0, (name, real_results[name]["v_rad"])
        assert real_results[name]["flags"] == 0


def test_templates_that_do_not_fit_real_stars_are_flagged(demo_files, tmp_path):
    """The demo's templates are made-up lines: on real stars their velocities are noise, and
    every one must say so."""
    files = sorted(REAL.glob("ap*.fits"))
    results = run_rv(files, tmp_path, demo_files.templates)
    for name, result in results.items():
        assert result["flags"] & FLAG_LOW_PEAK, (name, result["ccf_peak"])


def test_any_spectral_model_can_serve_as_templates(demo_files, visit_results, tmp_path):
    """A grid (a lattice of its nodes) or a network gives templates too."""
    visits = paths(demo_files, demo_files.visits, VISIT_KEYS)[:4]
    from_grid = run_rv(visits, tmp_path / "grid", demo_files.grid_fits)
    for path in visits:
        assert from_grid[path]["v_rad"] == pytest.approx(visit_results[path]["v_rad"], abs=0.3)
    files = sorted(REAL.glob("apVisit*.fits"))
    network = ROOT.parent / "shared" / "data" / "payne" / "NN_normalized_spectra.npz"
    from_network = run_rv(files, tmp_path / "network", network)
    for path in files:
        vrel, tolerance = PIPELINE_VREL[path.name]
        assert abs(from_network[str(path)]["v_rad"] - vrel) <= 2 * tolerance


def test_a_second_peak_nearly_as_high_is_flagged(demo_files):
    """Two stars of one spectrum 150 km/s apart: which velocity is the star's?"""
    from astra_cli.science.ccf import FLAG_SECOND_PEAK, measure, read_templates
    from astra_cli.science.wavelength import apstar_wavelength, doppler_factor

    templates = read_templates(demo_files.templates)
    wavelength = apstar_wavelength()
    single = normalised_flux(wavelength / doppler_factor(20.0), [[5000.0, 3.0, -0.3]])[0]
    double = single * normalised_flux(wavelength / doppler_factor(170.0), [[5000.0, 3.0, -0.3]])[0]
    ivar = np.full(wavelength.size, 1e4)
    one = measure(templates, wavelength, single, ivar, continuum_order=4)
    two = measure(templates, wavelength, double, ivar, continuum_order=4)
    assert not one["flags"] & FLAG_SECOND_PEAK
    assert two["flags"] & FLAG_SECOND_PEAK and two["ccf_second_peak"] >= 0.8 * two["ccf_peak"]
