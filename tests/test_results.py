"""`astra results`: the store exported as one table, read back with astropy."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from typer.testing import CliRunner

import astra_cli
from astra_cli.cli.app import app
from astra_cli.io.store import ResultsStore

runner = CliRunner()


@pytest.fixture
def store_dir(with_plugin, real_apvisits, tmp_path):
    """Two groups of `counting` on the real files, one missing file (a failed run), and snr."""
    out = tmp_path / "out"
    missing = tmp_path / "apVisit-missing.fits"
    astra_cli.run(
        "counting", [*real_apvisits, missing], output_dir=out, backend="sequential", order=[5, 10]
    )
    astra_cli.run("snr", real_apvisits, output_dir=out, backend="sequential")
    return out


def export(store_dir, *args):
    return runner.invoke(app, ["results", *args, "--output-dir", str(store_dir)])


def by_observation(table, key="observation"):
    return {(row[key], int(row["order"]) if "order" in row.colnames else 0): row for row in table}


def test_fits_export_reads_back_as_the_store_holds(store_dir, tmp_path):
    target = tmp_path / "counting.fits"
    result = export(store_dir, "counting", "-o", str(target))

    assert result.exit_code == 0, result.output
    table = Table.read(target)
    assert "OBSERVATION" in table.colnames and "A_TIMES_ORDER" in table.colnames
    with ResultsStore(store_dir) as store:
        records = list(store.records("counting", "ok"))
    assert len(table) == len(records) == 4
    rows = {(row["OBSERVATION"], int(row["ORDER"])): row for row in table}
    for record in records:
        row = rows[(record.observation, record.options["order"])]
        assert row["MEAN_FLUX"] == pytest.approx(record.result["mean_flux"], rel=1e-12)
        assert row["N_PIXELS"] == record.result["n_pixels"]
        assert row["INPUT_PATH"] == record.input_path
    header = fits.getheader(target, 0)
    assert header["ASTRAVER"] == astra_cli.__version__ and header["METHOD"] == "counting"
    assert header["NGROUPS"] == 2
    assert sum('"order":' in line for line in header["HISTORY"]) == 2


def test_ecsv_export_round_trips_types_and_metadata(store_dir, tmp_path):
    target = tmp_path / "snr.ecsv"
    assert export(store_dir, "snr", "-o", str(target)).exit_code == 0

    table = Table.read(target)
    with ResultsStore(store_dir) as store:
        expected = {r.observation: r.result for r in store.records("snr")}
    assert table["n_pixels"].dtype.kind == "i" and table["snr"].dtype.kind == "f"
    for row in table:
        assert row["snr"] == expected[row["observation"]]["snr"]
    assert table.meta["method"] == "snr" and table.meta["astra_version"] == astra_cli.__version__


def test_failed_runs_only_and_csv_on_stdout(store_dir):
    result = export(store_dir, "counting", "--status", "failed", "--format", "csv", "-o", "-")

    assert result.exit_code == 0, result.output
    table = Table.read(result.stdout, format="ascii.csv")
    assert len(table) == 2
    assert set(table["status"]) == {"failed"}
    assert all("missing input" in error for error in table["error"])


def test_a_path_beyond_ascii_is_escaped_in_fits_and_kept_in_csv(real_apvisits, tmp_path):
    folder = tmp_path / "spectres-reçus"
    folder.mkdir()
    spectrum = folder / real_apvisits[0].name
    shutil.copy(real_apvisits[0], spectrum)
    out = tmp_path / "out"
    astra_cli.run("snr", [spectrum], output_dir=out, backend="sequential")

    fits_file, csv_file = tmp_path / "snr.fits", tmp_path / "snr.csv"
    written = export(out, "snr", "-o", str(fits_file))
    assert written.exit_code == 0, written.output
    assert "FITS holds text as ASCII" in written.stderr
    assert "INPUT_PATH (1), OBSERVATION (1)" in written.stderr
    assert Table.read(fits_file)["INPUT_PATH"][0] == str(spectrum).replace("ç", "\\xe7")
    assert export(out, "snr", "-o", str(csv_file)).exit_code == 0
    assert Table.read(csv_file, format="ascii.csv")["input_path"][0] == str(spectrum)


def test_one_group_and_latest_per_observation(store_dir, tmp_path):
    plan = runner.invoke(
        app, ["status", "counting", "--order", "10", "--output-dir", str(store_dir), "--json",
              *[str(p) for p in _inputs(store_dir)]],
    )  # fmt: skip
    group = json.loads(plan.stdout)["groups"][0]["key"]

    one = tmp_path / "one.ecsv"
    assert export(store_dir, "counting", "--group", group, "-o", str(one)).exit_code == 0
    assert set(Table.read(one)["order"]) == {10}

    latest = tmp_path / "latest.ecsv"
    assert (
        export(store_dir, "counting", "--latest-per-observation", "-o", str(latest)).exit_code == 0
    )
    table = Table.read(latest)
    assert len(table) == len(set(table["observation"])) == 2


def test_masked_where_a_run_has_no_value(store_dir, tmp_path):
    target = tmp_path / "all.fits"
    assert export(store_dir, "counting", "--status", "all", "-o", str(target)).exit_code == 0

    table = Table.read(target)
    failed = table["STATUS"] == "failed"
    assert failed.sum() == 2
    assert np.all(table["MEAN_FLUX"].mask[failed]) and not np.any(table["MEAN_FLUX"].mask[~failed])


def test_unknown_method_and_missing_store_are_usage_errors(store_dir, tmp_path):
    typo = export(store_dir, "countng")
    assert typo.exit_code == 2 and "did you mean 'counting'" in typo.stderr

    nowhere = runner.invoke(app, ["results", "snr", "--output-dir", str(tmp_path / "none")])
    assert nowhere.exit_code == 2 and "no results store" in nowhere.stderr


def _inputs(store_dir):
    with ResultsStore(store_dir) as store:
        return sorted({r.input_path for r in store.records("counting")})


def test_unflagged_leaves_out_the_runs_a_method_flagged(demo_files, real_apvisits, tmp_path):
    """The demo's made-up templates match no real star: rv flags the real visits (4, low
    peak) and not the demo's own."""
    from astra_cli.demo.report import VISIT_KEYS
    from astra_cli.io.identifiers import IdentifierResolver

    resolver = IdentifierResolver(demo_files.data_root)
    demo_visits = [
        resolver.resolve({k: row[k] for k in VISIT_KEYS}).path for row in demo_files.visits[:3]
    ]
    out = tmp_path / "out"
    observations = [*demo_visits, *real_apvisits]
    astra_cli.run("rv", observations, output_dir=out, jobs=1, templates=demo_files.templates)

    everything = tmp_path / "all.ecsv"
    assert export(out, "rv", "-o", str(everything)).exit_code == 0
    assert sorted(Table.read(everything)["flags"] > 0) == [False] * 3 + [True] * 2
    clean = tmp_path / "clean.ecsv"
    result = export(out, "rv", "--unflagged", "-o", str(clean))
    assert result.exit_code == 0, result.output
    table = Table.read(clean)
    assert sorted(table["input_path"]) == sorted(demo_visits)
    assert "4 the peak is below 0.1" in table["flags"].description


def test_unflagged_on_results_without_flags_is_a_usage_error(store_dir):
    result = export(store_dir, "snr", "--unflagged")
    assert result.exit_code == 2
    assert "--unflagged: the results of snr have no flags column" in result.output


# --- formats by name, units, allStar names, the Python API -----------------------------------

READERS = {"fits": "fits", "ecsv": "ascii.ecsv", "csv": "ascii.csv", "tsv": "ascii.tab",
           "vot": "votable"}  # fmt: skip


@pytest.fixture(scope="module")
def grid_store(demo_files, tmp_path_factory):
    """`grid` on the demo stars named by identifier, so that the table has APOGEE_ID."""
    out = tmp_path_factory.mktemp("grid-store")
    result = runner.invoke(
        app, ["analyse", "grid", "--from-file", str(demo_files.stars_manifest), "--data-root",
              str(demo_files.data_root), "--grid", str(demo_files.grid_fits), "-o", str(out),
              "-j", "1", "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("ending", list(READERS))
def test_the_format_follows_the_file_name_and_reads_back_with_astropy(grid_store, tmp_path, ending):
    target = tmp_path / f"grid.{ending}"
    result = export(grid_store, "grid", "-o", str(target))
    assert result.exit_code == 0, result.output
    table = Table.read(target, format=READERS[ending])
    assert len(table) == 16
    teff = "TEFF" if ending == "fits" else "teff"
    with ResultsStore(grid_store) as store:
        stored = sorted(record.result["teff"] for record in store.records("grid"))
    assert sorted(np.asarray(table[teff], dtype=float)) == pytest.approx(stored, rel=1e-9)


def test_fits_has_allstar_names_and_units(grid_store, tmp_path):
    target = tmp_path / "grid.fits"
    assert export(grid_store, "grid", "-o", str(target)).exit_code == 0
    table = Table.read(target)
    assert "APOGEE_ID" in table.colnames and "OBJ" not in table.colnames
    assert all(name.startswith("2M") for name in table["APOGEE_ID"])
    assert {"TELESCOPE", "FIELD", "TEFF", "E_TEFF", "LOGG", "M_H", "FLAGS"} <= set(table.colnames)
    header = fits.getheader(target, "RESULTS")
    units = {header[f"TTYPE{i}"]: header.get(f"TUNIT{i}") for i in range(1, header["TFIELDS"] + 1)}
    assert units["TEFF"] == units["E_TEFF"] == "K"
    assert units["DURATION_S"] == "s"
    assert units["LOGG"] is None, "FITS has no unit for a logarithm"


def test_an_option_naming_upstream_runs_is_written_as_the_json_the_store_holds(
    grid_store, tmp_path
):
    target = tmp_path / "grid.csv"
    assert export(grid_store, "grid", "-o", str(target)).exit_code == 0
    with ResultsStore(grid_store) as store:
        stored = {record.observation: record.options for record in store.records("grid")}
    table = Table.read(target, format="ascii.csv")
    for row in table:
        upstream = stored[row["observation"]]["upstream"]
        assert isinstance(upstream, dict) and upstream["v_rad"].startswith("rv:")
        assert json.loads(row["upstream"]) == upstream
    written = f"upstream={json.dumps(upstream, separators=(',', ':'))}"
    overview = runner.invoke(app, ["status", "--output-dir", str(grid_store)])
    shown = runner.invoke(app, ["show", table["obj"][0], "--output-dir", str(grid_store)])
    assert written in overview.stdout and written in shown.stdout, "as astra status, astra show"


def test_the_python_api_returns_the_table(grid_store):
    table = astra_cli.results("grid", grid_store, unflagged=False)
    assert len(table) == 16 and str(table["teff"].unit) == "K"
    assert table["teff"].description == "grid label 'teff'"
    with pytest.raises(astra_cli.errors.UsageError, match="no runs of 'nosuch'"):
        astra_cli.results("nosuch", grid_store)


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("grid.txt", "the name says no table format astra writes"),
        (".", "is a directory; --out names the table file (the store is --output-dir)"),
    ],
)
def test_a_table_name_that_says_no_format_or_a_directory_is_refused(
    grid_store, tmp_path, out, message
):
    result = export(grid_store, "grid", "-o", str(tmp_path / out))
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert list(tmp_path.iterdir()) == [] or out == "."


def test_parquet_needs_pyarrow_or_round_trips(grid_store, tmp_path):
    target = tmp_path / "grid.parquet"
    result = export(grid_store, "grid", "-o", str(target))
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        assert result.exit_code == 2 and "writing Parquet needs pyarrow" in result.output
        return
    assert result.exit_code == 0, result.output
    assert len(Table.read(target)) == 16


def test_a_group_the_store_does_not_hold_is_refused(grid_store, tmp_path):
    result = export(grid_store, "grid", "--group", "nosuch", "-o", str(tmp_path / "t.fits"))
    assert result.exit_code == 2
    assert "grid has no group 'nosuch'" in result.output and "its groups:" in result.output
    assert not (tmp_path / "t.fits").exists()
