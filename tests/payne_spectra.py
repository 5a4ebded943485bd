"""apStar files made from The Payne's network of normalised spectra, for tests of the `payne`
method: the network's flux at random labels inside its range, times a smooth positive
continuum per chip, Gaussian noise at S/N 100, bad pixels flagged (and corrupted), and shifted
by a random radial velocity in -300..300 km/s."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from conftest import ROOT

from astra_cli.science.networks import APOGEE_CHIP_PIXELS, read_network
from astra_cli.science.wavelength import (
    APSTAR_CDELT1,
    APSTAR_CRVAL1,
    APSTAR_NPIX,
    apstar_wavelength,
    doppler_factor,
)

NETWORK = ROOT.parent / "shared" / "data" / "payne" / "NN_normalized_spectra.npz"


def write_payne_spectra(directory: Path, count: int, seed: int = 5) -> list[tuple[Path, dict]]:
    """`count` apStar files and their true labels and velocities."""
    network = read_network(NETWORK)
    rng = np.random.default_rng(seed)
    wavelength = apstar_wavelength()
    made = []
    for index in range(count):
        # Inside the range, away from its very edges, where the network is trained.
        scaled = rng.uniform(-0.45, 0.45, network.x_min.size)
        labels = (scaled + 0.5) * (network.x_max - network.x_min) + network.x_min
        v_rad = float(rng.uniform(-300.0, 300.0))
        rest = network.spectra(labels[None])[0]
        flux = np.zeros(APSTAR_NPIX)
        error = np.full(APSTAR_NPIX, 1e10)
        mask = np.ones(APSTAR_NPIX, dtype=np.int16)  # BADPIX outside the chips
        start = 0
        for first, last in APOGEE_CHIP_PIXELS:
            width = last - first
            chip_rest = network.wavelength[start : start + width]
            pixels = np.arange(first, last)
            observed_rest = wavelength[pixels] / doppler_factor(v_rad)
            inside = (observed_rest > chip_rest[0]) & (observed_rest < chip_rest[-1])
            x = np.linspace(-1.0, 1.0, width)
            tilt, curve = rng.uniform(-0.15, 0.15), rng.uniform(-0.08, 0.08)
            continuum = rng.uniform(300, 3000) * (1 + tilt * x + curve * (2 * x * x - 1))
            model = np.interp(observed_rest, chip_rest, rest[start : start + width])
            sigma = continuum * np.sqrt(np.maximum(model, 0.05)) / 100.0
            chip_flux = continuum * model + sigma * rng.normal(size=width)
            flux[pixels[inside]] = chip_flux[inside]
            error[pixels[inside]] = sigma[inside]
            mask[pixels[inside]] = 0
            start += width
        bad = rng.choice(np.flatnonzero(mask == 0), 150, replace=False)
        mask[bad] |= 1
        flux[bad] *= rng.uniform(0.0, 2.0, bad.size)
        error[bad] = 1e10
        path = directory / f"apStar-payne-{index:03d}.fits"
        _write(path, flux, error, mask)
        truth = dict(zip(network.label_names, map(float, labels), strict=True))
        made.append((path, {**truth, "v_rad": v_rad}))
    return made


def _write(path: Path, flux: np.ndarray, error: np.ndarray, mask: np.ndarray) -> None:
    wcs = {"CRVAL1": APSTAR_CRVAL1, "CDELT1": APSTAR_CDELT1, "CRPIX1": 1, "CTYPE1": "LOG-LINEAR"}
    hdus = [fits.PrimaryHDU()]
    hdus[0].header.update({"NVISITS": 1, **wcs})
    for data in (flux.astype(np.float32), error.astype(np.float32), mask):
        hdu = fits.ImageHDU(np.vstack([data, data]))
        hdu.header.update(wcs)
        hdus.append(hdu)
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList(hdus).writeto(path, overwrite=True)
