"""Synthetic apStar files laid out as the APOGEE pipeline writes them, for tests that need many
spectra or edge cases the two real apVisit files do not cover."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

APSTAR_PIXELS = 8575
CRVAL1 = 4.179
CDELT1 = 6e-6


def write_apstar(
    path: str | Path,
    *,
    nvisits: int = 1,
    snr: float = 50.0,
    flux_dtype: type = np.float32,
    mask_dtype: type = np.int16,
    wcs_in_primary: bool = False,
    bad_pixels: int = 0,
    seed: int = 0,
    obj: str = "2M00000000+0000000",
) -> Path:
    """Write an apStar file: HDU1 flux, HDU2 error, HDU3 mask, each one row per spectrum (the
    combined ones first) or, with NVISITS=1, a single row; log-linear wavelengths."""
    rng = np.random.default_rng(seed)
    rows = 1 if nvisits == 1 else nvisits + 2
    wavelength = 10 ** (CRVAL1 + CDELT1 * np.arange(APSTAR_PIXELS))
    continuum = 1000.0 * (1 + 0.1 * np.sin(wavelength / 300.0))
    flux = np.tile(continuum, (rows, 1)) + rng.normal(0, 1000.0 / snr, (rows, APSTAR_PIXELS))
    error = np.full((rows, APSTAR_PIXELS), 1000.0 / snr)
    mask = np.zeros((rows, APSTAR_PIXELS), dtype=mask_dtype)
    if bad_pixels:
        mask[:, :bad_pixels] = 1  # BADPIX
    if nvisits == 1:
        flux, error, mask = flux[0], error[0], mask[0]

    wcs = {"CRVAL1": CRVAL1, "CDELT1": CDELT1, "CRPIX1": 1, "CTYPE1": "LOG-LINEAR"}
    primary = fits.PrimaryHDU()
    primary.header.update({"OBJID": obj, "NVISITS": nvisits, "TELESCOP": "apo25m", "SNR": snr})
    if wcs_in_primary:
        primary.header.update(wcs)
    hdus = [primary]
    for data in (flux.astype(flux_dtype), error.astype(flux_dtype), mask):
        hdu = fits.ImageHDU(data)
        if not wcs_in_primary:
            hdu.header.update(wcs)
        hdus.append(hdu)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


def write_apstars(directory: str | Path, count: int, **kwargs) -> list[Path]:
    """`count` apStar files named apStar-test-NNNN.fits."""
    return [
        write_apstar(Path(directory) / f"apStar-test-{i:04d}.fits", seed=i, **kwargs)
        for i in range(count)
    ]
