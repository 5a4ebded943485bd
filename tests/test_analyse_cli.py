"""`astra analyse`, `astra plan` and `astra methods` as a user drives them, in-process through
typer's CliRunner: exit codes, messages, and what lands in the results store."""

from __future__ import annotations

import json
import shutil

from astropy.io import fits
from fits_factory import write_apstars
from typer.testing import CliRunner

from astra_cli.cli.app import app
from astra_cli.io.store import ResultsStore

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(arg) for arg in args])


def stored(output_dir, status=None):
    with ResultsStore(output_dir) as store:
        return list(store.records(status=status))


def test_snr_on_the_real_apvisits_matches_the_pipeline(real_apvisits, tmp_path):
    result = invoke("analyse", "snr", *real_apvisits, "-o", tmp_path, "--jobs", "1", "--json")

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["requested"], summary["ran"], summary["ok"]) == (2, 2, 2)
    for record in stored(tmp_path):
        pipeline_snr = fits.getheader(record.input_path)["SNR"]
        assert abs(record.result["snr"] - pipeline_snr) / pipeline_snr < 0.10
        assert record.status == "ok" and record.method == "snr"


def test_second_identical_run_does_nothing_and_force_reruns(real_apvisits, tmp_path):
    args = ("analyse", "snr", *real_apvisits, "-o", tmp_path, "-j", "1", "--json")
    assert invoke(*args).exit_code == 0

    again = invoke(*args)
    assert again.exit_code == 0
    summary = json.loads(again.stdout)
    assert (summary["ran"], summary["already_done"]) == (0, 2)

    forced = invoke(*args, "--force")
    assert forced.exit_code == 0
    assert json.loads(forced.stdout)["ran"] == 2
    assert len(stored(tmp_path)) == 2


def test_corrupt_file_fails_alone_and_is_named(real_apvisits, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    good = [shutil.copy(path, data) for path in real_apvisits]
    corrupt = data / "apVisit-r13-0000-00000-000.fits"
    corrupt.write_bytes(b"SIMPLE  =                    T" + b"\0" * 500)

    result = invoke("analyse", "snr", *good, corrupt, "-o", tmp_path / "out", "-j", "1")

    assert result.exit_code == 1
    assert str(corrupt) in result.stderr
    assert {r.input_path for r in stored(tmp_path / "out", "ok")} == {str(p) for p in good}
    (failed,) = stored(tmp_path / "out", "failed")
    assert failed.input_path == str(corrupt)
    assert str(corrupt) in failed.error
    assert failed.result is None


def test_missing_file_is_a_failed_run_not_a_crash(real_apvisits, tmp_path):
    missing = tmp_path / "apVisit-nowhere.fits"
    result = invoke("analyse", "snr", real_apvisits[0], missing, "-o", tmp_path / "out", "-j", "1")

    assert result.exit_code == 1
    (failed,) = stored(tmp_path / "out", "failed")
    assert failed.error == f"missing input: {missing}"


def test_a_missing_input_that_appears_later_is_run_by_the_next_invocation(tmp_path, real_apvisits):
    missing = tmp_path / "apVisit-later.fits"
    args = ("analyse", "snr", missing, "-o", tmp_path / "out", "-j", "1", "--json")
    assert invoke(*args).exit_code == 1
    (failed,) = stored(tmp_path / "out", "failed")
    assert failed.fault == "environment"

    shutil.copy(real_apvisits[0], missing)
    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["ran"] == 1
    assert [r.status for r in stored(tmp_path / "out")] == ["ok"]


def test_a_run_that_failed_by_its_own_fault_is_kept_until_retried(tmp_path, real_apvisits):
    damaged = tmp_path / "apVisit-damaged.fits"
    damaged.write_bytes(real_apvisits[0].read_bytes()[:5000])
    args = ("analyse", "snr", damaged, "-o", tmp_path / "out", "-j", "1", "--json")
    assert invoke(*args).exit_code == 1
    (failed,) = stored(tmp_path / "out", "failed")
    assert failed.fault == "run"

    skipped = invoke(*args)
    assert skipped.exit_code == 1, "a failed run that was not retried is still failed"
    assert json.loads(skipped.stdout)["skipped_failed"] == 1
    assert "--retry-failed" in skipped.stderr
    assert json.loads(invoke(*args, "--retry-failed").stdout)["ran"] == 1

    shutil.copy(real_apvisits[0], damaged)  # the file is mended: its run is stale
    mended = invoke(*args)
    assert mended.exit_code == 0, mended.output
    assert json.loads(mended.stdout)["stale"] == 1
    assert [r.status for r in stored(tmp_path / "out")] == ["ok"]


def test_per_key_options_of_different_lengths_are_refused(tmp_path):
    result = invoke(
        "analyse", "snr", "--release", "dr16", "--apred", "r12", "--telescope", "apo25m",
        "--field", "218-04", "--field", "000+14",
        "--obj", "2M1", "--obj", "2M2", "--obj", "2M3", "-o", tmp_path / "out",
    )  # fmt: skip

    assert result.exit_code == 2
    assert "--field 2x" in result.stderr and "--obj 3x" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists(), "nothing may be created for bad input"


def test_no_observations_is_a_usage_error(tmp_path):
    result = invoke("analyse", "snr", "-o", tmp_path)

    assert result.exit_code == 2
    assert "no observations given" in result.stderr


def test_unknown_method_suggests_the_closest(tmp_path):
    result = invoke("analyse", "snrr", "x.fits")

    assert result.exit_code == 2
    assert "snr" in result.output


def test_unknown_identifier_key_is_named_with_a_suggestion(tmp_path):
    result = invoke("analyse", "snr", "--obs", "release=dr17,apred=dr17,telescop=apo25m")

    assert result.exit_code == 2
    assert "'telescop'" in result.stderr and "did you mean 'telescope'" in result.stderr


def test_identifiers_resolve_under_the_data_root(tmp_path, real_apvisits):
    root = tmp_path / "sas"
    target = root / "dr16/apogee/spectro/redux/r12/visit/apo25m/120+12/5095/55844"
    target.mkdir(parents=True)
    shutil.copy(real_apvisits[0], target / "apVisit-r12-5095-55844-128.fits")

    result = invoke(
        "analyse", "snr", "--release", "dr16", "--apred", "r12", "--telescope", "apo25m",
        "--field", "120+12", "--plate", "5095", "--mjd", "55844", "--fiber", "128",
        "--data-root", root, "-o", tmp_path / "out", "-j", "1",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    (record,) = stored(tmp_path / "out")
    assert record.identifiers["fiber"] == "128" and record.identifiers["prefix"] == "ap"
    assert record.input_path == str(target / "apVisit-r12-5095-55844-128.fits")


def test_methods_lists_snr_as_json():
    result = invoke("methods", "--json")

    assert result.exit_code == 0
    methods = {method["name"]: method for method in json.loads(result.stdout)}
    assert methods["snr"]["summary"].startswith("Median S/N")


def test_plugin_is_listed_and_its_options_are_real_options(with_plugin):
    listed = invoke("methods", "--json")
    counting = {m["name"]: m for m in json.loads(listed.stdout)}["counting"]
    assert {o["name"]: o["significant"] for o in counting["options"]} == {
        "a": True, "order": True, "threads": False, "load_log": False, "delay": False,
        "run_log": False, "gate": False, "heap_log": False, "load_warning": False,
    }  # fmt: skip

    help_text = invoke("analyse", "counting", "--help").stdout
    assert "Options of counting" in help_text
    assert "--order" in help_text and "insignificant" in help_text


def test_plugin_runs_with_a_sweep_into_one_group_per_value(with_plugin, real_apvisits, tmp_path):
    result = invoke(
        "analyse", "counting", *real_apvisits, "--order", "5", "--order", "10",
        "--backend", "sequential", "-o", tmp_path, "--json",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["groups"], summary["ran"]) == (2, 4)
    products = sorted(r.result["a_times_order"] for r in stored(tmp_path))
    assert products == [15, 15, 30, 30]


def test_plan_shows_groups_and_runs_nothing(with_plugin, real_apvisits, tmp_path):
    result = invoke(
        "plan", "counting", *real_apvisits, "--a", "3", "--order", "5", "--order", "10",
        "--threads", "4", "-o", tmp_path, "--json",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert sorted(group["options"]["order"] for group in plan["groups"]) == [5, 10]
    assert all(group["insignificant_options"]["threads"] == 4 for group in plan["groups"])
    assert plan["to_run"] == 4
    assert stored(tmp_path) == []


def test_sweeping_an_insignificant_option_is_refused(with_plugin, real_apvisits, tmp_path):
    result = invoke(
        "plan", "counting", *real_apvisits, "--threads", "1", "--threads", "2", "-o", tmp_path
    )

    assert result.exit_code == 2
    assert "--threads" in result.stderr and "insignificant" in result.stderr


def test_bad_option_value_is_a_usage_error(with_plugin, real_apvisits, tmp_path):
    result = invoke("analyse", "counting", *real_apvisits, "--order", "five", "-o", tmp_path)

    assert result.exit_code == 2
    assert "--order" in result.output


def test_vectorised_batch_falls_back_so_one_bad_spectrum_fails_alone(with_plugin, tmp_path):
    paths = write_apstars(tmp_path / "data", 6)
    bad = shutil.copy(paths[0], tmp_path / "data" / "apStar-fail.fits")

    result = invoke(
        "analyse", "vectorised", *paths, bad, "--backend", "sequential", "--chunk-size", "7",
        "-o", tmp_path / "out",
    )  # fmt: skip

    assert result.exit_code == 1
    (failed,) = stored(tmp_path / "out", "failed")
    assert failed.input_path == str(bad)
    assert "a bad spectrum in the batch" in failed.error
    assert len(stored(tmp_path / "out", "ok")) == 6


def test_batched_method_gets_whole_chunks(with_plugin, tmp_path):
    paths = write_apstars(tmp_path / "data", 6)

    log = tmp_path / "batches.log"

    result = invoke(
        "analyse", "vectorised", *paths, "--backend", "sequential", "--chunk-size", "3",
        "--batch-log", log, "-o", tmp_path / "out",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert log.read_text().split() == ["3", "3"]
    assert len(stored(tmp_path / "out", "ok")) == 6
