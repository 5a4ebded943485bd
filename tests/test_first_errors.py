"""The errors a new user meets first: each exits 2 before any work, says what to do next, and
names the closest name for a typo."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from astra_cli.cli.app import app

runner = CliRunner()


def fails(*args: str) -> str:
    """Run astra with `args`; it must exit 2. Returns stderr with line breaks and borders gone."""
    result = runner.invoke(app, [str(arg) for arg in args], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    return " ".join(result.stderr.replace("│", " ").split())


@pytest.mark.parametrize("command", ["analyse", "plan", "status"])
def test_unknown_method_names_the_closest_and_the_installed_ones(command, real_apvisits):
    message = fails(command, "gird", real_apvisits[0])
    assert "No such method 'gird' (did you mean 'grid'?)" in message
    assert "Installed methods: cannon, grid, payne, rv, snr" in message
    assert "`astra methods`" in message


def test_unknown_command_names_the_closest():
    assert "Did you mean 'analyse'?" in fails("anlyse", "snr")


def test_unknown_method_option_names_the_closest(real_apvisits, tmp_path):
    message = fails("analyse", "grid", "--continum-order", "3", real_apvisits[0], "-o", tmp_path)
    assert "No such option: --continum-order" in message
    assert "--continuum-order" in message.split("No such option")[1]
    assert "astra analyse grid --help" in message


def test_bad_choice_lists_the_choices(real_apvisits, tmp_path):
    message = fails("analyse", "snr", "--backend", "lokky", real_apvisits[0], "-o", tmp_path)
    assert "'lokky' is not one of loky, threading, sequential, dask" in message


def test_missing_model_file_names_it_and_its_option(real_apvisits, tmp_path):
    missing = tmp_path / "grid.fits"
    message = fails("analyse", "grid", "--grid", missing, real_apvisits[0], "-o", tmp_path / "o")
    assert f"grid needs {missing} (given as --grid), which does not exist" in message
    assert "check the path" in message and "astra analyse grid --help" in message
    assert not (tmp_path / "o").exists()


def test_model_option_not_given_names_the_option(real_apvisits, tmp_path):
    message = fails("analyse", "cannon", real_apvisits[0], "-o", tmp_path)
    assert "method 'cannon' needs --model FILE (Cannon model (FITS)" in message


@pytest.mark.parametrize("command", ["analyse", "plan", "status"])
def test_no_observations_says_how_to_name_them(command, tmp_path):
    message = fails(command, "snr", "-o", tmp_path)
    assert "no observations given: name files, or use --from-file FILE, --obs KEY=VAL" in message


def test_output_dir_that_cannot_be_written_says_to_choose_another(real_apvisits, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    message = fails("analyse", "snr", real_apvisits[0], "-o", blocker / "out")
    assert f"cannot open the results store {blocker / 'out'}" in message
    assert "choose a writable directory with --output-dir" in message


def test_results_of_an_unknown_method_names_the_closest(real_apvisits, tmp_path):
    done = runner.invoke(app, ["analyse", "snr", str(real_apvisits[0]), "-o", str(tmp_path)])
    assert done.exit_code == 0, done.output
    message = fails("results", "snt", "--output-dir", tmp_path)
    assert "no runs of 'snt'" in message and "(did you mean 'snr'?)" in message


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["analyse", "snr", "--jobs", "x", "a.fits"],
         "astra: error: --jobs: 'x' is not a whole number (see astra analyse snr --help)"),
        (["analyse", "snr", "--dask-timeout", "soon", "a.fits"],
         "astra: error: --dask-timeout: 'soon' is not a number (see astra analyse snr --help)"),
        (["analyse", "snr", "--chunk-size", "0", "a.fits"],
         "astra: error: --chunk-size must be at least 1, not 0"),
        (["completion", "powershell"],
         "astra: error: SHELL: 'powershell' is not one of bash, zsh, fish "
         "(see astra completion --help)"),
        (["results", "grid", "--status", "bogus"],
         "astra: error: --status: 'bogus' is not one of ok, failed, all "
         "(see astra results --help)"),
        (["analyse", "grid", "--grid", "g.fits", "--interpolation", "spline", "a.fits"],
         "astra: error: --interpolation: 'spline' is not one of linear, cubic "
         "(see astra analyse grid --help)"),
        (["demo", "--stars", "0"], "astra: error: --stars must be at least 1, not 0"),
        (["train", "cannon", "--from-file", "t.csv", "--labels", "teff", "-o", "c.fits",
          "--continuum-order", "-1"], "astra: error: --continuum-order must be 0 to 12, not -1"),
        (["results"], "astra: error: Missing argument 'METHOD' (see astra results --help)"),
    ],
)  # fmt: skip
def test_a_bad_value_is_one_line_in_plain_words(args, said, tmp_path):
    result = runner.invoke(app, args, env={"COLUMNS": "80"})
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [said]
