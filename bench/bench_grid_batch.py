"""How much batching saves the `grid` method: CPU seconds per spectrum when a chunk of B spectra
is fitted in one call, against one call per spectrum, in the same run, with one BLAS thread.

    python bench/bench_grid_batch.py [--batch 256] [--singles 32]
    python bench/bench_grid_batch.py --grid /data/grid.hdr --interpolation cubic

The demo's grid by default (891 nodes); `--grid` takes any grid the spectra (the demo's line
model at labels inside the demo grid) fall in, such as the 28,413-node grid that
bench_grid_formats.py writes.

Prints figures; asserts nothing (the machine is shared and timings are noisy).
"""

from __future__ import annotations

import os

# One BLAS thread, set before numpy loads, so that neither contender uses both cores.
for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = "1"

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from astra_cli.demo.dataset import INTERIOR, model_grid  # noqa: E402
from astra_cli.demo.synthesis import normalised_flux  # noqa: E402
from astra_cli.io.grids import write_grid  # noqa: E402
from astra_cli.methods.grid import Grid  # noqa: E402
from astra_cli.science.gridfit import fit_batch  # noqa: E402
from astra_cli.science.wavelength import apstar_wavelength, chip_index  # noqa: E402


def spectra(count: int, snr: float, seed: int):
    rng = np.random.default_rng(seed)
    wavelength = apstar_wavelength()
    labels = np.column_stack([rng.uniform(lo, hi, count) for lo, hi in INTERIOR])
    chips = chip_index(wavelength)
    continuum = 800.0 * np.where(chips >= 0, 1.0, 0.0) * (1 + 0.1 * (wavelength - 16000) / 1000)
    flux = normalised_flux(wavelength, labels) * continuum
    error = np.where(chips >= 0, continuum / snr, np.inf)
    flux += rng.normal(size=flux.shape) * np.where(chips >= 0, error, 0.0)
    ivar = np.broadcast_to(np.where(chips >= 0, error**-2.0, 0.0), flux.shape)
    return wavelength, labels, flux, ivar


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--singles", type=int, default=32)
    parser.add_argument("--snr", type=float, default=100.0)
    parser.add_argument("--grid", type=Path, help="a grid file (default: the demo's)")
    parser.add_argument("--interpolation", default="linear", choices=("linear", "cubic"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        path = args.grid or Path(scratch) / "demo-grid.hdr"
        if args.grid is None:
            write_grid(model_grid(apstar_wavelength()), path, "ferre-binary")
        start = time.perf_counter()
        prepared, settings = Grid(grid=path, interpolation=args.interpolation).load_model()
        loaded = time.perf_counter() - start
        print(f"grid: {prepared.grid.n_nodes} nodes x {prepared.grid.npix} pixels, "
              f"loaded in {loaded:.2f} s; {prepared.describe_search()}")  # fmt: skip
        wavelength, _, flux, ivar = spectra(args.batch, args.snr, seed=1)

        def fit(rows: slice) -> None:
            count = len(flux[rows])
            fit_batch(prepared, [wavelength] * count, list(flux[rows]), list(ivar[rows]),
                      settings=settings)  # fmt: skip

        fit(slice(0, 1))  # warm up
        start = time.process_time()
        for i in range(args.singles):
            fit(slice(i, i + 1))
        single = (time.process_time() - start) / args.singles
        start = time.process_time()
        fit(slice(0, args.batch))
        batched = (time.process_time() - start) / args.batch

    print(f"B=1:   {single * 1e3:7.2f} ms CPU per spectrum ({args.singles} calls)")
    print(f"B={args.batch}: {batched * 1e3:7.2f} ms CPU per spectrum (one call)")
    print(f"batching speed-up per spectrum: {single / batched:.1f}x")


if __name__ == "__main__":
    main()
