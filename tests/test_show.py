"""`astra show`: every stored run of one observation, found by its file, key or APOGEE_ID."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from astra_cli.cli.app import app

runner = CliRunner()


def show(fitted_store, *args):
    return runner.invoke(app, ["show", *args, "--output-dir", str(fitted_store)])


def test_every_run_of_an_observation_in_full(demo_files, fitted_store):
    star = demo_files.stars[0]
    result = show(fitted_store, star["obj"], "--json")
    assert result.exit_code == 0, result.output
    runs = {run["method"]: run for run in json.loads(result.stdout)}
    assert set(runs) == {"grid", "snr"}
    grid = runs["grid"]
    assert grid["status"] == "ok" and grid["identifiers"]["obj"] == star["obj"]
    assert grid["result"]["teff"] == pytest.approx(star["teff"], abs=300)
    assert grid["options"]["grid"] == str(demo_files.grid_fits)
    assert grid["input_state"] and grid["model_state"]
    assert Path(grid["saved_spectrum"]).is_file()
    by_file = json.loads(show(fitted_store, grid["input_path"], "--json").stdout)
    assert {run["method"] for run in by_file} == {"grid", "snr"}
    by_key = json.loads(show(fitted_store, grid["observation"], "--json").stdout)
    assert len(by_key) == 2


def test_the_terminal_form_says_what_a_run_was_computed_from(demo_files, fitted_store):
    result = show(fitted_store, demo_files.stars[0]["obj"])
    assert result.exit_code == 0
    assert "grid (group " in result.stdout and "): ok" in result.stdout
    assert "computed from: input " in result.stdout and "saved spectrum: " in result.stdout


def test_an_observation_the_store_lacks_is_an_error(fitted_store):
    result = show(fitted_store, "2M99999999+9999999")
    assert result.exit_code == 2
    assert "no runs of '2M99999999+9999999'" in result.output
