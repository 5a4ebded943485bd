"""A synthetic stellar spectrum model: absorption lines whose depths depend on Teff, logg and
[M/H] the way real lines do, so that every method has something physical to recover.

Each line has an excitation potential (its strength falls with temperature as
10**(-chi * 5040 / Teff)), a metallicity sensitivity, and a gravity sensitivity (ionised lines
strengthen at low gravity). Line opacity follows a Gaussian profile at APOGEE's resolving power
(R = 22,500); flux = exp(-opacity). The model is analytic in wavelength, so spectra can be
evaluated at any rest-frame wavelengths: Doppler shifts need no interpolation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from astra_cli.science.wavelength import CHIPS

LABEL_NAMES = ("teff", "logg", "m_h")
RESOLVING_POWER = 22_500.0
N_LINES = 450
LINE_LIST_SEED = 20_151_117


@dataclass(frozen=True)
class LineList:
    wavelength: np.ndarray
    strength: np.ndarray
    excitation: np.ndarray
    metal_sensitivity: np.ndarray
    gravity_sensitivity: np.ndarray

    @classmethod
    def default(cls) -> LineList:
        """The demo's fixed line list (the same on every machine)."""
        rng = np.random.default_rng(LINE_LIST_SEED)
        chip = rng.integers(0, len(CHIPS), N_LINES)
        starts = np.array([start for start, _ in CHIPS])[chip] + 3.0
        ends = np.array([end for _, end in CHIPS])[chip] - 3.0
        return cls(
            wavelength=np.sort(rng.uniform(starts, ends)),
            strength=10 ** rng.uniform(-1.3, -0.2, N_LINES),
            excitation=rng.uniform(1.0, 5.0, N_LINES),
            metal_sensitivity=rng.uniform(0.3, 0.7, N_LINES),
            gravity_sensitivity=rng.choice([-0.25, 0.0, 0.0, 0.15], N_LINES),
        )


def line_opacity_scale(lines: LineList, labels: np.ndarray) -> np.ndarray:
    """Central opacity of every line for every star: (B, L)."""
    labels = np.atleast_2d(labels)
    teff, logg, m_h = labels[:, 0:1], labels[:, 1:2], labels[:, 2:3]
    theta = 5040.0 / teff
    # Low-excitation lines strengthen in cool stars, high-excitation ones in hot stars.
    boltzmann = 10 ** (-(lines.excitation - 3.0) * (theta - 1.0))
    metals = 10 ** (lines.metal_sensitivity * m_h)
    gravity = 10 ** (lines.gravity_sensitivity * (logg - 3.0))
    cool_boost = 1.0 + 0.3 * (theta - 1.0)
    return lines.strength * boltzmann * metals * gravity * cool_boost


def normalised_flux(
    wavelength: np.ndarray, labels: np.ndarray, lines: LineList | None = None
) -> np.ndarray:
    """Continuum-normalised flux (B, P) of stars with `labels` (B, 3: teff, logg, m_h) at
    rest-frame `wavelength` (P, in any order, or (B, P) for one grid per star)."""
    lines = lines or LineList.default()
    labels = np.atleast_2d(np.asarray(labels, dtype=float))
    scale = line_opacity_scale(lines, labels)
    shape = (labels.shape[0], np.shape(wavelength)[-1])
    grids = np.broadcast_to(np.asarray(wavelength, dtype=float), shape)
    opacity = np.zeros(grids.shape)
    sigma = lines.wavelength / (RESOLVING_POWER * 2.3548)
    # Pressure broadening: lines are a little wider in dwarfs.
    width = sigma[None, :] * (1.0 + 0.04 * (labels[:, 1:2] - 3.0))
    for star in range(labels.shape[0]):
        order = np.argsort(grids[star], kind="stable")
        grid = grids[star][order]
        star_opacity = np.zeros(grid.size)
        lo = np.searchsorted(grid, lines.wavelength - 6 * sigma)
        hi = np.searchsorted(grid, lines.wavelength + 6 * sigma)
        for line in np.flatnonzero(hi > lo):
            x = (grid[lo[line] : hi[line]] - lines.wavelength[line]) / width[star, line]
            star_opacity[lo[line] : hi[line]] += scale[star, line] * np.exp(-0.5 * x * x)
        opacity[star, order] = star_opacity
    return np.exp(-opacity)
