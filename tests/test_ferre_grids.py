"""Every grid layout FERRE reads, read right or refused: a small grid of the demo's line model on
APOGEE's three chips (ASPCAP's layout) written by the tests as FERRE ASCII (MULTI = 3), binary
(.hdr + .unf), with ordinary namelist syntax, D exponents, TRANSPOSED = 1, LOGW = 2, PCA-compressed
and with ASPCAP's label names, each fitted to the same spectra as the astra FITS copy; FERRE's
own reference grid in both of its files; and the headers and data astra must refuse."""

from __future__ import annotations

import csv
import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT
from typer.testing import CliRunner

import astra_cli
from astra_cli.cli.app import app
from astra_cli.demo.dataset import write_apstar
from astra_cli.demo.synthesis import normalised_flux
from astra_cli.io.grids import GridData, check_grid, read_grid, write_grid
from astra_cli.io.grids.ferre import ListDirected, header_blocks, parse_header
from astra_cli.io.grids.model import LOGW_LN, LOGW_LOG10, PcaBasis, Section, column_name
from astra_cli.io.grids.namelist import NamelistError, read_blocks
from astra_cli.io.modelfiles import ModelFileError
from astra_cli.io.store import ResultsStore
from astra_cli.science.wavelength import APSTAR_CDELT1, APSTAR_CRVAL1, apstar_wavelength

runner = CliRunner()
FERRE = ROOT.parent / "shared" / "data" / "ferre"
CHIP_PIXELS = ((322, 3242), (3648, 6048), (6412, 8306))
"""The apStar pixels of the blue, green and red chips, as ASPCAP's grids hold them."""
LLIMITS, STEPS, SHAPE = (4500.0, 2.0, -1.0), (250.0, 0.25, 0.25), (7, 5, 5)
TRUE_LABELS = [(4830.0, 2.37, -0.61), (5390.0, 2.62, -0.33), (5710.0, 2.81, -0.84)]


def lattice_flux() -> np.ndarray:
    nodes_of = [lo + st * np.arange(n) for lo, st, n in zip(LLIMITS, STEPS, SHAPE, strict=True)]
    axes = np.meshgrid(*nodes_of, indexing="ij")
    nodes = np.stack([axis.ravel() for axis in axes], axis=1)
    pixels = np.concatenate([np.arange(a, b) for a, b in CHIP_PIXELS])
    return normalised_flux(apstar_wavelength()[pixels], nodes).astype(np.float32)


def chip_sections(logw: int = LOGW_LOG10) -> tuple[Section, ...]:
    sections, start = [], 0
    for first, last in CHIP_PIXELS:
        wave = (APSTAR_CRVAL1 + APSTAR_CDELT1 * first, APSTAR_CDELT1)
        if logw == LOGW_LN:
            wave = (wave[0] * np.log(10.0), wave[1] * np.log(10.0))
        sections.append(Section(start, last - first, wave, logw, 22500.0))
        start += last - first
    return tuple(sections)


@pytest.fixture(scope="module")
def base_grid() -> GridData:
    return GridData(
        path="", format="test", labels=("TEFF", "LOGG", "METALS"), llimits=np.array(LLIMITS),
        steps=np.array(STEPS), shape=SHAPE, sections=chip_sections(), values=lattice_flux(),
        vacuum=True, metadata={"ID": "astra test grid"},
    )  # fmt: skip


@pytest.fixture(scope="module")
def spectra(tmp_path_factory) -> list[Path]:
    directory = tmp_path_factory.mktemp("spectra")
    rng = np.random.default_rng(11)
    paths = []
    for index, labels in enumerate(TRUE_LABELS):
        path = directory / f"apStar-test-{index}.fits"
        write_apstar(path, np.array(labels), 150.0, rng, f"2M0000000{index}+0000000", 0.0)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def grids(base_grid, tmp_path_factory) -> dict[str, Path]:
    """The same grid in every layout."""
    directory = tmp_path_factory.mktemp("grids")
    made = {"fits": directory / "grid.fits", "ascii": directory / "grid.dat"}
    write_grid(base_grid, made["fits"], "astra")
    write_grid(base_grid, made["ascii"], "ferre-ascii")
    made["binary"] = directory / "grid.hdr"
    write_grid(base_grid, made["binary"], "ferre-binary")
    made["syntax"] = directory / "syntax.dat"
    made["syntax"].write_text(ordinary_namelist_syntax(made["ascii"].read_text()))
    made["d-exponents"] = directory / "dexp.dat"
    write_d_exponents(base_grid, made["d-exponents"])
    made["transposed"] = directory / "transposed.dat"
    write_transposed(base_grid, made["transposed"])
    made["transposed-binary"] = directory / "transposed.hdr"
    write_transposed(base_grid, made["transposed-binary"], binary=True)
    made["ln-lambda"] = directory / "lnlambda.dat"
    write_grid(
        replace(base_grid, sections=chip_sections(LOGW_LN)), made["ln-lambda"], "ferre-ascii"
    )
    return made


def ordinary_namelist_syntax(text: str) -> str:
    """The same header as a person writes it: lower case, commas, several items on a line,
    a repeat count, D exponents, a comment, single and double quotes."""
    blocks = text.split(" /\n")
    header, data = blocks[:-1], blocks[-1]
    rewritten = []
    for block in header:
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        items = []
        for line in lines:
            if line.upper().startswith("&SYNTH"):
                continue
            key, _, value = line.partition(" = ")
            if key == "STEPS":
                value = "250., 2*0.25"
            if key == "WAVE":
                first, step = value.split()
                value = f"{float(first):.10E}".replace("E", "D") + f", {step}"
            if key.startswith("LABEL"):
                value = '"' + value.strip("'") + '"'
            items.append(f"{key.lower()} = {value}")
        pairs = [", ".join(items[i : i + 3]) for i in range(0, len(items), 3)]
        rewritten.append("&synth  ! a block\n  " + ",\n  ".join(pairs) + "\n/\n")
    return "".join(rewritten) + data


def write_d_exponents(grid: GridData, path: Path) -> None:
    """Values as 1.234567890D-01, each model over two lines."""
    from astra_cli.io.grids.ferre import header_text

    with open(path, "w") as handle:
        handle.write(header_text(grid))
        for model in np.asarray(grid.values, dtype=np.float64):
            text = [f"{value:.9E}".replace("E", "D") for value in model]
            half = len(text) // 2
            handle.write(" ".join(text[:half]) + "\n" + " ".join(text[half:]) + "\n")


def write_transposed(grid: GridData, path: Path, *, binary: bool = False) -> None:
    from astra_cli.io.formats import binary_data_path
    from astra_cli.io.grids.ferre import header_text

    header = header_text(grid).replace(" MULTI = 3", " MULTI = 3\n TRANSPOSED = 1", 1)
    by_pixel = np.ascontiguousarray(np.asarray(grid.values).T)
    if binary:
        path.write_text("".join(line.ljust(600) + "\n" for line in header.splitlines()))
        binary_data_path(path).write_bytes(by_pixel.astype("<f4").tobytes())
        return
    with open(path, "w") as handle:
        handle.write(header)
        np.savetxt(handle, by_pixel, fmt="%.9g")


def fit(grid: Path, spectra, tmp_path, **options) -> dict[str, dict]:
    out = tmp_path / f"out-{grid.stem}-{abs(hash(str(grid)))}"
    summary = astra_cli.run("grid", spectra, output_dir=out, jobs=1, grid=grid, **options)
    assert summary.ok == len(spectra), summary.failures
    with ResultsStore(out) as store:
        return {Path(r.input_path).name: r.result for r in store.records(method="grid")}


@pytest.fixture(scope="module")
def fits_answers(grids, spectra, tmp_path_factory):
    return fit(grids["fits"], spectra, tmp_path_factory.mktemp("fits"))


LAYOUTS = ["ascii", "binary", "syntax", "d-exponents", "transposed", "transposed-binary",
           "ln-lambda"]  # fmt: skip


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_reads_the_same_values(base_grid, grids, layout):
    grid = read_grid(grids[layout])
    assert grid.shape == SHAPE and grid.labels == ("TEFF", "LOGG", "METALS")
    np.testing.assert_array_equal(grid.llimits, LLIMITS)
    np.testing.assert_allclose(grid.steps, STEPS, rtol=1e-12)
    assert [s.npix for s in grid.sections] == [b - a for a, b in CHIP_PIXELS]
    np.testing.assert_allclose(grid.wavelength(), base_grid.wavelength(), rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(grid.values), base_grid.values)
    assert grid.vacuum is True


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_gives_the_labels_of_the_fits_grid(
    grids, spectra, fits_answers, layout, tmp_path
):
    answers = fit(grids[layout], spectra, tmp_path)
    for name, expected in fits_answers.items():
        for column in ("teff", "logg", "metals"):
            assert answers[name][column] == pytest.approx(expected[column], rel=1e-6), column
        assert answers[name]["flags"] == expected["flags"]


def test_the_fits_grid_recovers_the_true_labels(fits_answers, spectra):
    """To a small part of a node step: what linear interpolation between coarse nodes allows."""
    for path, truth in zip(spectra, TRUE_LABELS, strict=True):
        found = fits_answers[path.name]
        assert found["flags"] == 0
        for column, true, step in zip(("teff", "logg", "metals"), truth, STEPS, strict=True):
            assert abs(found[column] - true) < 0.15 * step, column


def test_binary_data_are_memory_mapped_float32(grids):
    values = read_grid(grids["binary"]).values
    assert isinstance(values, np.memmap) and values.dtype == np.float32
    assert not values.flags.writeable


def test_a_pca_grid_fits_as_its_expansion(base_grid, spectra, tmp_path):
    """NPCA: 6 pieces of 20 components, interpolated in coefficients and expanded on the fly;
    the same grid expanded in full (astra grid convert to FITS) gives the same labels."""
    pca = compress(base_grid, pieces=6, components=20)
    path = tmp_path / "pca.dat"
    write_grid(pca, path, "ferre-ascii")
    read = read_grid(path)
    assert read.pca is not None and read.pca.n_components == 20
    assert read.values.shape == (base_grid.n_nodes, 120)
    expanded = tmp_path / "expanded.fits"
    assert runner.invoke(app, ["grid", "convert", str(path), str(expanded)]).exit_code == 0
    np.testing.assert_allclose(read_grid(expanded).values, base_grid.values, atol=5e-3)

    compressed, full = fit(path, spectra, tmp_path), fit(expanded, spectra, tmp_path)
    for name, expected in full.items():
        for column in ("teff", "logg", "metals"):
            assert compressed[name][column] == pytest.approx(expected[column], rel=1e-5)


def compress(grid: GridData, pieces: int, components: int) -> GridData:
    values = np.asarray(grid.values, dtype=np.float64)
    widths = np.full(pieces, grid.npix // pieces)
    widths[-1] += grid.npix - widths.sum()
    mean = values.mean(axis=0)
    basis = np.zeros((components, grid.npix))
    coefficients = np.zeros((grid.n_nodes, pieces * components))
    start = 0
    for piece, width in enumerate(widths):
        block = values[:, start : start + width] - mean[start : start + width]
        _, _, vt = np.linalg.svd(block, full_matrices=False)
        basis[:, start : start + width] = vt[:components]
        coefficients[:, piece * components : (piece + 1) * components] = block @ vt[:components].T
        start += width
    pca = PcaBasis(mean, basis.astype(np.float32), tuple(int(w) for w in widths), 0.0)
    return replace(grid, values=coefficients.astype(np.float32), pca=pca)


def test_label_names_that_are_not_identifiers_become_documented_columns(
    base_grid, spectra, tmp_path
):
    aspcap = replace(base_grid, labels=("TEFF", "LOGG", "O Mg Si S Ca Ti"))
    path = tmp_path / "aspcap.hdr"
    write_grid(aspcap, path, "ferre-binary")

    answers = fit(path, spectra[:1], tmp_path)
    assert {"teff", "logg", "o_mg_si_s_ca_ti", "e_o_mg_si_s_ca_ti"} <= set(
        next(iter(answers.values()))
    )
    out = next(tmp_path.glob("out-aspcap-*"))
    table = tmp_path / "aspcap.ecsv"
    written = runner.invoke(app, ["results", "grid", "--output-dir", str(out), "-o", str(table)])
    assert written.exit_code == 0, written.output
    assert "description: grid label 'O Mg Si S Ca Ti'" in table.read_text()
    fits_table = tmp_path / "aspcap.fits"
    runner.invoke(app, ["results", "grid", "--output-dir", str(out), "-o", str(fits_table)])
    from astropy.io import fits

    header = fits.getheader(fits_table, "RESULTS")
    column = next(key for key in header if header[key] == "O_MG_SI_S_CA_TI")
    assert header[column.replace("TTYPE", "TCOMM")] == "grid label 'O Mg Si S Ca Ti'"


@pytest.mark.parametrize(
    ("label", "column"),
    [("O Mg Si S Ca Ti", "o_mg_si_s_ca_ti"), ("C", "c"), ("TEFF", "teff"), ("[M/H]", "m_h"),
     ("12C/13C", "label_12c_13c"), ("  ", "label2"), ("LOG10VDOP", "log10vdop")],
)  # fmt: skip
def test_the_column_naming_rule(label, column):
    assert column_name(label, 2) == column


def test_labels_that_would_share_a_column_are_refused(base_grid, tmp_path):
    path = tmp_path / "clash.hdr"
    write_grid(replace(base_grid, labels=("TEFF", "teff", "METALS")), path, "ferre-binary")
    with pytest.raises(ModelFileError, match="'teff' would be result column 'teff'"):
        check_grid(path)


# --- the FERRE reference: a physical grid in ASPCAP's layout, and FERRE's own answers -------------


def read_csv(path: Path) -> dict[str, dict]:
    with open(path) as handle:
        return {row["file"]: row for row in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def reference_answers(tmp_path_factory):
    spectra = sorted((FERRE / "spectra").glob("apStar-*.fits"))
    assert len(spectra) == 100, f"the FERRE reference spectra are missing from {FERRE}"
    answers = {}
    for grid, covariance in (("ferreref_nn_dwarfs.dat", False), ("ferreref_nn_dwarfs.hdr", True)):
        out = tmp_path_factory.mktemp("ferre") / "out"
        summary = astra_cli.run(
            "grid", spectra, output_dir=out, jobs=2, grid=FERRE / "grid" / grid,
            covariance=covariance,
        )  # fmt: skip
        assert summary.ok == 100, summary.failures
        with ResultsStore(out) as store:
            answers[grid] = {Path(r.input_path).name: r.result for r in store.records()}
    return answers


def test_both_reference_grid_files_give_identical_answers(reference_answers):
    """The ASCII and the binary file of one grid; the binary run stored covariances too,
    which adds columns and changes nothing else."""
    ascii_answers, binary_answers = reference_answers.values()
    covariances = {"cov_metals_logg", "cov_metals_teff", "cov_logg_teff"}
    for name, answer in binary_answers.items():
        assert covariances <= set(answer)
        assert {k: v for k, v in answer.items() if k not in covariances} == ascii_answers[name]


def test_covariances_describe_how_the_errors_are_correlated(reference_answers):
    """Predicted correlations of the labels' errors against those of (fit - truth) / error
    over the 100 reference spectra (measured: predicted 0.39, 0.52, 0.19; found 0.51, 0.63,
    0.40; the sample's own uncertainty is about 0.1)."""
    truth = read_csv(FERRE / "spectra" / "truth.csv")
    answers = reference_answers["ferreref_nn_dwarfs.hdr"]
    columns = {"teff": "teff", "logg": "logg", "metals": "m_h"}
    pulls = {
        column: np.array(
            [(r[column] - float(truth[n][label])) / r[f"e_{column}"] for n, r in answers.items()]
        )
        for column, label in columns.items()
    }
    for first, second in (("logg", "teff"), ("metals", "teff"), ("metals", "logg")):
        predicted = np.array(
            [
                r[f"cov_{first}_{second}"] / (r[f"e_{first}"] * r[f"e_{second}"])
                for r in answers.values()
            ]
        )
        assert np.all(np.abs(predicted) <= 1 + 1e-9)
        found = np.corrcoef(pulls[first], pulls[second])[0, 1]
        assert abs(predicted.mean() - found) < 0.3, (first, second, predicted.mean(), found)


def test_reference_answers_are_as_good_as_ferres(reference_answers):
    """Within 2x FERRE's own rms against the truth (linear interpolation, its configuration D),
    and close to FERRE's answers themselves."""
    truth = read_csv(FERRE / "spectra" / "truth.csv")
    ferre = read_csv(FERRE / "ferre" / "ferre_D.csv")
    astra = reference_answers["ferreref_nn_dwarfs.hdr"]
    for label, column in (("teff", "teff"), ("logg", "logg"), ("m_h", "metals")):
        mine = np.array([astra[name][column] - float(truth[name][label]) for name in truth])
        theirs = np.array([float(ferre[name][label]) - float(truth[name][label]) for name in truth])
        rms, ferre_rms = np.sqrt(np.mean(mine**2)), np.sqrt(np.mean(theirs**2))
        assert rms <= 2 * ferre_rms, f"{label}: astra rms {rms:.4g}, FERRE {ferre_rms:.4g}"
        versus = np.array([astra[name][column] - float(ferre[name][label]) for name in truth])
        assert np.sqrt(np.mean(versus**2)) <= ferre_rms, f"{label}: astra - FERRE"


def test_convert_to_binary_writes_what_ferres_ascii2bin_writes(tmp_path):
    result = runner.invoke(
        app,
        [
            "grid",
            "convert",
            str(FERRE / "grid" / "ferreref_nn_dwarfs.dat"),
            str(tmp_path / "copy.hdr"),
        ],
    )
    assert result.exit_code == 0, result.output
    ours = (tmp_path / "copy.unf").read_bytes()
    assert ours == (FERRE / "grid" / "ferreref_nn_dwarfs.unf").read_bytes()
    again = runner.invoke(
        app,
        [
            "grid",
            "convert",
            str(FERRE / "grid" / "ferreref_nn_dwarfs.dat"),
            str(tmp_path / "copy.hdr"),
        ],
    )
    assert again.exit_code == 2 and "--overwrite" in again.stderr


def test_grid_info_describes_the_reference_grid():
    result = runner.invoke(
        app, ["grid", "info", str(FERRE / "grid" / "ferreref_nn_dwarfs.hdr"), "--json"]
    )
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["format"] == "ferre-binary" and info["memory_mapped"] is True
    assert [label["name"] for label in info["labels"]] == ["METALS", "LOGG", "TEFF"]
    assert [label["nodes"] for label in info["labels"]] == [5, 5, 15]
    assert [s["pixels"] for s in info["sections"]] == [2920, 2400, 1894] and info["pixels"] == 7214
    assert info["nodes"] == 375 and info["vacuum"] is True
    assert info["bytes"] == 10_821_000 + (FERRE / "grid" / "ferreref_nn_dwarfs.hdr").stat().st_size
    ascii_info = runner.invoke(
        app, ["grid", "info", str(FERRE / "grid" / "ferreref_nn_dwarfs.dat")]
    )
    assert "read whole" in ascii_info.stdout and "astra grid convert" in " ".join(
        ascii_info.stdout.split()
    )


def test_combining_grids_appends_their_pixels_as_synthfile_does(base_grid, tmp_path):
    first = replace(base_grid, sections=chip_sections()[:1], values=base_grid.values[:, :2920])
    second = replace(
        base_grid,
        sections=tuple(replace(s, start=s.start - 2920) for s in chip_sections()[1:]),
        values=np.ascontiguousarray(base_grid.values[:, 2920:]),
    )
    write_grid(first, tmp_path / "blue.hdr", "ferre-binary")
    write_grid(second, tmp_path / "green-red.dat", "ferre-ascii")
    result = runner.invoke(
        app,
        [
            "grid",
            "convert",
            str(tmp_path / "blue.hdr"),
            str(tmp_path / "green-red.dat"),
            str(tmp_path / "all.fits"),
        ],
    )
    assert result.exit_code == 0, result.output
    combined = read_grid(tmp_path / "all.fits")
    assert combined.sections == base_grid.sections
    np.testing.assert_array_equal(combined.values, base_grid.values)


# --- what astra refuses, naming the file and what is wrong ---------------------------------------


def edited(grids, tmp_path, layout: str, old: str, new: str, count: int = 1) -> Path:
    source = grids[layout]
    text = source.read_text()
    assert old in text, old
    path = tmp_path / f"edited{source.suffix}"
    path.write_text(text.replace(old, new, count))
    if source.suffix == ".hdr":
        shutil.copy(source.with_suffix(".unf"), path.with_suffix(".unf"))
    return path


@pytest.mark.parametrize(
    ("layout", "old", "new", "message"),
    [
        ("ascii", " LOGW = 1\n", " LOGW = 1\n NSECT = 3\n", "NSECT is not a keyword of FERRE's"),
        ("ascii", " RESOLUTION = 22500", " RESOLUTION = 0", "RESOLUTION = 0 marks photometry"),
        ("ascii", " N_P = 7 5 5", " N_P = 7 5 4", "values after the header, expected"),
        ("ascii", " N_P = 7 5 5", " N_P = 7 5 6", "values after the header, expected"),
        ("ascii", " N_P = 7 5 5\n", " N_P = 7 5 6\n", "the master block gives other N_P"),
        ("ascii", " STEPS = 250.0 0.25 0.25", " STEPS = 250.0 0 0.25", "STEPS must be positive"),
        ("ascii", " LOGW = 1", " LOGW = 3", "LOGW must be 0, 1 or 2"),
        ("ascii", " MULTI = 3", " MULTI = 4", "MULTI asks for 5"),
        ("ascii", " NPIX = 2920", " NPIX = 2919", "is NPIX, N_P or MULTI right?"),
        ("ascii", "LABEL(1) = 'TEFF'", "LABEL(1) = TEFF", "put the string in quotes"),
        ("ascii", " N_OF_DIM = 3", " N_OF_DIM = 3.0", "N_OF_DIM = 3.0 is not a whole number"),
        ("binary", " N_P = 7 5 5", " N_P = 7 5 4", "bytes, but the header's 140 models"),
        ("binary", " LLIMITS = 4500.0", " LLIMITS = 4000.0", "the master block gives other"),
        ("ascii", " VACUUM = 1\n", "\n", "does not say VACUUM"),
    ],
)  # fmt: skip
def test_what_astra_cannot_read_exactly_is_refused_before_any_work(
    grids, spectra, tmp_path, layout, old, new, message
):
    count = 1 if "master" in message else 4
    path = edited(grids, tmp_path, layout, old, new, count=count)
    result = runner.invoke(
        app,
        ["analyse", "grid", str(spectra[0]), "--grid", str(path), "-o", str(tmp_path / "out")],
        env={"COLUMNS": "300"},
    )
    assert result.exit_code == 2, result.output
    text = " ".join(result.stderr.split())
    assert str(path) in text and message in text, text
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_null_values_and_slashes_in_the_data_are_refused(tmp_path):
    lines = iter(["1.0, , 2.0\n"])
    with pytest.raises(ValueError, match="an empty value or '/'"):
        ListDirected(lines, 10).read(3, "model 1")


def test_an_air_grid_is_converted_when_asked(base_grid, spectra, fits_answers, tmp_path):
    from astra_cli.science.grids import air_to_vacuum_wavelength

    sections = []
    for section in base_grid.sections:
        first_vacuum = section.wavelength()[0]
        first_air = first_vacuum / (
            air_to_vacuum_wavelength(np.array([first_vacuum]))[0] / first_vacuum
        )
        sections.append(replace(section, wave=(float(np.log10(first_air)), section.wave[1])))
    path = tmp_path / "air.hdr"
    write_grid(replace(base_grid, sections=tuple(sections), vacuum=False), path, "ferre-binary")

    refused = runner.invoke(
        app, ["analyse", "grid", str(spectra[0]), "--grid", str(path), "-o", str(tmp_path / "o")]
    )
    assert refused.exit_code == 2 and "VACUUM = 0 (air)" in refused.stderr
    answers = fit(path, spectra, tmp_path, air_to_vacuum=True)
    for name, expected in fits_answers.items():
        assert answers[name]["teff"] == pytest.approx(
            expected["teff"], abs=0.5 * expected["e_teff"]
        )


# --- the namelist reader on its own ------------------------------------------------------------


def test_namelist_rules():
    text = """
    &OTHER X = 1 /
    $synth n_p = 3*4, 7  label(2) = 'It''s'  ! a comment
      wave(2) = 1.5d-3, steps(2:3) = 2 3 /
    &SYNTH llimits = , 9. &END
    """
    first, second = read_blocks(text)
    assert first.array("N_P") == [4, 4, 4, 7] and first.array("LABEL") == [None, "It's"]
    assert first.array("WAVE") == [None, 1.5e-3] and first.array("STEPS") == [None, 2.0, 3.0]
    assert second.array("N_P") == [4, 4, 4, 7], "values carry over to the next block"
    assert second.array("LLIMITS") == [None, 9.0] and second.given == {"LLIMITS"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("&SYNTH N_P = 1 2", "no closing '/'"),
        ("&SYNTH WAVE = 1 2 3 /", "3 values for WAVE, which holds 2"),
        ("&SYNTH NPIX(2) = 1 /", "NPIX is not an array"),
        ("&SYNTH N_P(21) = 1 /", "outside 1..20"),
        ("&SYNTH ID = 5 /", "put the string in quotes"),
        ("&SYNTH NPIX = 'x' /", "takes a number"),
    ],
)
def test_namelist_errors(text, message):
    with pytest.raises(NamelistError, match=re.escape(message)):
        read_blocks(text)


def test_the_reference_header_is_read_as_ferre_reads_it():
    with open(FERRE / "grid" / "ferreref_nn_dwarfs.hdr") as stream:
        blocks, lines = header_blocks(stream)
    header = parse_header(blocks)
    assert lines == 57 and len(blocks) == 4
    assert header.labels == ("METALS", "LOGG", "TEFF") and header.shape == (5, 5, 15)
    assert [s.wave for s in header.sections] == [
        (4.180932, 6e-6),
        (4.200888, 6e-6),
        (4.217472, 6e-6),
    ]
    assert header.stored == 7214 and header.vacuum is True and not header.transposed


# --- fitting options: cubic interpolation, fixed labels, pixel weights, the search --------------


@pytest.fixture(scope="module")
def cubic_sample(tmp_path_factory):
    """FERRE's reference spectra fitted with cubic interpolation: a sample of 40."""
    spectra = sorted((FERRE / "spectra").glob("apStar-*.fits"))[::-1][:40]
    out = tmp_path_factory.mktemp("cubic") / "out"
    summary = astra_cli.run(
        "grid", spectra, output_dir=out, jobs=2, grid=FERRE / "grid" / "ferreref_nn_dwarfs.hdr",
        interpolation="cubic",
    )  # fmt: skip
    assert summary.ok == len(spectra), summary.failures
    with ResultsStore(out) as store:
        return {Path(r.input_path).name: r.result for r in store.records()}


def test_cubic_interpolation_is_as_good_as_ferres(cubic_sample):
    """No worse than 1.2x FERRE's own cubic (INTER = 3) rms against the truth, on the same
    spectra."""
    truth = read_csv(FERRE / "spectra" / "truth.csv")
    ferre = read_csv(FERRE / "ferre" / "ferre_E.csv")
    for label, column in (("teff", "teff"), ("logg", "logg"), ("m_h", "metals")):
        mine = np.array([r[column] - float(truth[n][label]) for n, r in cubic_sample.items()])
        theirs = np.array([float(ferre[n][label]) - float(truth[n][label]) for n in cubic_sample])
        rms, ferre_rms = np.sqrt(np.mean(mine**2)), np.sqrt(np.mean(theirs**2))
        assert rms <= 1.2 * ferre_rms, f"{label}: astra rms {rms:.4g}, FERRE {ferre_rms:.4g}"


@pytest.mark.parametrize("interpolation", ["linear", "cubic"])
def test_errors_describe_the_true_scatter(reference_answers, cubic_sample, interpolation):
    """rms of (fit - truth) / error between 0.7 and 1.5 for every label."""
    truth = read_csv(FERRE / "spectra" / "truth.csv")
    answers = (
        cubic_sample if interpolation == "cubic" else reference_answers["ferreref_nn_dwarfs.hdr"]
    )
    for label, column in (("teff", "teff"), ("logg", "logg"), ("m_h", "metals")):
        pulls = [
            (r[column] - float(truth[n][label])) / r[f"e_{column}"] for n, r in answers.items()
        ]
        rms = float(np.sqrt(np.mean(np.square(pulls))))
        assert 0.7 <= rms <= 1.5, f"{label}: rms pull {rms:.3g}"


def test_a_fixed_label_stays_and_the_others_are_fitted(spectra, fits_answers, grids, tmp_path):
    answers = fit(grids["fits"], spectra, tmp_path, fix="logg=2.5")
    for name, result in answers.items():
        assert result["logg"] == 2.5 and result["e_logg"] == 0.0
        assert result["e_teff"] > 0 and result["e_metals"] > 0
        assert result["teff"] != fits_answers[name]["teff"]  # fitted again, with logg held
        assert abs(result["teff"] - fits_answers[name]["teff"]) < 300


def test_a_manifest_fixes_labels_row_by_row(spectra, fits_answers, grids, tmp_path):
    """fix_<label> columns hold a label for their row alone; an empty cell leaves it free."""
    manifest = tmp_path / "fixed.csv"
    manifest.write_text(
        f"path,fix_logg,fix_metals\n{spectra[0]},2.5,\n{spectra[1]},,-0.5\n{spectra[2]},,\n"
    )
    out = tmp_path / "out"
    command = ["analyse", "grid", "--from-file", str(manifest), "--grid", str(grids["fits"])]
    result = runner.invoke(app, [*command, "--output-dir", str(out), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    with ResultsStore(out) as store:
        answers = {Path(r.input_path).name: r for r in store.records(method="grid")}
    first, second, third = (answers[path.name] for path in spectra[:3])
    assert first.result["logg"] == 2.5 and first.result["e_logg"] == 0.0
    assert first.result["metals"] != -0.5 and first.result["e_metals"] > 0
    assert second.result["metals"] == -0.5 and second.result["e_logg"] > 0
    assert third.result == fits_answers[spectra[2].name], "a row without values is fitted free"
    assert first.observation.endswith("|fix_logg=2.5"), "the value is part of the run"


def test_a_fix_column_for_a_label_the_grid_lacks_is_refused(spectra, grids, tmp_path):
    manifest = tmp_path / "fixed.csv"
    manifest.write_text(f"path,fix_gravity\n{spectra[0]},2.5\n")
    command = ["analyse", "grid", "--from-file", str(manifest), "--grid", str(grids["fits"])]
    result = runner.invoke(app, [*command, "--output-dir", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "manifest column fix_gravity" in result.output and "fix_logg" in result.output


def test_weights_that_leave_one_window_fit_that_window_alone(
    spectra, fits_answers, grids, base_grid, tmp_path
):
    weights = np.zeros(base_grid.npix)
    weights[3000:3600] = 1.0  # 600 pixels of the green chip
    path = tmp_path / "window.txt"
    np.savetxt(path, weights)
    answers = fit(grids["fits"], spectra, tmp_path, weights=path)
    for name, result in answers.items():
        assert result["n_pixels"] <= 600
        assert result["teff"] != pytest.approx(fits_answers[name]["teff"], rel=1e-4)
        assert result["e_teff"] > fits_answers[name]["e_teff"], "fewer pixels, larger errors"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--fix", "gravity=3", "'gravity=3' is not LABEL=VALUE with a label of"),
        ("--fix", "logg=9", "logg=9 is outside the grid (2 to 3)"),
        ("--fix", "teff=5000,logg=2.5,metals=0", "every label is fixed"),
        ("--interpolation", "spline", "'spline' is not one of"),
    ],
)
def test_bad_fitting_options_are_refused(spectra, grids, tmp_path, option, value, message):
    result = runner.invoke(
        app, ["analyse", "grid", str(spectra[0]), "--grid", str(grids["fits"]), option, value,
              "-o", str(tmp_path / "out")], env={"COLUMNS": "300"},
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split())


def test_a_large_grid_is_searched_through_a_coarse_lattice(
    spectra, fits_answers, grids, tmp_path, monkeypatch
):
    """A grid above FULL_SEARCH_NODES is compared with a coarse lattice of its nodes, then
    refined from several starts over the full grid: here the test grid made "large" finds the
    same minimum as the full search."""
    from astra_cli.science import gridfit

    monkeypatch.setattr(gridfit, "FULL_SEARCH_NODES", 100)
    monkeypatch.setattr(gridfit, "COARSE_NODES", 40)
    out = tmp_path / "coarse"
    summary = astra_cli.run(
        "grid", spectra, output_dir=out, jobs=1, backend="sequential", grid=grids["fits"]
    )
    assert summary.ok == len(spectra)
    with ResultsStore(out) as store:
        answers = {Path(r.input_path).name: r.result for r in store.records()}
    for name, expected in fits_answers.items():
        assert answers[name]["teff"] == pytest.approx(
            expected["teff"], abs=0.05 * expected["e_teff"]
        )
    prepared, _ = load_prepared(grids["fits"])
    assert prepared.search_nodes is not None and len(prepared.search_nodes) <= 40
    assert "coarse lattice" in prepared.describe_search()


def test_a_grid_too_big_to_keep_its_searched_nodes_gives_the_same_answers(
    spectra, grids, tmp_path, monkeypatch
):
    """The searched nodes are kept in memory up to SEARCH_MEMORY_BYTES (so that a small chunk
    does not pay for making them again); a grid whose nodes would take more is searched block
    by block at each search, with the same answers."""
    from astra_cli.science import gridfit

    def fitted(out):
        summary = astra_cli.run(
            "grid", spectra, output_dir=out, jobs=1, backend="sequential", grid=grids["fits"]
        )
        assert summary.ok == len(spectra)
        with ResultsStore(out) as store:
            return {r.input_path: r.result for r in store.records()}

    kept = fitted(tmp_path / "kept")
    assert load_prepared(grids["fits"])[0].search_block is not None
    monkeypatch.setattr(gridfit, "SEARCH_MEMORY_BYTES", 0)
    assert load_prepared(grids["fits"])[0].search_block is None
    blocked = fitted(tmp_path / "blocked")
    assert blocked.keys() == kept.keys()
    for path, result in kept.items():
        assert blocked[path]["teff"] == pytest.approx(result["teff"], rel=1e-9)
        assert blocked[path]["logg"] == pytest.approx(result["logg"], rel=1e-9)


def load_prepared(path):
    from astra_cli.methods.grid import Grid

    return Grid(grid=path).load_model()


def test_the_plan_says_how_the_grid_will_be_searched(spectra, grids, tmp_path):
    result = runner.invoke(
        app,
        [
            "plan",
            "grid",
            str(spectra[0]),
            "--grid",
            str(grids["fits"]),
            "-o",
            str(tmp_path),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    (group,) = json.loads(result.stdout)["groups"]
    assert group["notes"] == ["search: chi-square against all 175 nodes, then refinement"]


def test_the_worker_keeps_no_copy_of_a_mapped_grid(grids):
    """Nothing the size of the grid is converted or copied: the map is all there is."""
    prepared, _ = load_prepared(grids["binary"])
    grid_bytes = prepared.grid.data.values.nbytes
    assert isinstance(prepared.grid.data.values, np.memmap)
    held = [v for v in vars(prepared).values() if isinstance(v, np.ndarray)]
    held += [v for v in vars(prepared.grid).values() if isinstance(v, np.ndarray)]
    assert all(array.nbytes < grid_bytes / 10 for array in held)
