"""Model files: loading one never runs code from it, and a missing or unreadable one stops the
invocation before any work (exit code 2, one line naming the file, nothing stored)."""

from __future__ import annotations

import pickle
from dataclasses import replace

import numpy as np
import pytest
from astropy.io import fits
from typer.testing import CliRunner

import astra_cli
from astra_cli.cli.app import app
from astra_cli.demo.report import STAR_KEYS, VISIT_KEYS
from astra_cli.errors import UsageError
from astra_cli.io.grids import GridData, check_grid, read_grid, write_grid
from astra_cli.io.identifiers import IdentifierResolver
from astra_cli.io.modelfiles import ModelFileError
from astra_cli.science.cannon import check_cannon, read_cannon
from astra_cli.science.ccf import check_templates, read_templates

runner = CliRunner()

READERS = [read_grid, check_grid, read_cannon, check_cannon, read_templates, check_templates]
METHOD_OPTIONS = {"grid": "--grid", "cannon": "--model", "rv": "--templates"}


class WritesAFile:
    """Unpickling this runs code: it creates `marker`."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def write_pickle(path, marker, protocol=pickle.DEFAULT_PROTOCOL):
    path.write_bytes(pickle.dumps(WritesAFile(marker), protocol=protocol))
    return path


def observation(files, method: str) -> str:
    resolver = IdentifierResolver(files.data_root)
    rows, keys = (files.visits, VISIT_KEYS) if method == "rv" else (files.stars, STAR_KEYS)
    return resolver.resolve({key: rows[0][key] for key in keys}).path


def analyse(method: str, model_path, obs: str, output_dir):
    return runner.invoke(
        app,
        ["analyse", method, obs, METHOD_OPTIONS[method], str(model_path), "-o", str(output_dir),
         "-j", "1"],
    )  # fmt: skip


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("astra: error:")]


def test_the_booby_traps_are_real(tmp_path):
    """The files below really run code when unpickled, so 'no marker' proves nothing ran."""
    marker = tmp_path / "ran"
    pickle.loads(write_pickle(tmp_path / "a.pkl", marker).read_bytes())
    assert marker.read_text() == "ran"

    marker.unlink()
    np.savez(tmp_path / "b.npz", flux=np.array([WritesAFile(marker), 1.0], dtype=object))
    with np.load(tmp_path / "b.npz", allow_pickle=True) as archive:
        archive["flux"]
    assert marker.exists()


@pytest.mark.parametrize(
    ("name", "protocol"),
    [
        ("model.pkl", 0),
        ("model.pkl", pickle.DEFAULT_PROTOCOL),
        ("model.pickle", 4),
        ("model.joblib", pickle.HIGHEST_PROTOCOL),
        ("grid.fits", pickle.DEFAULT_PROTOCOL),
        ("grid.fits", 2),
        ("grid.npz", pickle.DEFAULT_PROTOCOL),
        ("grid.ferre", pickle.DEFAULT_PROTOCOL),
        ("grid", pickle.HIGHEST_PROTOCOL),
    ],
)
def test_pickles_are_refused_however_they_are_named(tmp_path, name, protocol):
    marker = tmp_path / "ran"
    path = write_pickle(tmp_path / name, marker, protocol)

    for reader in READERS:
        with pytest.raises(ModelFileError) as caught:
            reader(path)
        assert isinstance(caught.value, UsageError)
        message = str(caught.value)
        assert str(path) in message and "pickle" in message, (reader.__name__, message)
    assert not marker.exists(), "a model file's code ran"


@pytest.mark.parametrize("name", ["grid.fits", "grid.npz", "grid.dat"])
def test_protocol_0_pickles_in_disguise_are_refused_without_running(tmp_path, name):
    """Protocol 0 has no magic byte; whatever the reader makes of it, it must not unpickle."""
    marker = tmp_path / "ran"
    path = write_pickle(tmp_path / name, marker, protocol=0)

    for reader in READERS:
        with pytest.raises(ModelFileError) as caught:
            reader(path)
        assert str(path) in str(caught.value), reader.__name__
    assert not marker.exists()


def test_npz_with_an_object_array_is_refused_without_unpickling(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "grid.npz"
    np.savez(
        path,
        flux=np.ones((2, 2, 10)),
        labels=np.array(["teff", "logg"]),
        llimits=np.array([4000.0, 1.0]),
        steps=np.array([250.0, 0.5]),
        wave=np.array([4.179, 6e-6]),
        logw=np.array(True),
        history=np.array([WritesAFile(marker)], dtype=object),
    )

    for reader in (read_grid, check_grid):
        with pytest.raises(ModelFileError) as caught:
            reader(path)
        assert str(path) in str(caught.value) and "object arrays" in str(caught.value)
    assert not marker.exists()


@pytest.mark.parametrize("method", ["grid", "cannon", "rv"])
def test_cli_refuses_a_pickled_model_before_any_work(demo_files, tmp_path, method):
    marker = tmp_path / "ran"
    evil = write_pickle(tmp_path / "evil.pkl", marker)

    result = analyse(method, evil, observation(demo_files, method), tmp_path / "out")

    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("astra: error:") and str(evil) in lines[0] and "pickle" in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists(), "nothing may be stored"
    assert not marker.exists()


def test_cli_refuses_a_pickle_disguised_as_fits(demo_files, tmp_path):
    marker = tmp_path / "ran"
    evil = write_pickle(tmp_path / "grid.fits", marker)

    result = analyse("grid", evil, observation(demo_files, "grid"), tmp_path / "out")

    assert result.exit_code == 2
    assert str(evil) in result.stderr
    assert not (tmp_path / "out").exists()
    assert not marker.exists()


def test_python_api_refuses_a_pickled_grid(demo_files, tmp_path):
    marker = tmp_path / "ran"
    evil = write_pickle(tmp_path / "grid.npz", marker)

    with pytest.raises(ModelFileError, match="pickle"):
        astra_cli.run(
            "grid", [observation(demo_files, "grid")], output_dir=tmp_path / "out", jobs=1,
            grid=evil,
        )  # fmt: skip
    assert not (tmp_path / "out").exists()
    assert not marker.exists()


# --- missing and unreadable model files ---------------------------------------------------------


def small_grid(files) -> GridData:
    """The demo grid's first 2 x 2 x 2 nodes: a small, valid grid."""
    grid = read_grid(files.grid_fits)
    flux = np.asarray(grid.values).reshape(*grid.shape, grid.npix)[:2, :2, :2]
    return replace(grid, shape=(2, 2, 2), values=flux.reshape(8, grid.npix))


def missing(files, method, tmp_path):
    return tmp_path / "models" / "nowhere.fits"


def truncated_fits(files, method, tmp_path):
    """A copy cut short in its data, as an interrupted download leaves it."""
    source = {"grid": files.grid_fits, "cannon": files.cannon_model, "rv": files.templates}
    data = source[method].read_bytes()
    path = tmp_path / f"truncated-{source[method].name}"
    path.write_bytes(data[: len(data) // 2])
    return path


def truncated_fits_header(files, method, tmp_path):
    source = {"grid": files.grid_fits, "cannon": files.cannon_model, "rv": files.templates}
    path = tmp_path / f"short-{source[method].name}"
    path.write_bytes(source[method].read_bytes()[:1000])
    return path


def fits_without_format_keywords(files, method, tmp_path):
    """A valid FITS image that is not an astra model (no ASTRAGRD/NLABELS, ASTRACNN, ASTRATPL)."""
    path = tmp_path / "image.fits"
    fits.PrimaryHDU(np.ones((4, 8575), dtype=np.float32)).writeto(path)
    return path


def wrong_model_kind(files, method, tmp_path):
    """Another method's model: a Cannon model given as a grid or as RV templates (which may be
    any grid or network), a grid as a Cannon model."""
    return files.grid_fits if method == "cannon" else files.cannon_model


def ferre_with_too_few_values(files, method, tmp_path):
    path = tmp_path / "short.ferre"
    write_grid(small_grid(files), path, "ferre-ascii")
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))  # the last node spectrum is missing
    return path


def ferre_with_too_many_values(files, method, tmp_path):
    path = tmp_path / "long.ferre"
    write_grid(small_grid(files), path, "ferre-ascii")
    with open(path, "a") as handle:
        handle.write("1.0 0.99 0.98\n")
    return path


def ferre_without_synth(files, method, tmp_path):
    path = tmp_path / "nosynth.ferre"
    write_grid(small_grid(files), path, "ferre-ascii")
    text = path.read_text()
    assert "&SYNTH" in text
    path.write_text(text.replace(" &SYNTH\n", "", 1))
    return path


def ferre_text_for_a_fits_model(files, method, tmp_path):
    path = tmp_path / "grid.ferre"
    write_grid(small_grid(files), path, "ferre-ascii")
    return path


UNUSABLE = [
    ("grid", missing),
    ("grid", truncated_fits),
    ("grid", truncated_fits_header),
    ("grid", fits_without_format_keywords),
    ("grid", wrong_model_kind),
    ("grid", ferre_with_too_few_values),
    ("grid", ferre_with_too_many_values),
    ("grid", ferre_without_synth),
    ("cannon", missing),
    ("cannon", truncated_fits),
    ("cannon", truncated_fits_header),
    ("cannon", fits_without_format_keywords),
    ("cannon", wrong_model_kind),
    ("cannon", ferre_text_for_a_fits_model),
    ("rv", missing),
    ("rv", truncated_fits),
    ("rv", truncated_fits_header),
    ("rv", fits_without_format_keywords),
    ("rv", wrong_model_kind),
    ("rv", ferre_without_synth),
]


@pytest.mark.parametrize(
    ("method", "make"), UNUSABLE, ids=[f"{m}-{make.__name__}" for m, make in UNUSABLE]
)
def test_unusable_model_file_stops_the_invocation_before_any_work(
    demo_files, tmp_path, method, make
):
    model_path = make(demo_files, method, tmp_path)

    result = analyse(method, model_path, observation(demo_files, method), tmp_path / "out")

    assert result.exit_code == 2, result.output
    (line,) = error_lines(result)
    assert str(model_path) in line, line
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists(), "nothing may be run or stored"


def test_a_model_cut_inside_a_header_is_said_to_be_truncated(demo_files, tmp_path):
    """astropy leaves out an HDU whose header is cut: the model would look as if it lacked an
    extension. Zero padding after the last HDU, which some writers leave, is no cut."""
    data = demo_files.cannon_model.read_bytes()
    with fits.open(demo_files.cannon_model) as hdus:
        second = hdus.fileinfo(2)["hdrLoc"]
    cut, padded = tmp_path / "cut.fits", tmp_path / "padded.fits"
    cut.write_bytes(data[: second + 100])
    padded.write_bytes(data + bytes(2880))

    with pytest.raises(ModelFileError, match="it ends inside HDU2's header, 100 bytes past HDU1"):
        check_cannon(cut)
    check_cannon(padded)


def test_the_valid_small_ferre_grid_is_usable(demo_files, tmp_path):
    """The broken FERRE files above differ from a good one only in what they break."""
    path = ferre_text_for_a_fits_model(demo_files, "grid", tmp_path)
    check_grid(path)
    grid = read_grid(path)
    assert grid.shape == (2, 2, 2) and grid.columns == ("teff", "logg", "m_h")

    result = analyse("grid", path, observation(demo_files, "grid"), tmp_path / "out")
    assert result.exit_code == 0, result.output
