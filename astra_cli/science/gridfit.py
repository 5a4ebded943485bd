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

from astra_cli.science.continuum import (
    continuum_segments,
    normalise,
    segment_designs,
    weighted_fit,
)
from astra_cli.science.grids import ModelGrid
from astra_cli.science.wavelength import resample

FLAG_GRID_EDGE = 1
"""The best fit lies on the edge of the grid: the true labels may be outside it."""
FLAG_NOT_CONVERGED = 2
"""Levenberg-Marquardt did not converge within MAX_ITERATIONS."""
FLAG_LOW_SNR = 4
"""Median S/N below LOW_SNR: treat the labels with caution."""
FLAG_INVALID_NODE = 8
"""The fit's cell of the grid has a node the grid marks invalid (its INVALID_CODE)."""

LOW_SNR = 10.0
MAX_ITERATIONS = 60
CONTINUUM_ROUNDS = 1


@dataclass(frozen=True)
class PreparedGrid:
    """A grid ready for fitting: its model, the label values of its nodes, and the segments
    of model pixels that each get their own continuum (its sections, cut at APOGEE's chip
    gaps). Holds no copy of the node spectra: they are read block by block."""

    grid: ModelGrid
    node_labels: np.ndarray
    segments: list[slice]

    @classmethod
    def from_grid(cls, grid: ModelGrid) -> PreparedGrid:
        ranges = [(section.start, section.stop) for section in grid.sections]
        return cls(grid, grid.node_labels(), continuum_segments(grid.wavelength, ranges))


def fit_batch(
    prepared: PreparedGrid,
    wavelengths: list[np.ndarray],
    fluxes: list[np.ndarray],
    ivars: list[np.ndarray],
    *,
    continuum_order: int,
) -> list[dict[str, float | int]]:
    """Fit B spectra; one result dict per spectrum.

    Each spectrum is taken onto the model's pixels (exactly, when it is on them already, as
    apStar spectra are on an APOGEE grid); pixels outside every section of the grid take no
    part.
    """
    grid = prepared.grid
    target = grid.wavelength
    flux = np.empty((len(fluxes), grid.npix))
    ivar = np.empty_like(flux)
    for i, (w, f, v) in enumerate(zip(wavelengths, fluxes, ivars, strict=True)):
        on_model = _on_model_pixels(w, target)
        if on_model is not None:
            flux[i], ivar[i] = f[on_model], v[on_model]
        else:
            flux[i], ivar[i] = resample(w, f, v, target)

    segments = prepared.segments
    y, w = normalise(target, flux, ivar, order=continuum_order, segments=segments)
    best = _best_nodes(prepared, y, w)
    for _ in range(CONTINUUM_ROUNDS):
        models = np.vstack([grid.node_spectra(node, node + 1) for node in best])
        y, w = normalise(target, flux, ivar, order=continuum_order, model=models, segments=segments)
        best = _best_nodes(prepared, y, w)

    starts = prepared.node_labels[best]
    designs = segment_designs(target, continuum_order, segments)
    results = []
    for i in range(len(flux)):
        problem = _ContinuumFit(flux[i], ivar[i], designs)
        fit, converged = _refine(grid, problem, starts[i])
        results.append(_result(grid, problem, fit, converged))
    return results


def _on_model_pixels(wavelength: np.ndarray, target: np.ndarray) -> np.ndarray | None:
    """Indices of the spectrum's pixels at each model pixel's wavelength, when every model
    pixel is one of them (to 1e-9 relative); None when the spectrum must be resampled."""
    if wavelength.size < target.size:
        return None
    index = np.clip(np.searchsorted(wavelength, target), 0, wavelength.size - 1)
    below = np.clip(index - 1, 0, wavelength.size - 1)
    nearest = np.where(
        np.abs(wavelength[below] - target) < np.abs(wavelength[index] - target), below, index
    )
    if np.allclose(wavelength[nearest], target, rtol=1e-9, atol=0):
        return nearest
    return None


def _best_nodes(prepared: PreparedGrid, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Index of the node with the least chi-square for each spectrum: chi2 = sum(w y^2)
    - 2 (w y) M^T + w (M^2)^T, as matrix products for the whole batch, block by block of
    nodes. Nodes the grid marks invalid are never chosen."""
    grid = prepared.grid
    wy, base = w * y, (w * y * y).sum(axis=1)
    best = np.zeros(len(y), dtype=int)
    least = np.full(len(y), np.inf)
    for start, stop in grid.node_blocks():
        nodes = grid.node_spectra(start, stop)
        chi2 = base[:, None] - 2.0 * wy @ nodes.T + w @ (nodes * nodes).T
        if grid.invalid_nodes is not None:
            chi2[:, grid.invalid_nodes[start:stop]] = np.inf
        here = np.argmin(chi2, axis=1)
        value = chi2[np.arange(len(y)), here]
        better = value < least
        best[better], least[better] = start + here[better], value[better]
    return best


@dataclass
class _Evaluation:
    """The model at one label point, scaled to the observation by its best continuum."""

    labels: np.ndarray
    model: np.ndarray
    gradient: np.ndarray
    continuum: np.ndarray
    chi2: float


class _ContinuumFit:
    """One spectrum against the interpolated grid, the continuum fitted anew to every model
    as FERRE does (a polynomial per segment through flux / model, weighted by ivar model^2),
    so that no line of the model can bias it."""

    def __init__(
        self, flux: np.ndarray, ivar: np.ndarray, designs: list[tuple[slice, np.ndarray]]
    ) -> None:
        self.flux, self.ivar, self.designs = flux, ivar, designs

    def continuum(self, model: np.ndarray) -> np.ndarray:
        continuum = np.zeros_like(model)
        safe = np.where(model > 0, model, 1.0)
        for pixels, design in self.designs:
            m = safe[pixels]
            weights = np.where(model[pixels] > 0, self.ivar[pixels], 0.0) * m * m
            coefficients = weighted_fit(design, (self.flux[pixels] / m)[None], weights[None])
            continuum[pixels] = coefficients[0] @ design.T
        return continuum

    def evaluate(self, grid: ModelGrid, labels: np.ndarray) -> _Evaluation:
        model, gradient = grid.interpolate(labels)
        continuum = self.continuum(model)
        residual = self.flux - continuum * model
        return _Evaluation(
            labels, model, gradient, continuum, float(np.sum(self.ivar * residual**2))
        )

    def covariance(self, fit: _Evaluation) -> np.ndarray:
        """Of the labels, with every continuum coefficient free too (marginalised over them):
        the inverse of J^T W J for the labels and the coefficients together."""
        columns = [fit.continuum[:, None] * fit.gradient]
        for pixels, design in self.designs:
            block = np.zeros((fit.model.size, design.shape[1]))
            block[pixels] = fit.model[pixels, None] * design
            columns.append(block)
        jacobian = np.hstack(columns)
        curvature = jacobian.T @ (jacobian * self.ivar[:, None])
        dims = fit.gradient.shape[1]
        try:
            return np.linalg.inv(curvature)[:dims, :dims]
        except np.linalg.LinAlgError:
            return np.full((dims, dims), np.nan)


def _refine(grid: ModelGrid, problem: _ContinuumFit, start: np.ndarray) -> tuple[_Evaluation, bool]:
    """Levenberg-Marquardt over the interpolated grid, within its limits, with the continuum
    refitted at every step."""
    lower, upper = grid.llimits, grid.upper
    fit = problem.evaluate(grid, np.clip(np.asarray(start, dtype=float), lower, upper))
    damping = 1e-3
    converged = False
    for _ in range(MAX_ITERATIONS):
        jacobian = fit.continuum[:, None] * fit.gradient
        weighted = jacobian * problem.ivar[:, None]
        curvature = jacobian.T @ weighted
        slope = weighted.T @ (problem.flux - fit.continuum * fit.model)
        scaled = curvature + damping * np.diag(np.diag(curvature) + 1e-12)
        try:
            step = np.linalg.solve(scaled, slope)
        except np.linalg.LinAlgError:
            break
        trial = problem.evaluate(grid, np.clip(fit.labels + step, lower, upper))
        if trial.chi2 <= fit.chi2:
            small = np.all(np.abs(trial.labels - fit.labels) < 1e-4 * grid.steps)
            fit = trial
            damping = max(damping / 10.0, 1e-9)
            if small:
                converged = True
                break
        else:
            damping *= 10.0
            if damping > 1e9:
                converged = True  # no step lowers chi-square: we are at the minimum
                break
    return fit, converged


def _result(
    grid: ModelGrid, problem: _ContinuumFit, fit: _Evaluation, converged: bool
) -> dict[str, float | int]:
    labels, flux, ivar = fit.labels, problem.flux, problem.ivar
    used = (ivar > 0) & (fit.continuum * fit.model > 0)
    n_pixels = int(used.sum())
    chi2 = fit.chi2
    covariance = problem.covariance(fit)
    snr = float(np.median(flux[ivar > 0] * np.sqrt(ivar[ivar > 0]))) if np.any(ivar > 0) else 0.0
    tolerance = 1e-3 * grid.steps
    flags = 0
    if np.any(labels <= grid.llimits + tolerance) or np.any(labels >= grid.upper - tolerance):
        flags |= FLAG_GRID_EDGE
    if not converged:
        flags |= FLAG_NOT_CONVERGED
    if snr < LOW_SNR:
        flags |= FLAG_LOW_SNR
    if grid.touches_invalid(labels):
        flags |= FLAG_INVALID_NODE
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
