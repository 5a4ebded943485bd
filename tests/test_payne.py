"""`payne`: labels and v_rad from a neural-network emulator, checked on spectra the test makes
from the network itself (random labels, continuum, noise, bad pixels, random velocities), on
the real APOGEE spectra, and the network file formats (per-pixel and dense) with what they
refuse."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from conftest import REAL_DATA
from payne_spectra import NETWORK, write_payne_spectra
from typer.testing import CliRunner

import astra_cli
from astra_cli.cli.app import app
from astra_cli.io.modelfiles import ModelFileError
from astra_cli.io.store import ResultsStore
from astra_cli.methods.registry import load_method
from astra_cli.science.networks import read_network
from astra_cli.science.payne import FLAG_POOR_FIT, FLAG_RANGE_EDGE
from astra_cli.testing import check_method

runner = CliRunner()
TARGETS = {"teff": 30.0, "logg": 0.05, "fe_h": 0.03, "v_rad": 0.2}
"""rms of fitted - true at S/N 100."""


def results_of(out: Path) -> dict[str, dict]:
    with ResultsStore(out) as store:
        records = list(store.records(method="payne"))
    assert all(r.status == "ok" for r in records), [r.error for r in records]
    return {Path(r.input_path).name: r.result for r in records}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    directory = tmp_path_factory.mktemp("payne")
    made = write_payne_spectra(directory / "spectra", 100)
    out = directory / "one-at-a-time"
    summary = astra_cli.run(
        "payne", [path for path, _ in made], output_dir=out, jobs=2, chunk_size=1,
        network=NETWORK,
    )  # fmt: skip
    assert summary.ok == 100
    return made, results_of(out), directory


def test_labels_and_velocities_are_recovered(synthetic):
    made, results, _ = synthetic
    for label, target in TARGETS.items():
        errors = np.array([results[path.name][label] - truth[label] for path, truth in made])
        rms = float(np.sqrt(np.mean(errors**2)))
        assert rms <= target, f"{label}: rms {rms:.4g}, target {target}"
    assert all(results[path.name]["flags"] == 0 for path, _ in made)


def test_a_chunk_of_64_gives_what_one_at_a_time_gives(synthetic):
    made, alone, directory = synthetic
    paths = [path for path, _ in made[:64]]
    out = directory / "one-chunk"
    summary = astra_cli.run(
        "payne", paths, output_dir=out, jobs=1, backend="sequential", chunk_size=64,
        network=NETWORK,
    )  # fmt: skip
    assert summary.chunks == 1 and summary.ok == 64
    together = results_of(out)
    for path in paths:
        for column, value in alone[path.name].items():
            assert together[path.name][column] == pytest.approx(value, rel=1e-9, abs=1e-12)


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    out = tmp_path_factory.mktemp("payne-real")
    files = sorted(REAL_DATA.glob("apStar-*.fits"))
    summary = astra_cli.run("payne", files, output_dir=out, jobs=1, network=NETWORK)
    assert summary.ok == 2
    return results_of(out)


def test_the_real_k_dwarf_is_fitted_and_not_flagged(real):
    dwarf = real["apStar-dr17-2M19485057+5005279.fits"]
    assert abs(dwarf["teff"] - 5226.0) <= 400.0, dwarf["teff"]  # the pipeline's RV template
    assert dwarf["flags"] == 0
    assert abs(dwarf["v_rad"]) < 1.0, "an apStar spectrum is at rest"


def test_the_real_m_giant_outside_the_network_is_flagged(real):
    giant = real["apStar-dr17-2M17335483-2753043.fits"]
    assert giant["flags"] & FLAG_RANGE_EDGE and giant["flags"] & FLAG_POOR_FIT


def test_payne_conforms_to_the_method_api():
    check_method(load_method("payne"), network=NETWORK)


# --- network files ------------------------------------------------------------------------------


def dense_network(path: Path, pixels: int = 300, hidden: int = 12, labels: int = 3) -> Path:
    """A made-up network in the dense layout of Ting et al. (2019)."""
    rng = np.random.default_rng(2)
    np.savez(
        path,
        w_array_0=rng.normal(0, 1, (hidden, labels)), b_array_0=rng.normal(0, 0.1, hidden),
        w_array_1=rng.normal(0, 0.3, (hidden, hidden)), b_array_1=rng.normal(0, 0.1, hidden),
        w_array_2=rng.normal(0, 0.02, (pixels, hidden)), b_array_2=np.ones(pixels),
        x_min=np.array([4000.0, 1.0, -2.0][:labels]), x_max=np.array([7000.0, 5.0, 0.5][:labels]),
        wavelength=np.linspace(15200.0, 15700.0, pixels),
        label_names=np.array(["teff", "logg", "m_h"][:labels]),
    )  # fmt: skip
    return path


def test_the_dense_layout_gives_its_exact_jacobian(tmp_path):
    network = read_network(dense_network(tmp_path / "dense.npz"))
    assert network.kind == "dense" and network.label_names == ("teff", "logg", "m_h")
    labels = np.array([5200.0, 3.1, -0.4])
    flux, jacobian = network.evaluate(labels)
    assert flux.shape == (300,) and jacobian.shape == (300, 3)
    np.testing.assert_allclose(network.spectra(labels[None])[0], flux)
    for k, step in enumerate((0.5, 1e-4, 1e-4)):
        shift = np.zeros(3)
        shift[k] = step
        numeric = (network.spectra([labels + shift])[0] - network.spectra([labels - shift])[0]) / (
            2 * step
        )
        np.testing.assert_allclose(jacobian[:, k], numeric, rtol=1e-4, atol=1e-9)


def test_the_per_pixel_network_is_read_with_its_wavelengths_and_names():
    network = read_network(NETWORK)
    assert network.kind == "per-pixel" and network.npix == 7214
    assert network.label_names == ("teff", "logg", "fe_h", "alpha_fe", "vmacro")
    wavelength = np.load(NETWORK.parent / "apogee_wavelength.npz")["wavelength"]
    np.testing.assert_allclose(network.wavelength, wavelength, rtol=1e-10)


def broken(tmp_path: Path, name: str, **changes) -> Path:
    arrays = dict(np.load(dense_network(tmp_path / "base.npz")))
    arrays.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del arrays[key]
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    ("name", "changes", "message"),
    [
        ("shape.npz", {"w_array_1": np.ones((12, 11))}, "w_array_1 has shape (12, 11)"),
        ("nan.npz", {"b_array_2": np.full(300, np.nan)}, "b_array_2 holds NaN"),
        ("range.npz", {"x_max": np.array([3000.0, 5.0, 0.5])}, "x_max > x_min"),
        ("names.npz", {"label_names": None}, "does not name its 3 labels"),
        ("wave.npz", {"wavelength": None}, "has 300 pixels and no `wavelength` array"),
        ("missing.npz", {"w_array_0": None}, "has no array 'w_array_0'"),
        ("objects.npz", {"label_names": np.array([{"a": 1}, 2, 3], dtype=object)}, "object arrays"),
    ],
)
def test_bad_networks_are_refused_naming_what_is_wrong(tmp_path, name, changes, message):
    path = broken(tmp_path, name, **changes)
    with pytest.raises(ModelFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_network(path)
    result = runner.invoke(
        app, ["analyse", "payne", str(REAL_DATA / "apVisit-r13-5095-55844-128.fits"),
              "--network", str(path), "-o", str(tmp_path / "out")],
    )  # fmt: skip
    assert result.exit_code == 2 and str(path) in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_pickled_network_is_never_unpickled(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "network.npz"
    path.write_bytes(pickle.dumps({"w_array_0": marker}))
    result = runner.invoke(
        app, ["analyse", "payne", str(REAL_DATA / "apVisit-r13-5095-55844-128.fits"),
              "--network", str(path), "-o", str(tmp_path / "out")],
    )  # fmt: skip
    assert result.exit_code == 2 and "is a pickle" in result.stderr
