"""`cannon`: labels from a Cannon model trained on one set of demo spectra and tested on another;
training, the model file round trip, errors, and batch versus one spectrum at a time."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from demo_paths import star_paths, stored_results

import astra_cli
from astra_cli.demo.report import TARGETS
from astra_cli.demo.synthesis import normalised_flux
from astra_cli.science import cannon
from astra_cli.science.wavelength import apstar_wavelength, chip_index

LABELS = ("teff", "logg", "m_h")
COLUMNS = {"teff", "e_teff", "logg", "e_logg", "m_h", "e_m_h", "chi2", "rchi2", "n_pixels", "flags"}
PLAUSIBLE_ERRORS = {"teff": (0.5, 200.0), "logg": (1e-4, 0.5), "m_h": (1e-4, 0.3)}
"""Formal errors at S/N 100: positive, and not absurdly small or large."""


def training_rows(files) -> list[dict]:
    with open(files.training_manifest, newline="") as handle:
        return [
            {"path": row["path"], **{label: float(row[label]) for label in LABELS}}
            for row in csv.DictReader(handle)
        ]


def rms(differences) -> float:
    return float(np.sqrt(np.mean(np.square(differences))))


@pytest.fixture(scope="module")
def test_results(demo_files, tmp_path_factory):
    """The demo's Cannon model (trained on the training stars) run on the test stars."""
    output = tmp_path_factory.mktemp("cannon")
    summary = astra_cli.run(
        "cannon", star_paths(demo_files), output_dir=output, jobs=1, model=demo_files.cannon_model
    )
    assert (summary.ok, summary.failed) == (len(demo_files.stars), 0)
    return stored_results(output, "cannon")


def test_the_model_is_trained_on_other_spectra_than_it_is_tested_on(demo_files):
    training = {row["path"] for row in training_rows(demo_files)}
    model = cannon.read_cannon(demo_files.cannon_model)

    assert len(training) == model.n_train == 200
    assert training.isdisjoint(star_paths(demo_files))


def test_cannon_recovers_labels_within_twice_the_grid_targets(demo_files, test_results):
    paths = star_paths(demo_files)
    assert set(test_results) == set(paths)

    for label, grid_target in TARGETS["grid"].items():
        target = 2 * grid_target
        assert TARGETS["cannon"][label] == target
        got = rms(
            [
                test_results[p][label] - row[label]
                for p, row in zip(paths, demo_files.stars, strict=True)
            ]
        )
        assert got <= target, f"cannon {label}: rms {got:.4g} > {target}"


def test_columns_are_the_model_labels_and_errors_are_plausible(demo_files, test_results):
    for result in test_results.values():
        assert set(result) == COLUMNS
        assert result["flags"] == 0
        for label, (low, high) in PLAUSIBLE_ERRORS.items():
            error = result[f"e_{label}"]
            assert np.isfinite(error) and low < error < high, f"e_{label} = {error}"


def test_fitting_training_spectra_returns_their_labels(demo_files, tmp_path):
    interior = [
        row
        for row in training_rows(demo_files)
        if 4500 < row["teff"] < 6000 and 1.5 < row["logg"] < 4.5 and -1.25 < row["m_h"] < 0.25
    ][:6]
    assert len(interior) == 6

    summary = astra_cli.run(
        "cannon", [row["path"] for row in interior], output_dir=tmp_path, jobs=1,
        model=demo_files.cannon_model,
    )  # fmt: skip

    assert summary.ok == 6
    results = stored_results(tmp_path, "cannon")
    for label, target in TARGETS["cannon"].items():
        got = rms([results[row["path"]][label] - row[label] for row in interior])
        assert got <= target, f"{label}: rms {got:.4g} on its own training spectra"


def synthetic_training_set(count: int, seed: int = 3):
    """Continuum-normalised spectra straight from the demo's line model, with noise."""
    rng = np.random.default_rng(seed)
    labels = np.column_stack(
        [
            rng.uniform(4500, 5500, count),
            rng.uniform(2.0, 3.5, count),
            rng.uniform(-0.6, 0.2, count),
        ]
    )
    wavelength = apstar_wavelength()
    flux = normalised_flux(wavelength, labels)
    flux += rng.normal(0.0, 1.0 / 200.0, flux.shape)
    ivar = np.where(chip_index(wavelength) >= 0, 200.0**2, 0.0) * np.ones((count, 1))
    return labels, wavelength, flux, ivar


def test_train_then_write_and_read_round_trips_the_model(tmp_path):
    labels, wavelength, flux, ivar = synthetic_training_set(60)
    names = ("teff", "logg", "fe_h")
    steps: list[tuple[int, int]] = []
    model = cannon.train(
        labels, flux, ivar, label_names=names, wavelength=wavelength, continuum_order=3,
        progress=lambda done, total: steps.append((done, total)),
    )  # fmt: skip
    # Every pixel is fitted once per candidate scatter, and each pass is reported.
    assert steps == [(step, len(cannon.SCATTER_GRID)) for step in range(1, 33)]
    path = tmp_path / "my-cannon.fits"
    cannon.write_cannon(model, path)

    back = cannon.read_cannon(path)

    assert back.label_names == names
    assert (back.continuum_order, back.n_train) == (3, 60)
    for field in ("theta", "s2", "offsets", "scales", "wavelength"):
        np.testing.assert_array_equal(getattr(back, field), getattr(model, field), err_msg=field)
    assert back.theta.shape == (wavelength.size, 10)  # 1 + 3 linear + 6 quadratic terms
    assert back.trained_pixels.sum() > 0.9 * (chip_index(wavelength) >= 0).sum()

    # The model read back recovers the labels of spectra it was trained on.
    fitted = cannon.fit(back, flux[:5], ivar[:5])
    for result, truth in zip(fitted, labels[:5], strict=True):
        assert set(result) == COLUMNS - {"m_h", "e_m_h"} | {"fe_h", "e_fe_h"}
        assert result["teff"] == pytest.approx(truth[0], abs=20.0)
        assert result["logg"] == pytest.approx(truth[1], abs=0.03)
        assert result["fe_h"] == pytest.approx(truth[2], abs=0.01)
        assert all(result[f"e_{name}"] > 0 for name in names)
