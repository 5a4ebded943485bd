"""Export a large store as one table: `astra results` time and peak memory.

    python bench/bench_export.py                  # 200,000 runs, FITS and CSV
    python bench/bench_export.py --runs 1000000   # a survey's worth

A store of --runs ok runs of `grid` is written through `ResultsStore` (runs shaped as real ones:
an apStar identifier, the options with the upstream group, the grid's result columns), then
`astra results grid -o FILE` exports it once per format, each as a subprocess of the installed
console script. The export is one process; its peak resident memory is read from the kernel
as it exits (`os.wait4`), with no other process to sum.

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import tempfile
import time
from pathlib import Path

from installed import astra_executable

from astra_cli.io.store import ResultsStore
from astra_cli.vocabulary import RunRecord

BATCH = 10_000
"""Runs written per transaction while the store is made."""


def grid_run(index: int, rng: random.Random) -> RunRecord:
    """One ok run of `grid` on an apStar named by identifier, with plausible values."""
    field = f"{index % 997:03d}+{index % 89:02d}"
    obj = f"2M{index:08d}+0000000"
    identifiers = {
        "release": "dr17", "apred": "dr17", "telescope": "apo25m", "field": field,
        "prefix": "ap", "obj": obj, "apstar": "stars",
    }  # fmt: skip
    key = ",".join(f"{name}={value}" for name, value in sorted(identifiers.items()))
    teff, logg, m_h = rng.uniform(3500, 7000), rng.uniform(0.5, 5), rng.uniform(-2, 0.5)
    result = {
        "teff": teff, "e_teff": teff * 0.002, "logg": logg, "e_logg": 0.01, "m_h": m_h,
        "e_m_h": 0.005, "chi2": rng.uniform(7000, 9000), "rchi2": rng.uniform(0.9, 1.2),
        "n_pixels": 7800 + index % 50, "snr": rng.uniform(20, 300), "flags": index % 3,
    }  # fmt: skip
    options = {
        "grid": "/data/models/grid.fits", "continuum_order": 4, "interpolation": "linear",
        "upstream": {"v_rad": "rv:ecae084b29c34ad1"}, "velocity": "rv",
    }  # fmt: skip
    folder = f"/data/sas/dr17/apogee/spectro/redux/dr17/stars/apo25m/{field}"
    return RunRecord(
        group_key="5635b93e5def8f9f",
        observation=f"apStar:{key}",
        method="grid",
        method_version="1",
        options=options,
        identifiers=identifiers,
        input_path=f"{folder}/apStar-dr17-{obj}.fits",
        status="ok",
        result=result,
        error=None,
        started_at=1.8e9 + index,
        duration_s=0.007,
        astra_version="bench",
        requested_at=1.8e9,
        request_position=index,
    )


def write_store(output_dir: Path, runs: int) -> None:
    rng = random.Random(1)
    with ResultsStore(output_dir) as store:
        for start in range(0, runs, BATCH):
            store.write(grid_run(index, rng) for index in range(start, min(runs, start + BATCH)))


def export(astra: str, output_dir: Path, target: Path) -> tuple[float, float]:
    """(seconds, peak resident MB, 10^6 bytes) of one `astra results` into `target`."""
    clock = time.perf_counter()
    process = subprocess.Popen(
        [astra, "results", "grid", "-o", str(target), "--output-dir", str(output_dir)],
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"astra results exited {process.returncode}")
    return time.perf_counter() - clock, usage.ru_maxrss * 1024 / 1e6  # ru_maxrss is in KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200_000, help="runs in the store")
    parser.add_argument("--formats", default="fits,csv", help="comma-separated: fits, csv, ...")
    args = parser.parse_args()
    astra = astra_executable("bench_export.py")
    with tempfile.TemporaryDirectory(prefix="astra-bench-") as tmp:
        output_dir = Path(tmp) / "out"
        clock = time.perf_counter()
        write_store(output_dir, args.runs)
        size = (output_dir / "astra.sqlite").stat().st_size / 1e6
        seconds = time.perf_counter() - clock
        print(f"store: {args.runs:,} runs of grid, {size:.0f} MB, written in {seconds:.1f} s")
        for file_format in args.formats.split(","):
            target = Path(tmp) / f"grid.{file_format}"
            seconds, peak = export(astra, output_dir, target)
            print(
                f"{file_format}: {seconds:.1f} s ({args.runs / seconds:,.0f} runs/s), peak "
                f"{peak:,.0f} MB ({peak * 1e6 / args.runs:,.0f} bytes a run), file "
                f"{target.stat().st_size / 1e6:.0f} MB"
            )


if __name__ == "__main__":
    main()
