"""`rv`: radial velocities by cross-correlation, on the demo's apVisit files (observed frame,
3 chips x 4096 pixels, wavelengths decreasing in the file) and apStar files (rest frame)."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

import astra_cli
from astra_cli.demo.report import STAR_KEYS, TARGETS, VISIT_KEYS
from astra_cli.io.identifiers import IdentifierResolver
from astra_cli.io.store import ResultsStore

COLUMNS = {
    "v_rad", "e_v_rad", "ccf_peak", "ccf_fwhm", "template",
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
