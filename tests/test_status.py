"""`astra status METHOD ...`: per group, how many of the requested runs are done, failed and
pending, read from the store in one query and never written."""

from __future__ import annotations

import json
import os
import shutil

from typer.testing import CliRunner

from astra_cli.cli.app import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(arg) for arg in args])


def test_status_counts_done_failed_and_pending_per_group(with_plugin, real_apvisits, tmp_path):
    missing = tmp_path / "apVisit-missing.fits"
    manifest = tmp_path / "tonight.csv"
    rows = [*(f"{path},{order}" for path in real_apvisits for order in (5, 10)), f"{missing},5"]
    manifest.write_text("path,order\n" + "\n".join(rows) + "\n")
    ran = invoke(
        "analyse", "counting", real_apvisits[0], missing, "--order", "5",
        "--backend", "sequential", "-o", tmp_path / "out",
    )  # fmt: skip
    assert ran.exit_code == 1, ran.output  # the missing file failed

    result = invoke("status", "counting", "--from-file", manifest, "-o", tmp_path / "out", "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    by_order = {group["options"]["order"]: group for group in report["groups"]}
    counts = {
        order: (g["requested"], g["done"], g["stale"], g["failed"], g["pending"])
        for order, g in by_order.items()
    }
    # A missing input is not the run's fault: it is pending, to be tried again.
    assert counts == {5: (3, 1, 0, 0, 2), 10: (2, 0, 0, 0, 2)}
    totals = ("requested", "done", "stale", "failed", "pending")
    assert tuple(report[name] for name in totals) == (5, 1, 0, 0, 4)


def test_status_table_on_stdout(real_apvisits, tmp_path):
    assert (
        invoke("analyse", "snr", *real_apvisits, "-o", tmp_path / "out", "-j", "1").exit_code == 0
    )
    manifest = tmp_path / "list.txt"
    manifest.write_text(f"{real_apvisits[0]}\n{real_apvisits[1]}\n{tmp_path / 'new.fits'}\n")

    result = invoke("status", "snr", "--from-file", manifest, "-o", tmp_path / "out")

    assert result.exit_code == 0, result.output
    assert "snr: 3 requested in 1 group(s): 2 done, 0 stale, 0 failed, 1 pending" in result.stdout


def test_status_does_not_create_a_store(tmp_path):
    result = invoke("status", "snr", tmp_path / "a.fits", "-o", tmp_path / "out", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["pending"] == 1
    assert not (tmp_path / "out").exists()


def test_status_with_skipped_bad_rows_exits_1(tmp_path):
    manifest = tmp_path / "list.txt"
    manifest.write_text("a.fits\nrelease=dr17,obj\n")

    refused = invoke("status", "snr", "--from-file", manifest, "-o", tmp_path / "out")
    skipped = invoke(
        "status",
        "snr",
        "--from-file",
        manifest,
        "--skip-bad-rows",
        "-o",
        tmp_path / "out",
        "--json",
    )

    assert refused.exit_code == 2
    assert f"{manifest}:2:" in refused.stderr
    assert skipped.exit_code == 1
    assert json.loads(skipped.stdout)["bad_rows"] == 1
    assert f"{manifest}:2:" in skipped.stderr


def test_a_model_file_that_is_not_there_is_said(demo_files, tmp_path):
    missing = tmp_path / "cannon-gone.fits"
    star = next(demo_files.data_root.rglob("apStar-*.fits"))
    result = runner.invoke(
        app, ["status", "cannon", str(star), "--model", str(missing), "-o", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    assert f"{missing} does not exist; `astra analyse` would refuse it" in result.stderr


def test_a_method_without_a_model_reports_no_model_loads(real_apvisits, tmp_path):
    result = invoke("analyse", "snr", real_apvisits[0], "-o", tmp_path / "out", "-j", "1")
    assert result.exit_code == 0
    assert "model load" not in result.stderr
    assert "snr: 1 requested" in result.stderr


def test_status_without_a_request_sums_up_the_store(with_plugin, real_apvisits, tmp_path):
    out = tmp_path / "out"
    missing = tmp_path / "apVisit-missing.fits"
    real_apvisits = [shutil.copy(path, tmp_path) for path in real_apvisits]  # touched below
    for order in ("5", "10"):
        invoke("analyse", "counting", *real_apvisits, missing, "--order", order,
               "--backend", "sequential", "-o", out)  # fmt: skip
    assert invoke("analyse", "snr", *real_apvisits, "-o", out, "-j", "1").exit_code == 0
    touched = os.stat(real_apvisits[0])
    os.utime(real_apvisits[0], ns=(touched.st_atime_ns, touched.st_mtime_ns + 10**9))
    result = invoke("status", "--output-dir", out, "--json")
    table = invoke("status", "--output-dir", out)

    assert result.exit_code == 0, result.output
    groups = {
        (g["method"], g["options"].get("order")): g for g in json.loads(result.stdout)["groups"]
    }
    assert set(groups) == {("counting", 5), ("counting", 10), ("snr", None)}
    counts = [(g["ok"], g["failed"], g["stale"], g["flagged"]) for g in groups.values()]
    assert counts == [(2, 1, 1, 0), (2, 1, 1, 0), (2, 0, 1, 0)]
    assert all(g["last_run"] for g in groups.values())
    assert "counting: 2 group(s) in" in table.stdout and "order=10" in table.stdout


def test_status_without_a_request_needs_a_store(tmp_path):
    result = invoke("status", "--output-dir", tmp_path / "nowhere")
    assert result.exit_code == 2
    assert "no results store in" in result.output


def test_the_store_given_before_the_method_is_refused_not_ignored(real_apvisits, tmp_path):
    # `astra status -o DIR snr ...` would otherwise count the runs of ./astra-output.
    result = invoke("status", "-o", tmp_path, "snr", real_apvisits[0])

    assert result.exit_code == 2, result.output
    assert "--output-dir before the method" in result.output
    assert not (tmp_path / "astra.sqlite").exists()
