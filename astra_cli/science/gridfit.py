"""Fitting spectra with a grid of models, as FERRE does.

For a whole chunk at once: continuum-normalise every spectrum, compute chi-square against every
node of the grid as two matrix products (B x P times P x N), re-derive each continuum against
its best node, then refine each spectrum's labels by minimising chi-square over the
multilinearly interpolated grid (Levenberg-Marquardt with the interpolation's exact
derivatives). Uncertainties come from the curvature of chi-square at the minimum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from astra_cli.science.continuum import normalise
from astra_cli.science.grids import ModelGrid

FLAG_GRID_EDGE = 1
"""The best fit lies on the edge of the grid: the true labels may be outside it."""
FLAG_NOT_CONVERGED = 2
"""Levenberg-Marquardt did not converge within MAX_ITERATIONS."""
FLAG_LOW_SNR = 4
"""Median S/N below LOW_SNR: treat the labels with caution."""

LOW_SNR = 10.0
MAX_ITERATIONS = 60
CONTINUUM_ROUNDS = 1


@dataclass(frozen=True)
class PreparedGrid:
    """A grid ready for fitting: node spectra flattened (N, P) with their squares, both in
    float64 (chi-square differences between nodes are small next to the sums)."""

    grid: ModelGrid
    nodes: np.ndarray
    nodes_squared: np.ndarray
    node_labels: np.ndarray

    @classmethod
    def from_grid(cls, grid: ModelGrid) -> PreparedGrid:
        nodes = np.ascontiguousarray(grid.flux.reshape(-1, grid.npix), dtype=np.float64)
        return cls(grid, nodes, nodes**2, grid.node_labels())


def resample(
    wavelength: np.ndarray, flux: np.ndarray, ivar: np.ndarray, target: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation of a spectrum onto `target` wavelengths; pixels outside, or next to
    a pixel without information, get ivar 0."""
    flux_on = np.interp(target, wavelength, flux, left=0.0, right=0.0)
    ivar_on = np.interp(target, wavelength, ivar, left=0.0, right=0.0)
    dead = np.interp(target, wavelength, (ivar <= 0).astype(float), left=1.0, right=1.0) > 0
    return flux_on, np.where(dead, 0.0, ivar_on)


def fit_batch(
    prepared: PreparedGrid,
    wavelengths: list[np.ndarray],
    fluxes: list[np.ndarray],
    ivars: list[np.ndarray],
    *,
    continuum_order: int,
) -> list[dict[str, float | int]]:
    """Fit B spectra; one result dict per spectrum."""
    grid = prepared.grid
    target = grid.wavelength
    flux = np.empty((len(fluxes), grid.npix))
    ivar = np.empty_like(flux)
    for i, (w, f, v) in enumerate(zip(wavelengths, fluxes, ivars, strict=True)):
        if w.shape == target.shape and np.allclose(w, target, rtol=1e-9, atol=0):
            flux[i], ivar[i] = f, v
        else:
            flux[i], ivar[i] = resample(w, f, v, target)

    y, w = normalise(target, flux, ivar, order=continuum_order)
    best = _best_nodes(prepared, y, w)
    for _ in range(CONTINUUM_ROUNDS):
        y, w = normalise(target, flux, ivar, order=continuum_order, model=prepared.nodes[best])
        best = _best_nodes(prepared, y, w)

    starts = prepared.node_labels[best]
    results = []
    for i in range(len(flux)):
        labels, model, covariance, converged = _refine(grid, y[i], w[i], starts[i])
        fit = _result(grid, labels, model, covariance, converged, y[i], w[i], flux[i], ivar[i])
        results.append(fit)
    return results


def _best_nodes(prepared: PreparedGrid, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Index of the node with the least chi-square for each spectrum: chi2 = sum(w y^2)
    - 2 (w y) M^T + w (M^2)^T, computed for the whole batch as matrix products."""
    chi2 = (w * y * y).sum(axis=1)[:, None] - 2.0 * (w * y) @ prepared.nodes.T
    chi2 += w @ prepared.nodes_squared.T
    return np.argmin(chi2, axis=1)


def _refine(
    grid: ModelGrid, y: np.ndarray, w: np.ndarray, start: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Levenberg-Marquardt over the interpolated grid, within its limits."""
    lower, upper = grid.llimits, grid.upper
    labels = np.clip(np.asarray(start, dtype=float), lower, upper)
    model, gradient = grid.interpolate(labels)
    chi2 = float(np.sum(w * (y - model) ** 2))
    damping = 1e-3
    converged = False
    for _ in range(MAX_ITERATIONS):
        weighted = gradient * w[:, None]
        curvature = gradient.T @ weighted
        slope = weighted.T @ (y - model)
        scaled = curvature + damping * np.diag(np.diag(curvature) + 1e-12)
        try:
            step = np.linalg.solve(scaled, slope)
        except np.linalg.LinAlgError:
            break
        trial = np.clip(labels + step, lower, upper)
        trial_model, trial_gradient = grid.interpolate(trial)
        trial_chi2 = float(np.sum(w * (y - trial_model) ** 2))
        if trial_chi2 <= chi2:
            small = np.all(np.abs(trial - labels) < 1e-4 * grid.steps)
            labels, model, gradient, chi2 = trial, trial_model, trial_gradient, trial_chi2
            damping = max(damping / 10.0, 1e-9)
            if small:
                converged = True
                break
        else:
            damping *= 10.0
            if damping > 1e9:
                converged = True  # no step lowers chi-square: we are at the minimum
                break
    weighted = gradient * w[:, None]
    try:
        covariance = np.linalg.inv(gradient.T @ weighted)
    except np.linalg.LinAlgError:
        covariance = np.full((len(labels), len(labels)), np.nan)
    return labels, model, covariance, converged


def _result(
    grid: ModelGrid,
    labels: np.ndarray,
    model: np.ndarray,
    covariance: np.ndarray,
    converged: bool,
    y: np.ndarray,
    w: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
) -> dict[str, float | int]:
    used = w > 0
    n_pixels = int(used.sum())
    chi2 = float(np.sum(w * (y - model) ** 2))
    snr = float(np.median(flux[ivar > 0] * np.sqrt(ivar[ivar > 0]))) if np.any(ivar > 0) else 0.0
    tolerance = 1e-3 * grid.steps
    flags = 0
    if np.any(labels <= grid.llimits + tolerance) or np.any(labels >= grid.upper - tolerance):
        flags |= FLAG_GRID_EDGE
    if not converged:
        flags |= FLAG_NOT_CONVERGED
    if snr < LOW_SNR:
        flags |= FLAG_LOW_SNR
    result: dict[str, float | int] = {}
    errors = np.sqrt(np.clip(np.diag(covariance), 0, None))
    for name, value, error in zip(grid.labels, labels, errors, strict=True):
        result[name] = float(value)
        result[f"e_{name}"] = float(error)
    result.update(
        chi2=chi2,
        rchi2=chi2 / max(n_pixels - len(labels), 1),
        n_pixels=n_pixels,
        snr=snr,
        flags=flags,
    )
    return result
