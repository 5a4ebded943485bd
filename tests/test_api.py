"""The Python API runs the same planner, executor and store as the CLI."""

from __future__ import annotations

import pytest
from fits_factory import write_apstar

import astra_cli
from astra_cli.errors import UsageError
from astra_cli.io.store import ResultsStore


def test_run_analyses_paths_and_stores_results(real_apvisits, tmp_path):
    summary = astra_cli.run("snr", real_apvisits, output_dir=tmp_path, backend="sequential")

    assert (summary.ok, summary.failed, summary.exit_code) == (2, 0, 0)
    with ResultsStore(tmp_path) as store:
        assert {r.input_path for r in store.records()} == {str(p) for p in real_apvisits}


def test_run_sweeps_list_values(with_plugin, real_apvisits, tmp_path):
    summary = astra_cli.run(
        "counting", real_apvisits, output_dir=tmp_path, backend="sequential", order=[5, 10], a=2
    )

    assert (summary.groups, summary.ran) == (2, 4)


def test_run_resolves_identifier_mappings(real_apvisits, tmp_path):
    root = tmp_path / "sas"
    star_dir = root / "dr17/apogee/spectro/redux/dr17/stars/apo25m/218-04"
    star_dir.mkdir(parents=True)
    write_apstar(star_dir / "apStar-dr17-2M06440890-0610126.fits")
    identifier = dict(
        release="dr17", apred="dr17", telescope="apo25m", field="218-04", obj="2M06440890-0610126"
    )

    summary = astra_cli.run(
        "snr", [identifier], output_dir=tmp_path / "out", data_root=root, backend="sequential"
    )

    assert summary.ok == 1


def test_run_with_a_bad_option_raises_before_anything_runs(real_apvisits, tmp_path):
    """In the words of the Python API: the option's name, not its command-line flag."""
    with pytest.raises(UsageError, match="no option 'ordr'"):
        astra_cli.run("snr", real_apvisits, output_dir=tmp_path / "out", ordr=3)
    assert not (tmp_path / "out").exists()


def test_api_errors_name_options_and_arguments_the_python_way(real_apvisits, tmp_path):
    with pytest.raises(UsageError, match=r"method 'grid' needs option 'grid' \(Model grid"):
        astra_cli.run("grid", real_apvisits, output_dir=tmp_path / "out")
    with pytest.raises(UsageError, match=r"option 'continuum_order': 'x' is not a valid int"):
        astra_cli.run("grid", real_apvisits, output_dir=tmp_path, grid="g", continuum_order="x")
    with pytest.raises(UsageError, match=r"grid needs .*g\.fits \(given as 'grid'\)"):
        astra_cli.run("grid", real_apvisits, output_dir=tmp_path / "out", grid=tmp_path / "g.fits")
    with pytest.raises(UsageError, match="no observations given: pass paths"):
        astra_cli.run("snr", [], output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_public_names():
    assert {"Method", "Param", "Spectrum", "run"} <= set(astra_cli.__all__)
    assert astra_cli.Spectrum.__name__ == "Spectrum"
