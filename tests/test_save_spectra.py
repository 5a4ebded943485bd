"""`grid --save-spectra`: each run's fit written as a file under the output directory, named in
the store, so that a fit can be looked at."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from typer.testing import CliRunner

from astra_cli.cli.app import app
from astra_cli.demo.report import STAR_KEYS, VISIT_KEYS
from astra_cli.io.fitfiles import read_fitted_spectrum, spectrum_path
from astra_cli.io.identifiers import IdentifierResolver
from astra_cli.science.wavelength import doppler_factor

runner = CliRunner()


def resolved(files, rows, keys) -> list[str]:
    resolver = IdentifierResolver(files.data_root)
    return [resolver.resolve({key: row[key] for key in keys}).path for row in rows]


def exported(output_dir: Path, tmp_path: Path) -> Table:
    table = tmp_path / "grid.ecsv"
    written = runner.invoke(
        app, ["results", "grid", "--output-dir", str(output_dir), "-o", str(table)]
    )
    assert written.exit_code == 0, written.output
    return Table.read(table)


def test_each_run_writes_its_fit_and_the_store_names_the_file(demo_files, tmp_path):
    stars = resolved(demo_files, demo_files.stars[:4], STAR_KEYS)
    out = tmp_path / "out"
    command = ["analyse", "grid", *stars, "--grid", str(demo_files.grid_fits), "--save-spectra"]
    result = runner.invoke(app, [*command, "--output-dir", str(out), "--jobs", "1"])
    assert result.exit_code == 0, result.output

    table = exported(out, tmp_path)
    assert len(table) == 4
    files = sorted((out / "spectra").rglob("*.fits"))
    assert sorted(out / name for name in table["spectrum_file"]) == files
    for row in table:
        assert Path(row["spectrum_file"]).parts[:3] == ("spectra", "grid", row["group_key"])
        fit = read_fitted_spectrum(out / row["spectrum_file"])
        used = np.isfinite(fit.error)
        assert used.sum() == row["n_pixels"]
        # The file holds the fit that was stored: its residuals give the stored chi-square.
        pulls = (fit.flux - fit.model)[used] / fit.error[used]
        assert np.isclose(np.sum(pulls**2), row["chi2"], rtol=1e-6)
        with fits.open(out / row["spectrum_file"]) as hdus:
            assert hdus[0].header["OBSKEY"] == row["observation"]
            assert hdus[0].header["INPUT"] == row["input_path"]


def test_without_the_option_nothing_is_written(demo_files, tmp_path):
    stars = resolved(demo_files, demo_files.stars[:2], STAR_KEYS)
    out = tmp_path / "out"
    command = ["analyse", "grid", *stars, "--grid", str(demo_files.grid_fits)]
    assert runner.invoke(app, [*command, "--output-dir", str(out), "--jobs", "1"]).exit_code == 0
    assert not (out / "spectra").exists()
    assert "spectrum_file" not in exported(out, tmp_path).colnames


def test_a_visit_is_saved_at_its_rest_wavelengths(demo_files, tmp_path):
    row = demo_files.visits[0]
    visit = resolved(demo_files, [row], VISIT_KEYS)[0]
    manifest = tmp_path / "visit.csv"
    manifest.write_text(f"path,v_rad\n{visit},{row['v_rad']}\n")
    out = tmp_path / "out"
    command = ["analyse", "grid", "--from-file", str(manifest), "--save-spectra"]
    result = runner.invoke(
        app, [*command, "--grid", str(demo_files.grid_fits), "--output-dir", str(out)]
    )
    assert result.exit_code == 0, result.output
    saved = exported(out, tmp_path)["spectrum_file"][0]
    fit = read_fitted_spectrum(out / saved)
    with fits.open(visit) as hdus:
        observed = np.sort(hdus[4].data.ravel())
    rest = observed / doppler_factor(row["v_rad"])
    # Every saved pixel is one of the visit's own pixels, moved to rest.
    nearest = rest[np.clip(np.searchsorted(rest, fit.wavelength), 0, rest.size - 1)]
    assert np.allclose(fit.wavelength, nearest, rtol=1e-9)


def test_file_names_stay_inside_the_spectra_directory():
    for key in (
        "path:/data/../../etc/passwd",
        "path:/data/apStar-x.fits|v_rad=12.5",
        "apStar:apred=dr17,field=218-04,obj=2M06440890-0610126,release=dr17,telescope=apo25m",
        "path:/" + "x" * 500,
    ):
        path = spectrum_path("grid", "abc123", key)
        assert path.parent == Path("spectra/grid/abc123")
        assert ".." not in path.name and "/" not in path.name and len(path.name) < 120
    names = {spectrum_path("grid", "g", f"path:/d/{i}/apStar-x.fits").name for i in range(3)}
    assert len(names) == 3, "observations of one file name in different directories differ"
