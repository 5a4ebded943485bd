"""`astra plan` and `astra status` tables at 80 columns: groups whose options differ only at
the end of a long path are told apart (paths shortened from the left), what every group shares
and the paths in full are said under the table, and no line outside the table is wrapped."""

from __future__ import annotations

import pytest
from fits_factory import write_apstars
from typer.testing import CliRunner

from astra_cli.cli.app import app
from astra_cli.engine.labels import group_labels, shortened_paths, tell_apart

runner = CliRunner()

LONG = "a-directory-of-models-with-a-name-long-enough-to-fill-a-table-cell-on-its-own"


@pytest.fixture
def two_models(tmp_path):
    directory = tmp_path / LONG / "models"
    directory.mkdir(parents=True)
    models = [directory / "model-a.txt", directory / "model-b.txt"]
    for model in models:
        model.write_text(model.stem)
    return models


def at_80_columns(*args):
    return runner.invoke(app, [str(arg) for arg in args], env={"COLUMNS": "80"})


def table_rows(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line[:16].strip() and "─" not in line]


@pytest.mark.parametrize("command", ["plan", "status"])
def test_groups_differing_only_in_a_file_name_are_told_apart_at_80_columns(
    with_plugin, two_models, tmp_path, command
):
    spectra = write_apstars(tmp_path / "data", 2)
    result = at_80_columns(
        command, "text-model", *spectra, "--model", two_models[0], "--model", two_models[1],
        "--delay", "0", "-o", tmp_path / "out",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    table = lines[1 : lines.index(next(line for line in lines if line.startswith("…/")))]
    assert all(len(line.rstrip()) <= 80 for line in table), result.stdout
    cells = " ".join(table)
    assert "model=…/model-a.txt" in cells and "model=…/model-b.txt" in cells
    assert f"…/model-a.txt is {two_models[0]}" in lines
    assert f"…/model-b.txt is {two_models[1]}" in lines


def test_status_without_a_method_prints_each_group_whole(with_plugin, two_models, tmp_path):
    spectra = write_apstars(tmp_path / "data", 1)
    ran = at_80_columns(
        "analyse", "text-model", *spectra, "--model", two_models[0], "--model", two_models[1],
        "-o", tmp_path / "out", "--jobs", "1",
    )  # fmt: skip
    assert ran.exit_code == 0, ran.output

    result = at_80_columns("status", "-o", tmp_path / "out")

    assert result.exit_code == 0, result.output
    whole = [line for line in result.stdout.splitlines() if f"model={two_models[0]}" in line]
    assert len(whole) == 1 and len(whole[0]) > 80  # one line, not wrapped at 80


def test_a_path_is_shortened_to_the_tail_that_tells_it_apart():
    assert shortened_paths(["/d/x/grid.fits", "/d/y/grid.fits", "/d/x/grid.ferre"]) == {
        "/d/x/grid.fits": "…/x/grid.fits",
        "/d/y/grid.fits": "…/y/grid.fits",
        "/d/x/grid.ferre": "…/grid.ferre",
    }
    # A tail as long as the path is the path.
    assert shortened_paths(["/x/grid.fits", "/y/x/grid.fits"]) == {
        "/x/grid.fits": "/x/grid.fits",
        "/y/x/grid.fits": "/y/x/grid.fits",
    }


def test_options_split_into_what_differs_and_what_every_group_shares():
    apart = tell_apart(
        [
            {"grid": "/m/a.fits", "order": 4, "fix": ""},
            {"grid": "/m/b.fits", "order": 4, "fix": ""},
            {"grid": "/m/b.fits", "order": 3, "fix": ""},
        ]
    )

    assert apart.cell(0) == "grid=…/a.fits order=4"
    assert apart.cell(2, "\n") == "grid=…/b.fits\norder=3"
    assert apart.common == {"fix": ""}
    assert apart.paths == {"…/a.fits": "/m/a.fits", "…/b.fits": "/m/b.fits"}


def test_a_lone_group_is_labelled_by_its_key():
    assert group_labels(["k"], [{"grid": "/m/a.fits"}]) == {"k": "k"}
    assert group_labels(["k", "l"], [{"grid": "/m/a.fits"}, {"grid": "/m/b.fits"}]) == {
        "k": "1/2 grid=…/a.fits",
        "l": "2/2 grid=…/b.fits",
    }
