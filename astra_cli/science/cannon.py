"""The Cannon (Ness et al. 2015): a data-driven model in which every pixel of a
continuum-normalised spectrum is a quadratic function of the labels, with its own intrinsic
scatter s^2.

Training fits, for each pixel, the coefficients theta and scatter s^2 that maximise the
likelihood of the training spectra given their labels. Testing finds, for each spectrum, the
labels that minimise chi-square against the model (Levenberg-Marquardt with the model's
analytic Jacobian), for a whole batch at once.

Model file (FITS): HDU0 header `ASTRACNN = 1`, `NLABELS`, `LABEL{i}`, `OFFSET{i}`, `SCALE{i}`
(labels are scaled as (label - offset) / scale), `SYSERR{i}` (the model's systematic error:
rms of fitted - true over training spectra, added in quadrature to every error it reports),
`CONTORD` (continuum order used), `NTRAIN`;
HDU "THETA" (NPIX x NTERMS coefficients, terms ordered 1, l_1..l_D, then l_i*l_j for i <= j),
HDU "S2" (NPIX), HDU "WAVELENGTH" (NPIX, Angstrom).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from astra_cli.io.modelfiles import ModelFileError, file_kind, fits_headers

SELF_TEST_SPECTRA = 100
"""Training spectra refitted to measure the model's systematic error."""
SCATTER_GRID = np.concatenate([[0.0], np.logspace(-7, -1, 31)])
"""Candidate values of each pixel's intrinsic variance s^2; the likelihood picks one."""
MAX_ITERATIONS = 50
FLAG_NOT_CONVERGED = 2


@dataclass(frozen=True)
class CannonModel:
    label_names: tuple[str, ...]
    offsets: np.ndarray
    scales: np.ndarray
    theta: np.ndarray
    """(P, T) coefficients of the quadratic terms."""
    s2: np.ndarray
    wavelength: np.ndarray
    continuum_order: int
    n_train: int
    systematic: np.ndarray | None = None
    """Per label, the rms of (fitted - true) over training spectra: the model's own error,
    added in quadrature to each fit's formal error (which alone is far too small)."""

    @property
    def trained_pixels(self) -> np.ndarray:
        """Pixels where the training set had data (the model is defined)."""
        return np.any(self.theta != 0, axis=1)


@functools.cache
def _quadratic_pairs(dims: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(dims)


@functools.cache
def _derivative_structure(dims: int) -> tuple[np.ndarray, np.ndarray]:
    """d(terms)/d(labels) is affine in the labels: constant (T, D) + sum_k l_k * slope[k]."""
    first, second = _quadratic_pairs(dims)
    terms = 1 + dims + len(first)
    constant = np.zeros((terms, dims))
    constant[1 + np.arange(dims), np.arange(dims)] = 1.0
    slope = np.zeros((dims, terms, dims))
    for term, (i, j) in enumerate(zip(first, second, strict=True)):
        slope[j, 1 + dims + term, i] += 1.0  # d(l_i l_j)/d l_i = l_j
        slope[i, 1 + dims + term, j] += 1.0
    return constant, slope


def vectorize(scaled: np.ndarray) -> np.ndarray:
    """The quadratic terms (B, T) of scaled labels (B, D): 1, l_i, l_i*l_j (i <= j)."""
    rows, dims = scaled.shape
    first, second = _quadratic_pairs(dims)
    quadratic = scaled[:, first] * scaled[:, second]
    return np.hstack([np.ones((rows, 1)), scaled, quadratic])


def vectorize_derivative(scaled: np.ndarray) -> np.ndarray:
    """d(terms)/d(labels): (B, T, D)."""
    constant, slope = _derivative_structure(scaled.shape[1])
    return constant + np.tensordot(scaled, slope, axes=1)


def train(
    labels: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
    *,
    label_names: tuple[str, ...],
    wavelength: np.ndarray,
    continuum_order: int,
    progress: Callable[[int, int], None] | None = None,
) -> CannonModel:
    """Fit theta and s^2 for every pixel from normalised training spectra (N, P).

    Every pixel is fitted once per candidate scatter (SCATTER_GRID), which is where the time
    goes; `progress(done, total)` is called after each."""
    labels = np.asarray(labels, dtype=float)
    offsets = labels.mean(axis=0)
    scales = labels.std(axis=0)
    scales[scales == 0] = 1.0
    design = vectorize((labels - offsets) / scales)
    terms = design.shape[1]
    outer = (design[:, :, None] * design[:, None, :]).reshape(len(design), terms * terms)
    variance = np.where(ivar > 0, 1.0 / np.where(ivar > 0, ivar, 1.0), np.inf)
    best_cost = np.full(flux.shape[1], np.inf)
    theta = np.zeros((flux.shape[1], terms))
    s2 = np.zeros(flux.shape[1])
    for step, scatter in enumerate(SCATTER_GRID, start=1):
        weight = 1.0 / (variance + scatter)  # 0 where there is no data
        normal = (weight.T @ outer).reshape(-1, terms, terms)
        rhs = (weight * flux).T @ design
        usable = np.count_nonzero(weight, axis=0) >= terms
        ridge = 1e-10 * np.trace(normal, axis1=1, axis2=2)[:, None, None] * np.eye(terms)
        solution = np.zeros_like(theta)
        solution[usable] = np.linalg.solve((normal + ridge)[usable], rhs[usable][..., None])[..., 0]
        residual = flux - design @ solution.T
        with np.errstate(divide="ignore"):
            log_weight = np.where(weight > 0, np.log(weight), 0.0)
        cost = np.sum(weight * residual**2, axis=0) - np.sum(log_weight, axis=0)
        better = usable & (cost < best_cost)
        best_cost[better], theta[better], s2[better] = cost[better], solution[better], scatter
        if progress is not None:
            progress(step, len(SCATTER_GRID))
    model = CannonModel(
        tuple(label_names), offsets, scales, theta, s2, np.asarray(wavelength, float),
        int(continuum_order), len(labels),
    )  # fmt: skip
    sample = np.linspace(0, len(labels) - 1, min(len(labels), SELF_TEST_SPECTRA)).astype(int)
    refitted = fit(model, flux[sample], ivar[sample])
    fitted = np.array([[row[name] for name in label_names] for row in refitted])
    systematic = np.sqrt(np.mean((fitted - labels[sample]) ** 2, axis=0))
    return replace(model, systematic=systematic)


def fit(model: CannonModel, flux: np.ndarray, ivar: np.ndarray) -> list[dict[str, float | int]]:
    """Labels of B normalised spectra (B, P), with errors and chi-square.

    The model is linear in its T quadratic terms v(l), so a spectrum's chi-square is
    y'Wy - 2 v'c + v'Av with A = Theta'W Theta and c = Theta'W y: once A and c are projected
    (one pass over the pixels per spectrum), every Levenberg-Marquardt step costs T^2, not P,
    and a batch costs what its spectra cost one at a time however long its slowest one takes.
    """
    flux, ivar = np.atleast_2d(flux), np.atleast_2d(ivar)
    used = model.trained_pixels
    theta = model.theta[used]
    y = flux[:, used]
    inverse_variance = np.where(ivar[:, used] > 0, ivar[:, used], 0.0)
    # 1 / (sigma^2 + s^2), written so that pixels without data get weight 0.
    weight = inverse_variance / (1.0 + inverse_variance * model.s2[used])
    normal, projected = _projections(theta, y, weight)
    dims = len(model.label_names)
    labels = _initial_labels(normal, projected, dims)

    damping = np.full(len(y), 1e-3)
    chi2_offset = np.einsum("bp,bp,bp->b", weight, y, y)
    curvature, slope, chi2 = _normal_equations(normal, projected, chi2_offset, labels)
    converged = np.zeros(len(y), dtype=bool)
    for _ in range(MAX_ITERATIONS):
        active = np.flatnonzero(~converged)
        if active.size == 0:
            break
        diagonal = np.einsum("bdd->bd", curvature[active])
        damped = curvature[active] + damping[active, None, None] * (
            diagonal[:, :, None] + 1e-12
        ) * np.eye(dims)
        step = np.linalg.solve(damped, slope[active][..., None])[..., 0]
        trial = labels[active] + step
        trial_curvature, trial_slope, trial_chi2 = _normal_equations(
            normal[active], projected[active], chi2_offset[active], trial
        )
        accept = trial_chi2 <= chi2[active]
        small = np.all(np.abs(step) < 1e-6, axis=1)
        taken = active[accept]
        labels[taken], chi2[taken] = trial[accept], trial_chi2[accept]
        curvature[taken], slope[taken] = trial_curvature[accept], trial_slope[accept]
        damping[active] = np.where(
            accept, np.maximum(damping[active] / 10, 1e-9), damping[active] * 10
        )
        converged[active] = (accept & small) | (damping[active] > 1e9)

    covariance = np.linalg.pinv(curvature) * np.outer(model.scales, model.scales)
    systematic = model.systematic if model.systematic is not None else np.zeros(len(model.scales))
    physical = labels * model.scales + model.offsets
    residual = y - vectorize(labels) @ theta.T
    chi2 = np.einsum("bp,bp,bp->b", weight, residual, residual)  # exactly, for the record
    n_pixels = np.sum(weight > 0, axis=1)
    results = []
    for b in range(len(y)):
        result: dict[str, float | int] = {}
        for d, name in enumerate(model.label_names):
            result[name] = float(physical[b, d])
            formal = max(covariance[b, d, d], 0.0)
            result[f"e_{name}"] = float(np.sqrt(formal + systematic[d] ** 2))
        result.update(
            chi2=float(chi2[b]),
            rchi2=float(chi2[b] / max(n_pixels[b] - dims, 1)),
            n_pixels=int(n_pixels[b]),
            flags=0 if converged[b] else FLAG_NOT_CONVERGED,
        )
        results.append(result)
    return results


PROJECTION_BLOCK = 32
"""Spectra projected at once: bounds the (block, P, T) temporary to ~20 MB at 8,575 pixels."""


def _projections(
    theta: np.ndarray, y: np.ndarray, weight: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per spectrum, A = Theta'W Theta (B, T, T) and c = Theta'W y (B, T)."""
    terms = theta.shape[1]
    normal = np.empty((len(y), terms, terms))
    for start in range(0, len(y), PROJECTION_BLOCK):
        block = slice(start, start + PROJECTION_BLOCK)
        weighted = weight[block, :, None] * theta  # (b, P, T)
        normal[block] = np.matmul(weighted.transpose(0, 2, 1), theta)
    projected = (weight * y) @ theta
    return normal, projected


def _normal_equations(
    normal: np.ndarray, projected: np.ndarray, chi2_offset: np.ndarray, scaled: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At labels `scaled` (B, D): J'WJ (B, D, D), J'W(y - model) (B, D) and chi-square, all
    from the projections (J = Theta dv/dl)."""
    terms = vectorize(scaled)
    derivative = vectorize_derivative(scaled)  # (B, T, D)
    normal_terms = np.einsum("btu,bu->bt", normal, terms)  # A v
    curvature = np.einsum("btd,btu,bue->bde", derivative, normal, derivative)
    slope = np.einsum("btd,bt->bd", derivative, projected - normal_terms)
    chi2 = chi2_offset - 2 * np.einsum("bt,bt->b", terms, projected)
    chi2 += np.einsum("bt,bt->b", terms, normal_terms)
    return curvature, slope, chi2


def _initial_labels(normal: np.ndarray, projected: np.ndarray, dims: int) -> np.ndarray:
    """A first guess: solve for all the quadratic terms linearly, keep the linear ones."""
    ridge = np.eye(normal.shape[1]) * 1e-9 * np.trace(normal, axis1=1, axis2=2)[:, None, None]
    terms = np.linalg.solve(normal + ridge, projected[..., None])[..., 0]
    return np.clip(terms[:, 1 : 1 + dims], -3.0, 3.0)


def write_cannon(model: CannonModel, path: str | Path) -> None:
    from astropy.io import fits

    primary = fits.PrimaryHDU()
    header = primary.header
    header["ASTRACNN"] = (1, "astra Cannon model format version")
    header["NLABELS"] = len(model.label_names)
    for i, name in enumerate(model.label_names, 1):
        header[f"LABEL{i}"] = name
        header[f"OFFSET{i}"] = float(model.offsets[i - 1])
        header[f"SCALE{i}"] = float(model.scales[i - 1])
        if model.systematic is not None:
            header[f"SYSERR{i}"] = float(model.systematic[i - 1])
    header["CONTORD"] = model.continuum_order
    header["NTRAIN"] = model.n_train
    header["VECTOR"] = "QUADRATIC"
    fits.HDUList([
        primary,
        fits.ImageHDU(model.theta, name="THETA"),
        fits.ImageHDU(model.s2, name="S2"),
        fits.ImageHDU(model.wavelength, name="WAVELENGTH"),
    ]).writeto(path, overwrite=True)  # fmt: skip


def read_cannon(path: str | Path) -> CannonModel:
    from astropy.io import fits

    if file_kind(path) != "fits":
        raise ModelFileError(f"{path} is not a FITS file; Cannon models are FITS files")
    try:
        with fits.open(path, memmap=False) as hdus:
            header = hdus[0].header
            _check_header(header, path)
            count = int(header["NLABELS"])
            model = CannonModel(
                tuple(str(header[f"LABEL{i}"]) for i in range(1, count + 1)),
                np.array([float(header[f"OFFSET{i}"]) for i in range(1, count + 1)]),
                np.array([float(header[f"SCALE{i}"]) for i in range(1, count + 1)]),
                np.asarray(hdus["THETA"].data, dtype=float),
                np.asarray(hdus["S2"].data, dtype=float),
                np.asarray(hdus["WAVELENGTH"].data, dtype=float),
                int(header["CONTORD"]),
                int(header.get("NTRAIN", 0)),
                _optional_array(header, "SYSERR", count),
            )
    except ModelFileError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise ModelFileError(f"cannot read Cannon model {path}: {error}") from None
    problem = _model_problem(model)
    if problem:
        raise ModelFileError(f"Cannon model {path}: {problem}")
    return model


def check_cannon(path: str | Path) -> None:
    """Validation in the invoking process: header, extensions, no truncation, and arrays of
    the right shapes holding finite numbers (the model is small: it is read whole)."""
    if file_kind(path) != "fits":
        raise ModelFileError(f"{path} is not a FITS file; Cannon models are FITS files")
    headers = fits_headers(path, "Cannon model", required=("THETA", "S2", "WAVELENGTH"))
    _check_header(headers[0], path)
    read_cannon(path)


def _model_problem(model: CannonModel) -> str | None:
    """What makes a model unusable, if anything: a fit with it would be meaningless."""
    dims = len(model.label_names)
    terms = 1 + dims + dims * (dims + 1) // 2
    pixels = len(model.wavelength)
    if model.theta.shape != (pixels, terms):
        return (
            f"THETA has shape {model.theta.shape}; {dims} labels and {pixels} pixels need "
            f"{(pixels, terms)}"
        )
    if model.s2.shape != (pixels,):
        return f"S2 has shape {model.s2.shape}, WAVELENGTH {pixels} pixels"
    arrays = {"THETA": model.theta, "S2": model.s2, "WAVELENGTH": model.wavelength}
    arrays |= {"the label offsets": model.offsets, "the label scales": model.scales}
    for name, array in arrays.items():
        if not np.all(np.isfinite(array)):
            return f"{name} holds NaN or infinite values"
    if np.any(model.s2 < 0) or np.any(model.scales <= 0):
        return "S2 must not be negative, nor a label's scale 0 or less"
    if np.any(np.diff(model.wavelength) <= 0):
        return "WAVELENGTH must increase"
    return None


def _optional_array(header: Any, prefix: str, count: int) -> np.ndarray | None:
    keys = [f"{prefix}{i}" for i in range(1, count + 1)]
    return np.array([float(header[key]) for key in keys]) if keys[0] in header else None


def _check_header(header: Any, path: str | Path) -> None:
    if "ASTRACNN" not in header:
        raise ModelFileError(
            f"{path} is not an astra Cannon model (no ASTRACNN keyword); train one with "
            "`astra train cannon`"
        )
