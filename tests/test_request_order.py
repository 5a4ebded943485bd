"""Results come back in the order they were asked for: the command line's observations, then
every manifest row in turn, whatever order parallel workers finished them in."""

from __future__ import annotations

import csv
import random
import sqlite3

from astropy.table import Table
from typer.testing import CliRunner

import astra_cli
from astra_cli.cli.app import app

runner = CliRunner()


def shuffled_manifest(demo_files, tmp_path, seed: int):
    """The demo's stars manifest with its rows in a shuffled order; the APOGEE_IDs in it."""
    with open(demo_files.stars_manifest, newline="") as handle:
        rows = list(csv.DictReader(handle))
    random.Random(seed).shuffle(rows)
    target = tmp_path / f"stars-{seed}.csv"
    with open(target, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return target, [row["obj"] for row in rows]


def test_rows_follow_the_request_whatever_order_the_workers_finished_in(demo_files, tmp_path):
    manifest, objects = shuffled_manifest(demo_files, tmp_path, seed=7)
    first = next(demo_files.data_root.rglob("apStar-*.fits"))
    out = tmp_path / "out"
    analysed = runner.invoke(
        app,
        ["analyse", "snr", str(first), "--from-file", str(manifest), "--data-root",
         str(demo_files.data_root), "-o", str(out), "--jobs", "2", "--chunk-size", "2",
         "--quiet"],
    )  # fmt: skip
    assert analysed.exit_code == 0, analysed.output

    exported = runner.invoke(
        app, ["results", "snr", "--output-dir", str(out), "-o", str(tmp_path / "snr.fits")]
    )
    assert exported.exit_code == 0, exported.output
    table = Table.read(tmp_path / "snr.fits")
    assert table["INPUT_PATH"][0] == str(first.resolve()), "the command line's file comes first"
    assert list(table["APOGEE_ID"][1:]) == objects
    with sqlite3.connect(out / "astra.sqlite") as connection:
        positions = sorted(p for (p,) in connection.execute("SELECT request_position FROM runs"))
    assert positions == list(range(len(objects) + 1))


def test_a_later_request_comes_after_and_in_its_own_order(demo_files, tmp_path):
    """Each invocation's runs in the order it named them, invocations in the order they ran:
    the API's table of a store filled twice, the second time in another order, with --force."""
    out = tmp_path / "out"
    common = ["--data-root", str(demo_files.data_root), "-o", str(out), "--quiet", "-j", "2"]
    once, _ = shuffled_manifest(demo_files, tmp_path, seed=1)
    assert runner.invoke(app, ["analyse", "snr", "--from-file", str(once), *common]).exit_code == 0
    again, objects = shuffled_manifest(demo_files, tmp_path, seed=2)
    rerun = ["analyse", "snr", "--from-file", str(again), "--force", "--chunk-size", "3", *common]
    assert runner.invoke(app, rerun).exit_code == 0

    table = astra_cli.results("snr", out)
    assert list(table["obj"]) == objects
