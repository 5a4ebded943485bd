"""Continuum normalisation: a polynomial per chip, fitted to the pixels that look like continuum.

Absorption lines pull a plain fit down, so pixels more than a few sigma below the fit are
rejected and the fit is repeated; masked pixels and pixels with little signal never take part.
With a model spectrum at hand, `normalise_with_model` fits the continuum to flux / model
instead, which no line can bias.

Everything works on a batch: flux and ivar of shape (B, P) on one wavelength grid, so a chunk of
spectra is normalised with a handful of matrix operations.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from astra_cli.science.wavelength import CHIPS, chip_index

DEFAULT_ORDER = 4
LOW_REJECT_SIGMA = 1.0
"""Pixels this many noise sigmas below the fit are taken for absorption and rejected."""
HIGH_REJECT_SIGMA = 3.0
"""Pixels this far above it are taken for cosmic rays or bad sky subtraction."""
ITERATIONS = 5
MIN_SNR = 3.0
"""Pixels with lower S/N never enter the fit."""


def continuum_segments(
    wavelength: np.ndarray, ranges: Sequence[tuple[int, int]] | None = None
) -> list[slice]:
    """The pieces of a spectrum that each get their own continuum: each range of pixels (a
    grid's wavelength sections; the whole spectrum by default) cut at the gaps between
    APOGEE's chips. A range on none of the chips is one piece of its own."""
    chips = chip_index(wavelength)
    segments = []
    for start, stop in ranges or [(0, len(wavelength))]:
        on = chips[start:stop]
        if not np.any(on >= 0):
            segments.append(slice(start, stop))
            continue
        for chip in range(len(CHIPS)):
            found = np.flatnonzero(on == chip)
            if found.size:
                segments.append(slice(start + found[0], start + found[-1] + 1))
    return segments


def fit_continuum(
    wavelength: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
    *,
    order: int = DEFAULT_ORDER,
    model: np.ndarray | None = None,
    segments: Sequence[slice] | None = None,
) -> np.ndarray:
    """The continuum of each spectrum (B, P) in each segment (by default, each chip); 0
    elsewhere.

    With `model` (B, P) the polynomial is fitted to flux / model, weighted by ivar * model**2,
    without rejection of absorption (the model accounts for it).
    """
    flux = np.atleast_2d(flux)
    ivar = np.atleast_2d(ivar)
    continuum = np.zeros(flux.shape)
    pieces = continuum_segments(wavelength) if segments is None else segments
    for pixels, design in segment_designs(wavelength, order, pieces):
        f, w = flux[:, pixels], ivar[:, pixels]
        if model is not None:
            m = np.atleast_2d(model)[:, pixels]
            coefficients = weighted_fit(design, f / np.where(m > 0, m, 1.0), w * m**2)
            continuum[:, pixels] = coefficients @ design.T
            continue
        root_w = np.sqrt(np.clip(w, 0.0, None))
        usable = (w > 0) & (f * root_w > MIN_SNR)
        weight = np.where(usable, w, 0.0)
        for _ in range(ITERATIONS):
            pull = (f - weighted_fit(design, f, weight) @ design.T) * root_w  # in noise sigmas
            keep = usable & (pull > -LOW_REJECT_SIGMA) & (pull < HIGH_REJECT_SIGMA)
            weight = np.where(keep, w, 0.0)
        continuum[:, pixels] = weighted_fit(design, f, weight) @ design.T
    return continuum


def segment_designs(
    wavelength: np.ndarray, order: int, segments: Sequence[slice]
) -> list[tuple[slice, np.ndarray]]:
    """Per segment: its pixels and the Legendre design matrix over them."""
    designs = []
    for pixels in segments:
        x = wavelength[pixels]
        if x.size <= order:
            continue
        x = 2.0 * (x - x[0]) / (x[-1] - x[0]) - 1.0
        designs.append((pixels, np.polynomial.legendre.legvander(x, order)))
    return designs


def normalise(
    wavelength: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
    *,
    order: int = DEFAULT_ORDER,
    model: np.ndarray | None = None,
    segments: Sequence[slice] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Flux / continuum and its inverse variance (B, P); pixels outside every segment get
    ivar 0."""
    continuum = fit_continuum(wavelength, flux, ivar, order=order, model=model, segments=segments)
    usable = continuum > 0
    inverse = np.divide(1.0, continuum, out=np.zeros_like(continuum), where=usable)
    return flux * inverse, np.where(usable, ivar * continuum**2, 0.0)


def design_products(design: np.ndarray) -> np.ndarray:
    """Each pixel's outer product of its design row, (P, K*K): what `weighted_fit` sums with
    the weights; worth keeping where one design is fitted many times."""
    k = design.shape[1]
    return (design[:, :, None] * design[:, None, :]).reshape(len(design), k * k)


def weighted_fit(
    design: np.ndarray,
    values: np.ndarray,
    weights: np.ndarray,
    products: np.ndarray | None = None,
) -> np.ndarray:
    """Least-squares coefficients (B, K) of `design` (P, K) for each row of values (B, P);
    `products` is `design_products(design)`, when at hand."""
    k = design.shape[1]
    outer = design_products(design) if products is None else products
    normal = (weights @ outer).reshape(-1, k, k)  # one matrix product for the whole batch
    rhs = (weights * values) @ design
    # A tiny ridge keeps a chip with almost no usable pixels solvable (its fit is then flat).
    ridge = 1e-12 * np.trace(normal, axis1=1, axis2=2)[:, None, None] + 1e-300
    normal += np.eye(k) * ridge
    return np.linalg.solve(normal, rhs[..., None])[..., 0]
