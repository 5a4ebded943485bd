"""`grid` on observed-frame spectra: apVisit files of the same stars, with the same noise, at
rest and moved by +-100 km/s, fitted with rv run first in the same invocation, with their known
velocities from a manifest column, and with no velocity at all.

    python bench/bench_chain.py [--stars 200] [--jobs 2]

Prints the rms of recovered - true per label for each case, the rv runs each invocation made
and the flags it set; asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from astra_cli.demo.dataset import INTERIOR, write_apvisit, write_demo
from astra_cli.io.store import ResultsStore
from astra_cli.methods.restframe import FLAG_AT_REST_ASSUMED

LABELS = ("teff", "logg", "m_h")


def visits(directory: Path, labels: np.ndarray, velocities: np.ndarray) -> list[str]:
    """One apVisit file per star; each star's noise is drawn from its own seed, so a star's
    file at rest and its moving one differ by the shift alone."""
    paths = []
    for index, (star, velocity) in enumerate(zip(labels, velocities, strict=True)):
        path = directory / f"apVisit-bench-{index:04d}.fits"
        rng = np.random.default_rng(1000 + index)
        write_apvisit(path, star, float(velocity), 100.0, rng, f"2M{index:08d}+0000000")
        paths.append(str(path))
    return paths


def analyse(inputs: list[str], output_dir: Path, options: dict[str, str]) -> dict:
    """`astra analyse grid` as a user runs it; its --json summary."""
    flags = [part for name, value in options.items() for part in (f"--{name}", value)]
    done = subprocess.run(
        [sys.executable, "-m", "astra_cli", "analyse", "grid", *inputs, *flags,
         "--output-dir", str(output_dir), "--json", "--quiet"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(done.stdout)


def report(case: str, output_dir: Path, summary: dict, truth: dict) -> None:
    with ResultsStore(output_dir) as store:
        found = {record.input_path: record.result for record in store.records(method="grid")}
    errors = np.array(
        [[found[p][name] - truth[p][k] for k, name in enumerate(LABELS)] for p in found]
    )
    rms = np.sqrt(np.mean(errors**2, axis=0))
    rv_runs = sum(stage["ran"] for stage in summary["upstream"] if stage["method"] == "rv")
    flagged = sum(1 for result in found.values() if result["flags"] & FLAG_AT_REST_ASSUMED)
    print(
        f"{case:<34} rms {rms[0]:7.2f} K {rms[1]:.4f} dex {rms[2]:.4f} dex; "
        f"rv runs {rv_runs}; flagged 16: {flagged}/{len(found)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stars", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2)
    arguments = parser.parse_args()

    rng = np.random.default_rng(7)
    labels = np.column_stack([rng.uniform(low, high, arguments.stars) for low, high in INTERIOR])
    moving = rng.choice([-100.0, 100.0], arguments.stars)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        demo = write_demo(root / "demo")  # for its grid and rv templates
        rest_paths = visits(root / "rest", labels, np.zeros(arguments.stars))
        moving_paths = visits(root / "moving", labels, moving)
        manifest = root / "moving.csv"
        with open(manifest, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "v_rad"])
            writer.writerows(zip(moving_paths, moving, strict=True))
        common = {
            "jobs": str(arguments.jobs),
            "grid": str(demo.grid_fits),
            "rv-templates": str(demo.templates),
        }
        manifest_only = {**common, "velocity": "manifest"}
        cases = [
            ("at rest, rv first", rest_paths, rest_paths, common),
            ("+-100 km/s, rv first", moving_paths, moving_paths, common),
            ("+-100 km/s, manifest v_rad", ["--from-file", str(manifest)], moving_paths, common),
            ("+-100 km/s, no velocity", moving_paths, moving_paths, manifest_only),
        ]
        for number, (case, inputs, paths, options) in enumerate(cases):
            output_dir = root / f"out-{number}"
            summary = analyse(inputs, output_dir, options)
            truth = dict(zip(paths, labels, strict=True))
            report(case, output_dir, summary, truth)


if __name__ == "__main__":
    main()
