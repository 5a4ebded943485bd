"""`astra train cannon` says what it is doing while it trains: the spectra read, counted, and the
passes over the pixels, counted; a bar per stage on a terminal, a line per stage in a log."""

from __future__ import annotations

import io

from rich.console import Console
from typer.testing import CliRunner

from astra_cli.cli.app import app
from astra_cli.cli.stages import StageBar, StageLines


def test_training_says_each_stage_in_a_log(demo_files, tmp_path):
    result = CliRunner().invoke(
        app, ["train", "cannon", "--from-file", str(demo_files.training_manifest),
              "--labels", "teff,logg,m_h", "-o", str(tmp_path / "cannon.fits"),
              "--data-root", str(demo_files.data_root)],
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    stages = [
        line.split("astra: ", 1)[1] for line in result.stderr.splitlines() if "] astra: " in line
    ]
    assert stages[0] == "reading 200 spectra"
    assert stages[1] == "normalising"
    assert stages[2].startswith("fitting ") and "pixels" in stages[2]
    assert "trained a Cannon model of teff, logg, m_h on 200 spectra" in result.stderr


def test_the_bar_counts_each_stage_and_leaves_a_line_for_it():
    console = Console(width=80, record=True, file=io.StringIO(), force_terminal=True)
    with StageBar(console) as progress:
        for done in range(4):
            progress("reading 3 spectra", done, 3)
        progress("fitting 10 pixels", 0, 32)
        progress("fitting 10 pixels", 5, 32)
        shown = console.export_text(clear=False)

    left = console.export_text()
    assert "reading 3 spectra: done in" in left
    assert "fitting 10 pixels: done in" in left
    assert "fitting 10 pixels" in shown and "/32" in shown  # a count of the stage's steps


def test_lines_say_each_stage_once():
    stream = io.StringIO()
    with StageLines(stream) as progress:
        for done in range(3):
            progress("reading 2 spectra", done, 2)
        progress("normalising", 1, 1)

    said = [line.split("astra: ", 1)[1] for line in stream.getvalue().splitlines()]
    assert said == ["reading 2 spectra", "normalising"]
