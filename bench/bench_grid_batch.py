"""How much batching saves the `grid` method: seconds per spectrum when a chunk of B spectra is
fitted in one call, against one call per spectrum, in the same run, with one BLAS thread.

    python bench/bench_grid_batch.py [--batch 256] [--singles 32]

Prints figures; asserts nothing (the machine is shared and timings are noisy).
"""

from __future__ import annotations

import os

# One BLAS thread, set before numpy loads, so that neither contender uses both cores.
for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = "1"

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from astra_cli.demo.dataset import INTERIOR, model_grid  # noqa: E402
from astra_cli.demo.synthesis import normalised_flux  # noqa: E402
from astra_cli.science.gridfit import PreparedGrid, fit_batch  # noqa: E402
from astra_cli.science.grids import ModelGrid  # noqa: E402
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
    args = parser.parse_args()

    wavelength = apstar_wavelength()
    start = time.perf_counter()
    prepared = PreparedGrid.from_grid(ModelGrid.from_data(model_grid(wavelength)))
    print(f"grid: {prepared.grid.n_nodes} nodes x {prepared.grid.npix} pixels, "
          f"built in {time.perf_counter() - start:.1f} s")  # fmt: skip
    wavelength, _, flux, ivar = spectra(args.batch, args.snr, seed=1)

    fit_batch(prepared, [wavelength], [flux[0]], [ivar[0]], continuum_order=4)  # warm up
    start = time.perf_counter()
    for i in range(args.singles):
        fit_batch(prepared, [wavelength], [flux[i]], [ivar[i]], continuum_order=4)
    single = (time.perf_counter() - start) / args.singles
    start = time.perf_counter()
    fit_batch(prepared, [wavelength] * args.batch, list(flux), list(ivar), continuum_order=4)
    batched = (time.perf_counter() - start) / args.batch

    print(f"B=1:   {single * 1e3:7.2f} ms per spectrum ({args.singles} calls)")
    print(f"B={args.batch}: {batched * 1e3:7.2f} ms per spectrum (one call)")
    print(f"batching speed-up per spectrum: {single / batched:.1f}x")


if __name__ == "__main__":
    main()
