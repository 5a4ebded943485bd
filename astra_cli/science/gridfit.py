"""Fitting spectra with a grid of models, as FERRE does.

For a whole chunk at once: continuum-normalise every spectrum per segment (a grid section, cut
at APOGEE's chip gaps), find the nodes of least chi-square as matrix products for the whole
chunk, re-derive each continuum against its best node and look again; then, for each spectrum
and from each of its best few nodes, minimise chi-square over the interpolated grid by
Levenberg-Marquardt with the interpolation's exact derivatives, the continuum refitted to every
trial model (FERRE's CONT = -1: a polynomial through flux / model). The start of least
chi-square wins.

The search: a grid of up to FULL_SEARCH_NODES nodes is searched whole; a larger one through a
coarse lattice of about COARSE_NODES of its nodes (every k-th node in each label), so that the
cost per spectrum does not grow with the grid and only a small, private copy of the coarse
nodes is made; the refinement then walks the full grid from the best coarse nodes (FERRE's
NRUNS idea: several starts).

Uncertainties come from the curvature of chi-square at the minimum, marginalised over the
continuum coefficients, and scaled up by sqrt(reduced chi-square) when the fit is worse than
the noise says (the model then does not describe the spectrum to its noise).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from astra_cli.io.fitfiles import FittedSpectrum
from astra_cli.science.continuum import (
    continuum_segments,
    design_products,
    normalise,
    segment_designs,
    weighted_fit,
)
from astra_cli.science.grids import ModelGrid
from astra_cli.science.wavelength import catmull_rom_weights, resample

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
CONVERGED_STEP = 1e-3
"""A step smaller than this part of a node spacing in every label ends the refinement (0.2 K
on a 200 K grid: far below any fit's uncertainty)."""
CONTINUUM_ROUNDS = 1
FULL_SEARCH_NODES = 4000
"""Grids with up to this many nodes are searched node by node: cheaper than the refinement."""
COARSE_NODES = 1000
"""About how many nodes the coarse search of a larger grid compares each spectrum with."""
SEARCH_MEMORY_BYTES = 128 * 2**20
"""The most memory a model keeps for a full search's nodes (their spectra and squares in
float32; the demo's 891 nodes of 8,575 pixels take 61 MB): a bigger grid searched whole makes
them again at each search, block by block. A coarse lattice is always kept: about
COARSE_NODES nodes, 69 MB at 8,575 pixels."""
STARTS_FULL, STARTS_COARSE = 1, 3
"""Refinements per spectrum by default: from the best node of a full search (the best of all
nodes), from the best 3 of a coarse one (the best coarse node's basin may not hold the
minimum)."""


@dataclass(frozen=True)
class FitSettings:
    continuum_order: int = 4
    interpolation: str = "linear"
    starts: int = 0
    """Refinements per spectrum, from its best nodes; 0 for STARTS_FULL or STARTS_COARSE."""
    fixed: dict[int, float] = field(default_factory=dict)
    """Label index -> value it is held at."""
    weights: np.ndarray | None = None
    """Per model pixel, multiplying the inverse variance (FERRE's FILTERFILE)."""


@dataclass(frozen=True)
class SearchBlock:
    """Nodes the search compares spectra with: their spectra in float32, the squares of those
    (chi-square's model term), and their storage indices."""

    spectra: np.ndarray
    squares: np.ndarray
    indices: np.ndarray

    @classmethod
    def of(cls, spectra: np.ndarray, indices: np.ndarray) -> SearchBlock:
        return cls(spectra, spectra * spectra, indices)


@dataclass(frozen=True)
class PreparedGrid:
    """A grid ready for fitting: its model, the label values of its nodes, the segments of
    model pixels that each get their own continuum, and the nodes the search compares every
    spectrum with. Of the node spectra it keeps only the searched ones, as SearchBlock, and
    only up to SEARCH_MEMORY_BYTES of them: the coarse nodes of a large grid, or every node of
    a small one. Making that block at each search instead, from the grid's stored values,
    costs every `fit_batch` call the same, whatever its number of spectra (about 30 ms for
    the demo's 891 nodes), which made small chunks slow."""

    grid: ModelGrid
    node_labels: np.ndarray
    segments: list[slice]
    search_nodes: np.ndarray | None = None
    """Storage indices of the coarse lattice; None when every node is searched."""
    search_block: SearchBlock | None = None
    """The searched nodes, kept; None when every node is searched and they take more than
    SEARCH_MEMORY_BYTES (each search then makes them block by block)."""
    search_spacing: np.ndarray | None = None
    """Label distance between neighbouring searched nodes (the steps, or the coarse ones)."""

    @classmethod
    def from_grid(cls, grid: ModelGrid) -> PreparedGrid:
        ranges = [(section.start, section.stop) for section in grid.sections]
        segments = continuum_segments(grid.wavelength, ranges)
        labels = grid.node_labels()
        if grid.n_nodes <= FULL_SEARCH_NODES:
            block = None
            if 2 * grid.n_nodes * grid.npix * np.dtype(np.float32).itemsize <= SEARCH_MEMORY_BYTES:
                spectra = grid.node_spectra(0, grid.n_nodes, np.float32)
                block = SearchBlock.of(spectra, np.arange(grid.n_nodes))
            return cls(grid, labels, segments, search_block=block, search_spacing=grid.steps)
        nodes, strides = coarse_lattice(grid.shape, COARSE_NODES)
        if grid.invalid_nodes is not None:
            nodes = nodes[~grid.invalid_nodes[nodes]]
        spectra = np.vstack([grid.node_spectra(n, n + 1, np.float32) for n in nodes])
        return cls(
            grid,
            labels,
            segments,
            nodes,
            SearchBlock.of(spectra, nodes),
            grid.steps * np.array(strides),
        )

    def describe_search(self, starts: int = 0) -> str:
        """What the search does with this grid, for `astra plan`."""
        starts = starts or (STARTS_FULL if self.search_nodes is None else STARTS_COARSE)
        refine = (
            f"then Levenberg-Marquardt from the best {starts}"
            if starts > 1
            else ("then Levenberg-Marquardt from the best")
        )
        if self.search_nodes is None:
            return f"chi-square against all {self.grid.n_nodes} nodes, {refine}"
        return (
            f"chi-square against a coarse lattice of {len(self.search_nodes)} of the grid's "
            f"{self.grid.n_nodes} nodes, {refine}"
        )


def coarse_lattice(shape: tuple[int, ...], target: int) -> tuple[np.ndarray, list[int]]:
    """Storage indices of every k-th node in each label (the first and last always), with the
    strides as even as possible and about `target` nodes in all; and the strides."""
    strides = [1] * len(shape)

    def count() -> int:
        return math.prod(len(_every(n, k)) for n, k in zip(shape, strides, strict=True))

    while count() > target:
        # Coarsen the label whose nodes are then still the densest.
        candidates = [d for d, n in enumerate(shape) if len(_every(n, strides[d])) > 2]
        if not candidates:
            break
        d = max(candidates, key=lambda d: len(_every(shape[d], strides[d])))
        strides[d] += 1
    axes = [_every(n, k) for n, k in zip(shape, strides, strict=True)]
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.ravel_multi_index(tuple(axis.ravel() for axis in mesh), shape), strides


def _every(n: int, k: int) -> np.ndarray:
    return np.unique(np.append(np.arange(0, n, k), n - 1))


def fit_batch(
    prepared: PreparedGrid,
    wavelengths: list[np.ndarray],
    fluxes: list[np.ndarray],
    ivars: list[np.ndarray],
    *,
    continuum_order: int = 4,
    settings: FitSettings | None = None,
    spectra: bool = False,
    covariance: bool = False,
) -> list[dict[str, Any]]:
    """Fit B spectra; one result dict per spectrum, with the fit itself as a FittedSpectrum in
    `spectrum_file` when `spectra` is asked for, and the labels' covariances
    (`cov_<label>_<label>`, every pair) when `covariance` is.

    Each spectrum is taken onto the model's pixels (exactly, when it is on them already, as
    apStar spectra are on an APOGEE grid); pixels outside every section of the grid take no
    part.
    """
    settings = settings or FitSettings(continuum_order=continuum_order)
    grid = prepared.grid
    target = grid.wavelength
    flux = np.empty((len(fluxes), grid.npix))
    ivar = np.empty_like(flux)
    maps: list[_PixelMap | None] = []
    for i, (w, f, v) in enumerate(zip(wavelengths, fluxes, ivars, strict=True)):
        on_model = _on_model_pixels(w, target)
        if on_model is not None:
            flux[i], ivar[i] = f[on_model], v[on_model]
            maps.append(None)
        else:
            # The search compares nodes with the spectrum resampled onto the model's pixels;
            # the refinement fits the model taken to the spectrum's own pixels instead, which
            # neither smooths the lines nor correlates the noise.
            flux[i], ivar[i] = resample(w, f, v, target)
            maps.append(_PixelMap(w, grid))
    if settings.weights is not None:
        ivar *= settings.weights

    order, segments = settings.continuum_order, prepared.segments
    y, w = normalise(target, flux, ivar, order=order, segments=segments)
    candidates = _best_nodes(prepared, y, w, 1)
    for _ in range(CONTINUUM_ROUNDS):
        models = np.vstack([grid.node_spectra(node, node + 1) for node in candidates[:, 0]])
        y, w = normalise(target, flux, ivar, order=order, model=models, segments=segments)
        starts = settings.starts or (
            STARTS_FULL if prepared.search_nodes is None else STARTS_COARSE
        )
        candidates = _best_nodes(prepared, y, w, starts)

    designs = _designs(target, order, segments)
    free = [d for d in range(len(grid.shape)) if d not in settings.fixed]
    spacing = prepared.search_spacing if prepared.search_spacing is not None else grid.steps
    results = []
    for i in range(len(flux)):
        pixel_map = maps[i]
        if pixel_map is None:
            problem = _ContinuumFit(flux[i], ivar[i], designs, settings.interpolation)
        else:
            observed_ivar = ivars[i][pixel_map.observed]
            if settings.weights is not None:
                observed_ivar = observed_ivar * pixel_map.apply(settings.weights)
            problem = _ContinuumFit(
                fluxes[i][pixel_map.observed],
                observed_ivar,
                _designs(pixel_map.wavelength, order, pixel_map.segments()),
                settings.interpolation,
                pixel_map,
            )
        best: tuple[_Evaluation, bool] | None = None
        reached: list[np.ndarray] = []
        for node in candidates[i]:
            start = prepared.node_labels[node].copy()
            for d, value in settings.fixed.items():
                start[d] = value
            if any(np.all(np.abs(end - start) <= spacing) for end in reached):
                continue  # a refinement already ended next to this start: its basin is known
            found = _refine(grid, problem, start, free)
            reached.append(found[0].labels)
            if best is None or found[0].chi2 < best[0].chi2:
                best = found
        assert best is not None
        result: dict[str, Any] = _result(grid, problem, *best, free, covariance)
        if spectra:
            wavelength = target if pixel_map is None else pixel_map.wavelength
            result["spectrum_file"] = _fitted_spectrum(wavelength, problem, best[0])
        results.append(result)
    return results


def _fitted_spectrum(
    wavelength: np.ndarray, problem: _ContinuumFit, fit: _Evaluation
) -> FittedSpectrum:
    """The fit on the pixels that have a continuum, normalised by it."""
    kept = fit.continuum > 0
    continuum = fit.continuum[kept]
    ivar = problem.ivar[kept]
    with np.errstate(divide="ignore"):
        error = np.where(ivar > 0, 1.0 / np.sqrt(np.where(ivar > 0, ivar, 1.0)), np.inf)
    return FittedSpectrum(
        wavelength=wavelength[kept],
        flux=problem.flux[kept] / continuum,
        error=error / continuum,
        continuum=continuum,
        model=fit.model[kept],
    )


def _designs(
    wavelength: np.ndarray, order: int, segments: list[slice]
) -> list[tuple[slice, np.ndarray, np.ndarray]]:
    return [
        (pixels, design, design_products(design))
        for pixels, design in segment_designs(wavelength, order, segments)
    ]


class _PixelMap:
    """The model taken to a spectrum's own pixels (at their rest wavelengths): each observed
    pixel inside a section of the grid as a Catmull-Rom combination of 4 model pixels of that
    section."""

    def __init__(self, wavelength: np.ndarray, grid: ModelGrid) -> None:
        observed, nodes, weights, sections = [], [], [], []
        for index, section in enumerate(grid.sections):
            model = grid.wavelength[section.start : section.stop]
            here = np.flatnonzero((wavelength >= model[0]) & (wavelength <= model[-1]))
            if here.size == 0:
                continue
            section_weights, _, section_nodes = catmull_rom_weights(model, wavelength[here])
            observed.append(here)
            nodes.append(section_nodes + section.start)
            weights.append(section_weights)
            sections.append(np.full(here.size, index))
        self.observed = np.concatenate(observed) if observed else np.zeros(0, dtype=int)
        self.nodes = np.concatenate(nodes) if nodes else np.zeros((0, 4), dtype=int)
        self.weights = np.concatenate(weights) if weights else np.zeros((0, 4))
        self.section = np.concatenate(sections) if sections else np.zeros(0, dtype=int)
        self.wavelength = wavelength[self.observed]

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Model-pixel values (NPIX) or columns (NPIX, D) at the observed pixels."""
        if values.ndim == 1:
            return np.asarray((self.weights * values[self.nodes]).sum(axis=1))
        return np.einsum("nk,nkd->nd", self.weights, values[self.nodes])

    def segments(self) -> list[slice]:
        """The observed pixels' continuum segments: each section cut at the chip gaps."""
        changes = np.flatnonzero(np.diff(self.section)) + 1
        bounds = [0, *changes.tolist(), self.section.size]
        ranges = [(a, b) for a, b in itertools.pairwise(bounds) if b > a]
        return continuum_segments(self.wavelength, ranges)


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


def _best_nodes(prepared: PreparedGrid, y: np.ndarray, w: np.ndarray, count: int) -> np.ndarray:
    """Storage indices (B, count) of each spectrum's nodes of least chi-square, best first:
    chi2 = sum(w y^2) - 2 (w y) M^T + w (M^2)^T, as matrix products for the whole batch, block
    by block of the searched nodes, in float32 as the grids are stored (the search only ranks
    nodes; the refinement computes chi-square in full precision). Nodes the grid marks invalid
    are never chosen."""
    grid = prepared.grid
    wy = (w * y).astype(np.float32)
    w32 = w.astype(np.float32)
    base = (w * y * y).sum(axis=1)
    rows = np.arange(len(y))[:, None]
    best = np.zeros((len(y), 0), dtype=int)
    least = np.zeros((len(y), 0))
    for block in _search_blocks(prepared):
        chi2 = base[:, None] - 2.0 * (wy @ block.spectra.T) + w32 @ block.squares.T
        if grid.invalid_nodes is not None:
            chi2[:, grid.invalid_nodes[block.indices]] = np.inf
        merged_chi2 = np.hstack([least, chi2])
        merged = np.hstack([best, np.broadcast_to(block.indices, chi2.shape)])
        keep = np.argsort(merged_chi2, axis=1, kind="stable")[:, :count]
        best, least = merged[rows, keep], merged_chi2[rows, keep]
    return best


def _search_blocks(prepared: PreparedGrid) -> Iterator[SearchBlock]:
    """The searched nodes: the kept block, or every node made block by block, one block in
    memory at a time."""
    if prepared.search_block is not None:
        yield prepared.search_block
        return
    grid = prepared.grid
    for start, stop in grid.node_blocks():
        yield SearchBlock.of(grid.node_spectra(start, stop, np.float32), np.arange(start, stop))


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
        self,
        flux: np.ndarray,
        ivar: np.ndarray,
        designs: list[tuple[slice, np.ndarray, np.ndarray]],
        interpolation: str,
        pixel_map: _PixelMap | None = None,
    ) -> None:
        in_segment = np.zeros(flux.size, dtype=bool)
        for pixels, _, _ in designs:
            in_segment[pixels] = True
        # A pixel outside every continuum segment (in a chip gap, or beyond a chip's edge once
        # moved to the rest frame) has no continuum and takes no part.
        self.flux, self.ivar, self.designs = flux, np.where(in_segment, ivar, 0.0), designs
        self.interpolation = interpolation
        self.pixel_map = pixel_map

    def continuum(self, model: np.ndarray) -> np.ndarray:
        continuum = np.zeros_like(model)
        safe = np.where(model > 0, model, 1.0)
        for pixels, design, products in self.designs:
            m = safe[pixels]
            weights = np.where(model[pixels] > 0, self.ivar[pixels], 0.0) * m * m
            values = (self.flux[pixels] / m)[None]
            coefficients = weighted_fit(design, values, weights[None], products)
            continuum[pixels] = coefficients[0] @ design.T
        return continuum

    def evaluate(self, grid: ModelGrid, labels: np.ndarray) -> _Evaluation:
        model, gradient = grid.interpolate(labels, self.interpolation)
        if self.pixel_map is not None:
            model, gradient = self.pixel_map.apply(model), self.pixel_map.apply(gradient)
        continuum = self.continuum(model)
        residual = self.flux - continuum * model
        return _Evaluation(
            labels, model, gradient, continuum, float(np.sum(self.ivar * residual**2))
        )

    def covariance(self, fit: _Evaluation, free: list[int]) -> np.ndarray:
        """Of the free labels, with every continuum coefficient free too (marginalised over
        them): the inverse of J^T W J for the labels and the coefficients together."""
        columns = [fit.continuum[:, None] * fit.gradient[:, free]]
        for pixels, design, _ in self.designs:
            if not np.any(self.ivar[pixels] > 0):
                continue  # no data there (weights of 0): its continuum is not a parameter
            block = np.zeros((fit.model.size, design.shape[1]))
            block[pixels] = fit.model[pixels, None] * design
            columns.append(block)
        jacobian = np.hstack(columns)
        curvature = jacobian.T @ (jacobian * self.ivar[:, None])
        dims = len(free)
        try:
            return np.linalg.inv(curvature)[:dims, :dims]
        except np.linalg.LinAlgError:
            return np.full((dims, dims), np.nan)


def _refine(
    grid: ModelGrid, problem: _ContinuumFit, start: np.ndarray, free: list[int]
) -> tuple[_Evaluation, bool]:
    """Levenberg-Marquardt over the free labels of the interpolated grid, within its limits,
    with the continuum refitted at every step."""
    lower, upper = grid.llimits, grid.upper
    fit = problem.evaluate(grid, np.clip(np.asarray(start, dtype=float), lower, upper))
    if not free:
        return fit, True
    damping = 1e-3
    converged = False
    for _ in range(MAX_ITERATIONS):
        jacobian = fit.continuum[:, None] * fit.gradient[:, free]
        weighted = jacobian * problem.ivar[:, None]
        curvature = jacobian.T @ weighted
        slope = weighted.T @ (problem.flux - fit.continuum * fit.model)
        scaled = curvature + damping * np.diag(np.diag(curvature) + 1e-12)
        try:
            step = np.linalg.solve(scaled, slope)
        except np.linalg.LinAlgError:
            break
        labels = fit.labels.copy()
        labels[free] += step
        trial = problem.evaluate(grid, np.clip(labels, lower, upper))
        if trial.chi2 <= fit.chi2:
            small = np.all(np.abs(trial.labels - fit.labels) < CONVERGED_STEP * grid.steps)
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
    grid: ModelGrid,
    problem: _ContinuumFit,
    fit: _Evaluation,
    converged: bool,
    free: list[int],
    with_covariance: bool = False,
) -> dict[str, float | int]:
    labels, flux, ivar = fit.labels, problem.flux, problem.ivar
    used = (ivar > 0) & (fit.continuum * fit.model > 0)
    n_pixels = int(used.sum())
    chi2 = fit.chi2
    rchi2 = chi2 / max(n_pixels - len(free), 1)
    covariance = problem.covariance(fit, free) * max(rchi2, 1.0)
    snr = float(np.median(flux[ivar > 0] * np.sqrt(ivar[ivar > 0]))) if np.any(ivar > 0) else 0.0
    tolerance = 1e-3 * grid.steps
    at_edge = (labels <= grid.llimits + tolerance) | (labels >= grid.upper - tolerance)
    flags = 0
    if np.any(at_edge[free]):
        flags |= FLAG_GRID_EDGE
    if not converged:
        flags |= FLAG_NOT_CONVERGED
    if snr < LOW_SNR:
        flags |= FLAG_LOW_SNR
    if grid.touches_invalid(labels):
        flags |= FLAG_INVALID_NODE
    errors = np.zeros(len(labels))
    errors[free] = np.sqrt(np.clip(np.diag(covariance), 0, None))
    result: dict[str, float | int] = {}
    for name, value, error in zip(grid.labels, labels, errors, strict=True):
        result[name] = float(value)
        result[f"e_{name}"] = float(error)
    if with_covariance:
        full = np.zeros((len(labels), len(labels)))  # fixed labels: no covariance
        full[np.ix_(free, free)] = covariance
        for a, b in itertools.combinations(range(len(labels)), 2):
            result[f"cov_{grid.labels[a]}_{grid.labels[b]}"] = float(full[a, b])
    result.update(chi2=chi2, rchi2=rchi2, n_pixels=n_pixels, snr=snr, flags=flags)
    return result
