"""`astra demo`: the synthetic data set it writes, and `--run`, which analyses it with every
method and compares what they recover with the truth."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from conftest import astra_subprocess

from astra_cli.demo.dataset import GRID_LLIMITS, GRID_STEPS, INTERIOR
from astra_cli.demo.report import STAR_KEYS, TARGETS, VISIT_KEYS, accuracy, analyse_demo
from astra_cli.io.identifiers import IdentifierResolver
from astra_cli.io.store import ResultsStore

LABELS = ("teff", "logg", "m_h")


def read_csv(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_demo_run_through_the_cli_meets_every_target_and_writes_what_it_promises(tmp_path):
    directory = tmp_path / "demo"

    result = astra_subprocess(
        "demo", str(directory), "--run", "--stars", "12", "--training", "150", timeout=300
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "recovered - true" in result.stdout
    rows = [line for line in result.stdout.splitlines() if line.count("│") >= 7]  # not header
    table = {}
    for row in rows:
        cells = [cell.strip() for cell in row.strip("│ ").split("│")]
        table[(cells[0], cells[1])] = cells
    assert set(table) == {(m, label) for m, targets in TARGETS.items() for label in targets}
    for (method, label), cells in table.items():
        assert cells[2] == "12", (method, label)
        assert cells[-1] == "ok", (method, label, cells)
    assert "MISSED" not in result.stdout

    sas = directory / "sas"
    apstars = [p for p in sas.rglob("apStar-*.fits") if p.parent.name != "TRAIN"]
    training = list(sas.rglob("TRAIN/apStar-*.fits"))
    apvisits = list(sas.rglob("apVisit-*.fits"))
    assert (len(apstars), len(training), len(apvisits)) == (12, 150, 12)
    assert all("/dr17/apogee/spectro/redux/dr17/stars/apo25m/" in str(p) for p in apstars)
    assert all("/dr17/apogee/spectro/redux/dr17/visit/apo25m/" in str(p) for p in apvisits)
    for name in ("grid.fits", "grid.ferre", "cannon.fits", "rv-templates.fits"):
        assert (directory / "models" / name).stat().st_size > 0, name
    stars = read_csv(directory / "stars.csv")
    visits = read_csv(directory / "visits.csv")
    trained = read_csv(directory / "training.csv")
    assert (len(stars), len(visits), len(trained)) == (12, 12, 150)
    assert {"obj", "teff", "logg", "m_h", "true_v_rad"} <= set(stars[0])
    assert {"plate", "mjd", "fiber", "true_v_rad"} <= set(visits[0])
    assert {str(p) for p in training} == {row["path"] for row in trained}


def test_demo_labels_fall_between_grid_nodes_across_the_interior(demo_files):
    labels = np.array([[row[label] for label in LABELS] for row in demo_files.stars])
    low, high = np.array(INTERIOR).T
    assert np.all((labels >= low) & (labels <= high))
    position = (labels - np.array(GRID_LLIMITS)) / np.array(GRID_STEPS)
    assert np.all(np.abs(position - np.round(position)) > 1e-6), "not on a node"
    assert np.all(labels.max(axis=0) - labels.min(axis=0) > 0.5 * (high - low)), "spread out"
    assert [row["snr"] for row in demo_files.stars] == [100.0] * 16

    for name in ("stars_manifest", "visits_manifest", "training_manifest"):
        assert getattr(demo_files, name).is_file()
    written = read_csv(demo_files.stars_manifest)
    assert [float(row["teff"]) for row in written] == [row["teff"] for row in demo_files.stars]


def test_analyse_demo_reports_the_accuracy_in_the_store(demo_files, tmp_path):
    summaries, rows = analyse_demo(demo_files, tmp_path, jobs=1)

    assert [s.method for s in summaries] == ["snr", "grid", "cannon", "rv"]
    assert all((s.ok, s.failed) == (16, 0) for s in summaries)
    assert {(r.method, r.label) for r in rows} == {
        (m, label) for m, targets in TARGETS.items() for label in targets
    }
    assert all(row.met for row in rows)

    # Recompute from the store: the report compares each star with its own truth.
    resolver = IdentifierResolver(demo_files.data_root)
    with ResultsStore(tmp_path) as store:
        found = {(r.method, r.input_path): r.result for r in store.records(status="ok")}
    for row in rows:
        truth, keys = (
            (demo_files.visits, VISIT_KEYS) if row.method == "rv" else (demo_files.stars, STAR_KEYS)
        )
        differences = np.array(
            [
                found[row.method, resolver.resolve({k: t[k] for k in keys}).path][row.label]
                - t[row.label]
                for t in truth
            ]
        )
        assert row.n == 16
        assert row.rms == pytest.approx(np.sqrt(np.mean(differences**2)), rel=1e-12)
        assert row.bias == pytest.approx(np.mean(differences), rel=1e-12, abs=1e-15)
        assert row.target == TARGETS[row.method][row.label]

    assert accuracy(demo_files, tmp_path) == rows, "the report reads back from the store"
