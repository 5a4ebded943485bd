"""Fitting spectra with a neural-network emulator, The Payne's way (Ting et al. 2019): the
labels, the radial velocity and a continuum per chip at once, by Levenberg-Marquardt with the
network's exact Jacobian.

The model of an observed pixel at wavelength w is C_chip(w) N(labels, w / D(v)): the network's
spectrum N, interpolated at the pixel's rest wavelength (D the Doppler factor), times a
Chebyshev series per chip. The continuum is linear in its coefficients, so for every trial
(labels, v) it is solved exactly (weighted least squares) and the step is taken in the labels
and v alone; the uncertainties come from the full Jacobian (labels, v and every continuum
coefficient), so they include what the continuum's freedom costs.

Starts: a small lattice of network spectra, computed once per worker, is compared with every
spectrum at its first velocity estimate (the cross-correlation with those spectra, unless the
observation carries a v_rad), and the fit starts from the best few.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from astra_cli.science.ccf import Templates, measure
from astra_cli.science.continuum import normalise
from astra_cli.science.networks import Network
from astra_cli.science.wavelength import (
    APSTAR_CDELT1,
    CHIPS,
    SPEED_OF_LIGHT_KMS,
    catmull_rom_weights,
    chip_index,
    doppler_factor,
    resample,
)

FLAG_RANGE_EDGE = 1
"""A label ends at the edge of the network's training range: the star may lie outside it."""
FLAG_NOT_CONVERGED = 2
FLAG_POOR_FIT = 4
"""Reduced chi-square above POOR_FIT: the network does not describe this spectrum."""
POOR_FIT = 30.0
"""Measured (2026-12-01) with the network of normalised dwarf spectra: spectra of the network
itself fit at 1.0; the real spectra beside the project at 3.6 (an F dwarf), 9.0 (a giant, at
the edge of the range), 9.1 (the K dwarf) and 270 (the M giant, 500 K cooler than the range)."""
EDGE = 0.005
"""A scaled label within this of +-0.5 (0.5% of its range) is at the edge."""
MAX_ITERATIONS = 60
CONVERGED_SCALED, CONVERGED_KMS = 1e-4, 0.005
"""Steps below these (0.3 K on a 2,800 K range; 5 m/s) end the fit: far below its errors."""
STARTS = 2
LATTICE_SPACING = 0.2
"""Scaled-label distance between neighbouring starting points (0.8 / 4 in Teff)."""


@dataclass(frozen=True)
class PayneModel:
    """A network ready for fitting: the network, and the lattice of starting points."""

    network: Network
    lattice: np.ndarray
    """Scaled labels (N, L) of the starting points."""
    lattice_spectra: np.ndarray
    templates: Templates
    """The lattice spectra as RV templates, for the first velocity estimate."""
    chip_pixels: tuple[tuple[int, int], ...]
    """Each chip's range of network pixels."""

    @classmethod
    def from_network(cls, network: Network) -> PayneModel:
        lattice = starting_lattice(network)
        labels = (lattice + 0.5) * (network.x_max - network.x_min) + network.x_min
        spectra = network.spectra(labels)
        return cls(network, lattice, spectra, _templates(network, spectra), _chips(network))


def starting_lattice(network: Network) -> np.ndarray:
    """5 x 3 x 3 points over the first three labels (Teff, logg, [Fe/H] in every known
    network), the others at their middle; macroturbulence at 6 km/s."""
    axes = [np.linspace(-0.4, 0.4, n) for n in (5, 3, 3)][: len(network.label_names)]
    points = np.zeros((int(np.prod([len(a) for a in axes])), len(network.label_names)))
    for row, combination in enumerate(itertools.product(*axes)):
        points[row, : len(combination)] = combination
    for d, name in enumerate(network.label_names):
        if name.startswith(("vmacro", "vmac", "vbroad")):
            value = np.clip(6.0, network.x_min[d], network.x_max[d])
            points[:, d] = (value - network.x_min[d]) / (network.x_max[d] - network.x_min[d]) - 0.5
    return points


def _chips(network: Network) -> tuple[tuple[int, int], ...]:
    """Network pixel ranges of APOGEE's chips (or the whole spectrum for another layout)."""
    chips = chip_index(network.wavelength)
    found = []
    for chip in range(len(CHIPS)):
        pixels = np.flatnonzero(chips == chip)
        if pixels.size:
            found.append((int(pixels[0]), int(pixels[-1]) + 1))
    return tuple(found) or ((0, network.npix),)


def _templates(network: Network, spectra: np.ndarray) -> Templates:
    """The lattice spectra normalised and on a log-wavelength grid, for the CCF."""
    ivar = np.full(spectra.shape, 1e4) / np.median(spectra, axis=1, keepdims=True) ** 2
    normalised, weight = normalise(network.wavelength, spectra, ivar)
    logs = np.log10(network.wavelength)
    step = float(np.median(np.diff(logs))) if network.npix > 1 else APSTAR_CDELT1
    target = 10.0 ** (logs[0] + step * np.arange(round((logs[-1] - logs[0]) / step) + 1))
    flux = np.full((len(spectra), target.size), np.nan)
    for i, (row, w) in enumerate(zip(normalised, weight, strict=True)):
        on, on_weight = resample(network.wavelength, row, w, target)
        flux[i] = np.where(on_weight > 0, on, np.nan)
    return Templates(flux, float(logs[0]), step, {})


@dataclass
class _Trial:
    scaled: np.ndarray
    v_rad: float
    model: np.ndarray
    """Network flux at the used pixels' rest wavelengths."""
    jacobian: np.ndarray
    """d model / d (scaled labels, v_rad): (P, L + 1)."""
    continuum: np.ndarray
    coefficients: list[np.ndarray]
    chi2: float


class _Spectrum:
    """One observed spectrum against the model: its usable pixels, chip by chip."""

    def __init__(
        self,
        model: PayneModel,
        wavelength: np.ndarray,
        flux: np.ndarray,
        ivar: np.ndarray,
        continuum_order: int,
    ) -> None:
        self.model = model
        chips = chip_index(wavelength)
        self.chip_of = chips
        usable = (ivar > 0) & np.isfinite(flux) & (chips >= 0)
        self.wavelength, self.flux, self.ivar = wavelength[usable], flux[usable], ivar[usable]
        self.chips = chips[usable]
        self.designs: list[tuple[np.ndarray, np.ndarray]] = []
        for chip in np.unique(self.chips):
            pixels = np.flatnonzero(self.chips == chip)
            if pixels.size <= continuum_order + 1:
                continue
            low, high = CHIPS[chip]
            x = 2.0 * (self.wavelength[pixels] - low) / (high - low) - 1.0
            self.designs.append((pixels, np.polynomial.chebyshev.chebvander(x, continuum_order)))

    def shifted(
        self, columns: np.ndarray, v_rad: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-network-pixel arrays (P_network, K) at the rest wavelengths of the observed
        pixels, by cubic (Catmull-Rom) interpolation between the network's pixels, so that
        chi-square is smooth in v_rad (linear interpolation puts a kink at every whole-pixel
        shift, where a fit stalls); their derivatives by v_rad; and which observed pixels fall
        inside a chip of the network."""
        rest = self.wavelength / doppler_factor(v_rad)
        beta = v_rad / SPEED_OF_LIGHT_KMS
        rest_by_v = -rest / (SPEED_OF_LIGHT_KMS * (1.0 - beta * beta))
        values = np.zeros((rest.size, columns.shape[1]))
        slopes = np.zeros_like(values)
        inside = np.zeros(rest.size, dtype=bool)
        network = self.model.network
        for first, last in self.model.chip_pixels:
            grid = network.wavelength[first:last]
            here = np.flatnonzero((rest >= grid[0]) & (rest <= grid[-1]))
            if here.size == 0:
                continue
            weights, dweights, nodes = catmull_rom_weights(grid, rest[here])
            block = columns[first:last]
            value = np.zeros((here.size, columns.shape[1]))
            slope = np.zeros_like(value)
            contiguous = nodes[-1, 1] - nodes[0, 1] == here.size - 1
            for k in range(4):
                # On one log-lambda grid (apStar) the nodes are consecutive: slices, not gathers.
                first_node = nodes[0, k]
                rows = (
                    block[first_node : first_node + here.size]
                    if contiguous and np.all(nodes[:, k] == first_node + np.arange(here.size))
                    else block[nodes[:, k]]
                )
                value += weights[:, k, None] * rows
                slope += dweights[:, k, None] * rows
            values[here] = value
            slopes[here] = slope * rest_by_v[here, None]
            inside[here] = True
        return values, slopes, inside

    def evaluate(self, scaled: np.ndarray, v_rad: float) -> _Trial:
        network = self.model.network
        labels = (scaled + 0.5) * (network.x_max - network.x_min) + network.x_min
        spectrum, derivatives = network.evaluate(labels)
        derivatives = derivatives * (network.x_max - network.x_min)  # by scaled labels
        values, slopes, inside = self.shifted(np.column_stack([spectrum, derivatives]), v_rad)
        model = values[:, 0]
        jacobian = np.column_stack([values[:, 1:], slopes[:, 0]])
        weight = np.where(inside, self.ivar, 0.0)
        continuum, coefficients = self.continuum(model, weight)
        chi2 = float(np.sum(weight * (self.flux - continuum * model) ** 2))
        return _Trial(scaled, v_rad, model, jacobian, continuum, coefficients, chi2)

    def continuum(
        self, model: np.ndarray, weight: np.ndarray
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """The Chebyshev continuum per chip that best scales `model` to the flux."""
        continuum = np.zeros_like(model)
        coefficients = []
        for pixels, design in self.designs:
            scaled_design = design * model[pixels, None]
            w = weight[pixels]
            normal = scaled_design.T @ (scaled_design * w[:, None])
            normal += np.eye(design.shape[1]) * (1e-12 * np.trace(normal) + 1e-300)
            solution = np.linalg.solve(normal, scaled_design.T @ (w * self.flux[pixels]))
            continuum[pixels] = design @ solution
            coefficients.append(solution)
        return continuum, coefficients

    def weight(self, trial: _Trial) -> np.ndarray:
        return np.where(trial.model != 0, self.ivar, 0.0)


def fit_spectrum(
    model: PayneModel,
    wavelength: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
    *,
    continuum_order: int = 3,
    v_rad: float | None = None,
    starts: int = STARTS,
) -> dict[str, float | int]:
    """Labels, v_rad and their errors for one spectrum (observed frame, any pixels)."""
    observed = _Spectrum(model, wavelength, flux, ivar, continuum_order)
    if observed.wavelength.size == 0 or not observed.designs:
        raise ValueError("no usable pixels on APOGEE's chips")
    first_v = v_rad if v_rad is not None else _first_velocity(model, wavelength, flux, ivar)
    ranked = _rank_lattice(model, observed, first_v)
    best: tuple[_Trial, bool] | None = None
    reached: list[np.ndarray] = []
    varied = np.ptp(model.lattice, axis=0) > 0  # the labels the lattice spans
    for index in ranked[:starts]:
        start = model.lattice[index]
        if any(np.all(np.abs(end - start)[varied] <= LATTICE_SPACING) for end in reached):
            continue  # a refinement already ended in this start's cell of the lattice
        found = _refine(observed, start.copy(), first_v)
        reached.append(found[0].scaled)
        if best is None or found[0].chi2 < best[0].chi2:
            best = found
    assert best is not None
    return _result(model, observed, *best)


def _first_velocity(
    model: PayneModel, wavelength: np.ndarray, flux: np.ndarray, ivar: np.ndarray
) -> float:
    found = measure(model.templates, wavelength, flux, ivar, continuum_order=4)
    return float(found["v_rad"])


def _rank_lattice(model: PayneModel, observed: _Spectrum, v_rad: float) -> np.ndarray:
    """Lattice points by chi-square at the first velocity, each with its best continuum."""
    shifted, _, inside = observed.shifted(model.lattice_spectra.T, v_rad)
    weight = np.where(inside, observed.ivar, 0.0)
    chi2 = np.empty(len(model.lattice))
    for index in range(len(model.lattice)):
        values = shifted[:, index]
        continuum, _ = observed.continuum(values, weight)
        chi2[index] = np.sum(weight * (observed.flux - continuum * values) ** 2)
    return np.argsort(chi2)


def _refine(observed: _Spectrum, scaled: np.ndarray, v_rad: float) -> tuple[_Trial, bool]:
    """Levenberg-Marquardt in (scaled labels, v_rad), the labels kept in the training range."""
    trial = observed.evaluate(scaled, v_rad)
    damping, converged = 1e-3, False
    for _ in range(MAX_ITERATIONS):
        weight = observed.weight(trial)
        jacobian = trial.continuum[:, None] * trial.jacobian
        curvature = jacobian.T @ (jacobian * weight[:, None])
        slope = jacobian.T @ (weight * (observed.flux - trial.continuum * trial.model))
        scaled_curvature = curvature + damping * np.diag(np.diag(curvature) + 1e-12)
        try:
            step = np.linalg.solve(scaled_curvature, slope)
        except np.linalg.LinAlgError:
            break
        labels = np.clip(trial.scaled + step[:-1], -0.5, 0.5)
        candidate = observed.evaluate(labels, trial.v_rad + float(step[-1]))
        if candidate.chi2 <= trial.chi2:
            small = (
                np.all(np.abs(candidate.scaled - trial.scaled) < 1e-5)
                and abs(candidate.v_rad - trial.v_rad) < 1e-3
            )
            trial = candidate
            damping = max(damping / 10.0, 1e-9)
            if small:
                converged = True
                break
        else:
            damping *= 10.0
            if damping > 1e9:
                converged = True
                break
    return trial, converged


def _result(
    model: PayneModel, observed: _Spectrum, trial: _Trial, converged: bool
) -> dict[str, float | int]:
    network = model.network
    weight = observed.weight(trial)
    n_pixels = int(np.count_nonzero(weight))
    parameters = trial.scaled.size + 1
    rchi2 = trial.chi2 / max(n_pixels - parameters, 1)
    columns = [trial.continuum[:, None] * trial.jacobian]
    for (pixels, design), _ in zip(observed.designs, trial.coefficients, strict=True):
        block = np.zeros((observed.flux.size, design.shape[1]))
        block[pixels] = design * trial.model[pixels, None]
        columns.append(block)
    jacobian = np.hstack(columns)
    try:
        covariance = np.linalg.inv(jacobian.T @ (jacobian * weight[:, None]))[
            :parameters, :parameters
        ]
    except np.linalg.LinAlgError:
        covariance = np.full((parameters, parameters), np.nan)
    covariance *= max(rchi2, 1.0)
    errors = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    span = network.x_max - network.x_min
    labels = (trial.scaled + 0.5) * span + network.x_min
    flags = 0
    if np.any(np.abs(trial.scaled) >= 0.5 - EDGE):
        flags |= FLAG_RANGE_EDGE
    if not converged:
        flags |= FLAG_NOT_CONVERGED
    if rchi2 > POOR_FIT:
        flags |= FLAG_POOR_FIT
    result: dict[str, float | int] = {}
    for d, name in enumerate(network.label_names):
        result[name] = float(labels[d])
        result[f"e_{name}"] = float(errors[d] * span[d])
    result.update(
        v_rad=float(trial.v_rad),
        e_v_rad=float(errors[-1]),
        chi2=trial.chi2,
        rchi2=rchi2,
        n_pixels=n_pixels,
        flags=flags,
    )
    return result
