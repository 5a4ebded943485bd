"""`astra plot fit` and `astra plot results`: real images drawn from a real store, checked for
size and content; bad names refused before anything is drawn."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import drawn
from typer.testing import CliRunner

from astra_cli.cli.app import app

pytest.importorskip("matplotlib")
runner = CliRunner()


def plot(fitted_store, *args):
    return runner.invoke(app, ["plot", *args, "--output-dir", str(fitted_store)])


def test_a_fit_is_drawn_from_its_saved_spectrum(demo_files, fitted_store, tmp_path):
    image = tmp_path / "fit.png"
    result = plot(fitted_store, "fit", demo_files.stars[0]["obj"], "-o", str(image))
    assert result.exit_code == 0, result.output
    pixels = drawn(image)
    assert pixels.shape[1] > 2 * pixels.shape[0]  # three chips side by side
    red = (pixels[..., 0] > 0.6) & (pixels[..., 1] < 0.3) & (pixels[..., 2] < 0.3)
    assert red.sum() > 500  # the model is drawn over the spectrum


def test_by_default_the_fit_goes_under_the_output_directory(demo_files, fitted_store):
    result = plot(fitted_store, "fit", demo_files.stars[1]["obj"])
    assert result.exit_code == 0, result.output
    (written,) = (fitted_store / "plots").glob("fit-grid-*.png")
    drawn(written)
    assert str(written) in result.stderr.replace("\n", "")


def test_chips_are_the_pixel_ranges_between_gaps(demo_files, fitted_store):
    from astra_cli.io.fitfiles import read_fitted_spectrum
    from astra_cli.plots.fit import chips

    (saved, *_) = (fitted_store / "spectra" / "grid").rglob("*.fits")
    spectrum = read_fitted_spectrum(saved)
    panels = chips(spectrum.wavelength)
    assert len(panels) == 3
    assert sum(panel.stop - panel.start for panel in panels) == len(spectrum.wavelength)


def test_a_run_without_a_saved_spectrum_says_how_to_get_one(demo_files, fitted_store, tmp_path):
    result = plot(fitted_store, "fit", demo_files.stars[0]["obj"], "--method", "snr")
    assert result.exit_code == 2
    assert "--save-spectra" in result.output and "Traceback" not in result.output
    assert plot(fitted_store, "fit", "2M99999999+9999999").exit_code == 2


def test_a_kiel_diagram_in_each_format_its_name_says(fitted_store, tmp_path):
    for name, magic in (("kiel.png", b"\x89PNG"), ("kiel.pdf", b"%PDF"), ("kiel.svg", b"<?xml")):
        result = plot(fitted_store, "results", "grid", "-o", str(tmp_path / name))
        assert result.exit_code == 0, result.output
        assert (tmp_path / name).read_bytes().startswith(magic)
    drawn(tmp_path / "kiel.png")


def test_teff_and_logg_decrease_and_flagged_runs_are_marked_apart(fitted_store):
    from astra_cli.plots.catalogue import scatter_figure
    from astra_cli.tables import results

    table = results("grid", fitted_store)
    table["flags"][:3] = 1
    figure = scatter_figure(table, "teff", "logg", "m_h", "grid")
    (axis, _colorbar) = figure.axes
    assert axis.xaxis_inverted() and axis.yaxis_inverted()
    legend = [text.get_text() for text in axis.get_legend().get_texts()]
    assert legend == [f"{len(table) - 3} unflagged", "3 flagged"]
    assert axis.get_xlabel() == "teff [K]"
    other = scatter_figure(table, "snr", "rchi2", None, "grid")
    assert not other.axes[0].xaxis_inverted() and len(other.axes) == 1


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["results", "grid", "-o", "kiel.jpeg"], "--out kiel.jpeg"),
        (["results", "grid", "--x", "nosuch"], "--x nosuch: no such column"),
        (["results", "grid", "--color", "telescope"], "--color telescope: is not a column of"),
        (["results", "nosuch"], "nosuch"),
        (["fit", "2M00000000+0000000", "-o", "fit.txt"], "--out fit.txt"),
    ],
)
def test_bad_names_are_one_line_errors(fitted_store, args, named):
    result = plot(fitted_store, *args)
    assert result.exit_code == 2
    assert named in result.output and "Traceback" not in result.output


def test_a_directory_given_as_the_image_is_refused(fitted_store, tmp_path):
    folder = tmp_path / "images.png"
    folder.mkdir()
    result = plot(fitted_store, "results", "grid", "-o", str(folder))
    assert result.exit_code == 2 and "is a directory" in result.output


def test_without_matplotlib_the_message_says_how_to_install_it(fitted_store, tmp_path):
    """A real process in which `import matplotlib` fails, as it does without the extra."""
    hidden = tmp_path / "no-matplotlib" / "matplotlib"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    env = {**os.environ, "PYTHONPATH": str(hidden.parent)}
    command = [sys.executable, "-m", "astra_cli", "plot", "results", "grid",
               "--output-dir", str(fitted_store), "-o", str(tmp_path / "kiel.png")]  # fmt: skip
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2
    assert "pip install 'astra-cli[plot]'" in finished.stderr
    assert "Traceback" not in finished.stderr and not (tmp_path / "kiel.png").exists()


def test_the_title_gives_the_labels_and_says_when_the_method_flagged_the_fit(
    demo_files, fitted_store
):
    import dataclasses

    from astra_cli.cli.plot import _title
    from astra_cli.io.store import ResultsStore

    star = demo_files.stars[0]
    with ResultsStore(fitted_store, read_only=True) as opened:
        (run,) = [run for run in opened.runs_of(star["obj"]) if run.method == "grid"]
    title = _title(run)
    assert title.startswith(f"{star['obj']}: grid (group {run.group_key})\n")
    assert "teff = " in title and "logg = " in title and "FLAGGED" not in title
    doubted = dataclasses.replace(run, result={**(run.result or {}), "flags": 2})
    assert "FLAGGED (flags = 2)" in _title(doubted)
