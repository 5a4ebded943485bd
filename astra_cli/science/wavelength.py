"""The APOGEE wavelength grids: the log-linear apStar grid and the three detector chips."""

from __future__ import annotations

import numpy as np

APSTAR_CRVAL1 = 4.179
"""log10 of the first apStar wavelength (15100.8 Angstrom)."""
APSTAR_CDELT1 = 6e-6
"""apStar pixel size in log10(wavelength)."""
APSTAR_NPIX = 8575

CHIPS = ((15140.0, 15812.0), (15857.0, 16437.0), (16472.0, 16960.0))
"""Wavelength ranges (Angstrom) of APOGEE's blue, green and red chips; the gaps between them
hold no data."""

SPEED_OF_LIGHT_KMS = 299792.458


def log_linear(crval: float, cdelt: float, npix: int) -> np.ndarray:
    """Wavelengths 10**(crval + cdelt * i) for i = 0..npix-1."""
    return 10.0 ** (crval + cdelt * np.arange(npix))


def apstar_wavelength() -> np.ndarray:
    """The 8575 apStar wavelengths, 15100.8 to 16999.8 Angstrom."""
    return log_linear(APSTAR_CRVAL1, APSTAR_CDELT1, APSTAR_NPIX)


def chip_index(wavelength: np.ndarray) -> np.ndarray:
    """For each pixel, the chip it falls on (0, 1, 2) or -1 in a gap or outside."""
    chip = np.full(wavelength.shape, -1, dtype=int)
    for index, (start, end) in enumerate(CHIPS):
        chip[(wavelength >= start) & (wavelength <= end)] = index
    return chip


def doppler_factor(v_kms: np.ndarray | float) -> np.ndarray | float:
    """Observed / rest wavelength for a radial velocity (relativistic, receding positive)."""
    beta = np.asarray(v_kms) / SPEED_OF_LIGHT_KMS
    return np.sqrt((1.0 + beta) / (1.0 - beta))


def velocity_from_factor(factor: np.ndarray | float) -> np.ndarray | float:
    """Inverse of `doppler_factor`."""
    squared = np.asarray(factor) ** 2
    return SPEED_OF_LIGHT_KMS * (squared - 1.0) / (squared + 1.0)


def resample(
    wavelength: np.ndarray, flux: np.ndarray, ivar: np.ndarray, target: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation of a spectrum onto `target` wavelengths; pixels outside, or next to
    a pixel without information, get ivar 0."""
    flux_on = np.interp(target, wavelength, flux, left=0.0, right=0.0)
    ivar_on = np.interp(target, wavelength, ivar, left=0.0, right=0.0)
    dead = np.interp(target, wavelength, (ivar <= 0).astype(float), left=1.0, right=1.0) > 0
    return flux_on, np.where(dead, 0.0, ivar_on)


def catmull_rom_weights(
    grid: np.ndarray, at: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Catmull-Rom interpolation on the increasing `grid` at the points `at` (inside it): each
    point's 4 node weights, their derivatives by the abscissa, and the 4 nodes (the end
    intervals repeat the end node as their outer neighbour).

    Kept as weights rather than values so that a model can be taken to a spectrum's pixels
    once per spectrum and applied to every model flux and derivative after."""
    index = np.clip(np.searchsorted(grid, at) - 1, 0, grid.size - 2)
    width = grid[index + 1] - grid[index]
    t = (at - grid[index]) / width
    t2, t3 = t * t, t * t * t
    weights = 0.5 * np.stack(
        [-t + 2 * t2 - t3, 2 - 5 * t2 + 3 * t3, t + 4 * t2 - 3 * t3, t3 - t2], axis=1
    )
    slopes = (
        0.5
        * np.stack(
            [-1 + 4 * t - 3 * t2, -10 * t + 9 * t2, 1 + 8 * t - 9 * t2, 3 * t2 - 2 * t], axis=1
        )
        / width[:, None]
    )
    nodes = np.clip(index[:, None] + np.arange(-1, 3), 0, grid.size - 1)
    return weights, slopes, nodes
