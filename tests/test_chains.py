"""Methods that need another method's results: grid and cannon fit at rest, so observed-frame
spectra (apVisit) need a v_rad: from a manifest column, or from `rv`, run first in the same
invocation where the store has none."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import REAL_APVISITS
from typer.testing import CliRunner

import astra_cli
from astra_cli.cli.app import app
from astra_cli.demo.report import STAR_KEYS, VISIT_KEYS
from astra_cli.exit_codes import ExitCode
from astra_cli.io.identifiers import IdentifierResolver
from astra_cli.io.store import ResultsStore
from astra_cli.methods.restframe import FLAG_AT_REST_ASSUMED, FLAG_VELOCITY_FLAGGED

runner = CliRunner()


def visit_paths(files) -> list[str]:
    resolver = IdentifierResolver(files.data_root)
    return [resolver.resolve({k: row[k] for k in VISIT_KEYS}).path for row in files.visits]


def results(output_dir, method: str) -> dict[str, dict]:
    with ResultsStore(output_dir) as store:
        return {record.input_path: record.result for record in store.records(method=method)}


def teff_errors(files, found: dict[str, dict]) -> np.ndarray:
    truth = dict(zip(visit_paths(files), files.visits, strict=True))
    return np.array([found[path]["teff"] - truth[path]["teff"] for path in found])


@pytest.fixture(scope="module")
def chained(demo_files, tmp_path_factory):
    """grid on the demo's visits (velocities over -300..300 km/s), rv run first."""
    output_dir = tmp_path_factory.mktemp("chained")
    summary = astra_cli.run(
        "grid",
        visit_paths(demo_files),
        output_dir=output_dir,
        jobs=1,
        grid=demo_files.grid_fits,
        rv_templates=demo_files.templates,
    )
    return output_dir, summary


def test_grid_on_visits_runs_rv_first_and_fits_them_at_rest(demo_files, chained):
    output_dir, summary = chained
    visits = len(demo_files.visits)
    assert [(stage.method, stage.ran, stage.ok) for stage in summary.upstream] == [
        ("rv", visits, visits)
    ]
    assert (summary.ran, summary.ok, summary.exit_code) == (visits, visits, 0)
    found = results(output_dir, "grid")
    assert len(found) == visits
    assert all(result["flags"] & (FLAG_AT_REST_ASSUMED | FLAG_VELOCITY_FLAGGED) == 0
               for result in found.values())  # fmt: skip
    rms = float(np.sqrt(np.mean(teff_errors(demo_files, found) ** 2)))
    assert rms < 30.0, f"teff rms {rms:.1f} K on visits moved to rest by rv"


def test_a_second_invocation_runs_neither_method_again(demo_files, chained):
    output_dir, _ = chained
    again = astra_cli.run(
        "grid",
        visit_paths(demo_files),
        output_dir=output_dir,
        jobs=1,
        grid=demo_files.grid_fits,
        rv_templates=demo_files.templates,
    )
    assert (again.ran, again.already_done) == (0, len(demo_files.visits))
    assert again.upstream == []


def test_without_a_velocity_visits_are_fitted_as_if_at_rest_and_flagged(
    demo_files, chained, tmp_path
):
    summary = astra_cli.run(
        "grid",
        visit_paths(demo_files),
        output_dir=tmp_path,
        jobs=1,
        grid=demo_files.grid_fits,
        velocity="manifest",
    )
    assert summary.upstream == [] and summary.ok == len(demo_files.visits)
    unmoved = results(tmp_path, "grid")
    assert all(result["flags"] & FLAG_AT_REST_ASSUMED for result in unmoved.values())
    moved = results(chained[0], "grid")
    # The flag is earned: at hundreds of km/s the lines are misplaced and the labels suffer.
    assert (
        np.abs(teff_errors(demo_files, unmoved)).max()
        > 3 * np.abs(teff_errors(demo_files, moved)).max()
    )


def test_a_manifest_v_rad_column_is_used_instead_of_running_rv(demo_files, tmp_path):
    manifest = tmp_path / "visits.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "v_rad"])
        for path, row in zip(visit_paths(demo_files), demo_files.visits, strict=True):
            writer.writerow([path, row["v_rad"]])
    out = tmp_path / "out"
    command = ["--from-file", str(manifest), "--grid", str(demo_files.grid_fits)]
    result = runner.invoke(app, ["analyse", "grid", *command, "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    with ResultsStore(out) as store:
        assert store.methods() == ["grid"], "rv was not run"
        keys = [record.observation for record in store.records(method="grid")]
    assert all("|v_rad=" in key for key in keys), "the velocity is part of the run"
    rms = float(np.sqrt(np.mean(teff_errors(demo_files, results(out, "grid")) ** 2)))
    assert rms < 30.0


def test_a_v_rad_column_is_not_applied_to_apstar_spectra_which_are_at_rest(demo_files, tmp_path):
    resolver = IdentifierResolver(demo_files.data_root)
    manifest = tmp_path / "stars.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "v_rad"])
        for row in demo_files.stars[:3]:
            writer.writerow([resolver.resolve({k: row[k] for k in STAR_KEYS}).path, row["v_rad"]])
    out = tmp_path / "out"
    command = ["analyse", "grid", "--from-file", str(manifest), "--output-dir", str(out)]
    result = runner.invoke(app, [*command, "--grid", str(demo_files.grid_fits)])
    assert result.exit_code == 0, result.output
    assert "v_rad" in result.output and "apStar" in result.output  # the notice says why
    with ResultsStore(out) as store:
        keys = [record.observation for record in store.records(method="grid")]
    assert len(keys) == 3 and not any("|" in key for key in keys)


def test_a_bad_v_rad_cell_names_its_line(demo_files, tmp_path):
    manifest = tmp_path / "visits.csv"
    manifest.write_text(f"path,v_rad\n{visit_paths(demo_files)[0]},fast\n")
    command = ["analyse", "grid", "--from-file", str(manifest), "--output-dir", str(tmp_path)]
    result = runner.invoke(app, [*command, "--grid", str(demo_files.grid_fits)])
    assert result.exit_code == 2
    assert f"{manifest}:2" in result.output and "v_rad='fast' is not a number" in result.output


def test_plan_shows_the_rv_runs_that_come_first(demo_files, tmp_path):
    visits = visit_paths(demo_files)[:4]
    command = ["plan", "grid", *visits, "--grid", str(demo_files.grid_fits), "--json"]
    result = runner.invoke(app, [*command, "--output-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert [stage["method"] for stage in plan["upstream"]] == ["rv"]
    assert plan["upstream"][0]["to_run"] == 4


def test_a_failed_velocity_fails_the_run_that_needs_it_and_says_so(demo_files, tmp_path):
    from astropy.io import fits

    broken = tmp_path / "apVisit-broken.fits"
    with fits.open(visit_paths(demo_files)[0]) as hdus:
        hdus[3].data[:] = 1  # BADPIX on every pixel
        hdus.writeto(broken)
    good = visit_paths(demo_files)[1]
    out = tmp_path / "out"
    summary = astra_cli.run(
        "grid",
        [good, str(broken)],
        output_dir=out,
        jobs=1,
        grid=demo_files.grid_fits,
        rv_templates=demo_files.templates,
    )
    assert (summary.upstream[0].ok, summary.upstream[0].failed) == (1, 1)
    assert (summary.ok, summary.failed, summary.exit_code) == (1, 1, ExitCode.RUNS_FAILED)
    with ResultsStore(out) as store:
        failed = [r for r in store.records(method="grid") if r.status == "failed"]
        velocity = next(r for r in store.records(method="rv") if r.status == "failed")
    assert "no usable pixel" in velocity.error, "a fit of nothing is not stored as ok"
    assert [r.input_path for r in failed] == [str(broken)]
    assert "needs v_rad from rv, which failed: " in failed[0].error

    # Mended, the visit is fitted when failed runs are retried: its rv run first.
    with fits.open(visit_paths(demo_files)[0]) as hdus:
        hdus.writeto(broken, overwrite=True)
    retried = astra_cli.run(
        "grid",
        [good, str(broken)],
        output_dir=out,
        jobs=1,
        grid=demo_files.grid_fits,
        rv_templates=demo_files.templates,
        retry_failed=True,
    )
    assert [(stage.ran, stage.ok) for stage in retried.upstream] == [(1, 1)]
    assert (retried.ran, retried.ok, retried.already_done) == (1, 1, 1)


def test_a_velocity_rv_flagged_is_passed_on_as_a_flag(demo_files, tmp_path):
    """The demo's templates match no real star: rv flags its velocities of real visits, and
    grid says the v_rad it used is doubtful."""
    summary = astra_cli.run(
        "grid",
        [str(path) for path in REAL_APVISITS],
        output_dir=tmp_path,
        jobs=1,
        grid=demo_files.grid_fits,
        rv_templates=demo_files.templates,
    )
    assert summary.upstream[0].ok == len(REAL_APVISITS)
    velocities = results(tmp_path, "rv")
    assert all(result["flags"] for result in velocities.values())
    for result in results(tmp_path, "grid").values():
        assert result["flags"] & FLAG_VELOCITY_FLAGGED


def test_cannon_on_visits_runs_rv_first(demo_files, tmp_path):
    visits = visit_paths(demo_files)[:4]
    summary = astra_cli.run(
        "cannon",
        visits,
        output_dir=tmp_path,
        jobs=1,
        model=demo_files.cannon_model,
        rv_templates=demo_files.templates,
    )
    assert [(stage.method, stage.ok) for stage in summary.upstream] == [("rv", 4)]
    assert summary.ok == 4
    assert not any(r["flags"] & FLAG_AT_REST_ASSUMED for r in results(tmp_path, "cannon").values())
