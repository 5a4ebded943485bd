"""A fit over its spectrum: the normalised observed flux and the best-fit model above, the
residuals below, one column of panels per detector chip, pixels the fit left out shaded."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from astra_cli.plots.figures import new_figure

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure

    from astra_cli.io.fitfiles import FittedSpectrum

CHIP_GAP_STEPS = 20
"""A jump in wavelength of more than this many median pixel steps separates two chips."""


def chips(wavelength: np.ndarray) -> list[slice]:
    """The pixel ranges between gaps: APOGEE's three detectors, whatever the resolution."""
    import numpy as np

    if len(wavelength) < 2:
        return [slice(0, len(wavelength))]
    steps = np.diff(wavelength)
    gaps = np.flatnonzero(steps > CHIP_GAP_STEPS * np.median(steps)) + 1
    edges = [0, *gaps.tolist(), len(wavelength)]
    return [slice(start, end) for start, end in itertools.pairwise(edges)]


def fit_figure(spectrum: FittedSpectrum, title: str) -> Figure:
    import numpy as np

    panels = chips(spectrum.wavelength)
    figure = new_figure(4.0 * len(panels) + 1.0, 5.0)
    axes = figure.subplots(
        2, len(panels), squeeze=False, sharey="row", gridspec_kw={"height_ratios": [3, 1]}
    )
    masked = ~np.isfinite(spectrum.error)
    for column, chip in enumerate(panels):
        top, bottom = axes[0][column], axes[1][column]
        wavelength = spectrum.wavelength[chip]
        used = np.where(masked[chip], np.nan, 1.0)
        top.plot(wavelength, spectrum.flux[chip] * used, color="black", lw=0.6, label="observed")
        top.plot(wavelength, spectrum.model[chip], color="tab:red", lw=0.6, label="model")
        residual = (spectrum.flux[chip] - spectrum.model[chip]) * used
        bottom.plot(wavelength, residual, color="black", lw=0.5)
        error = np.where(masked[chip], np.nan, spectrum.error[chip])
        bottom.fill_between(wavelength, -error, error, color="tab:blue", alpha=0.3, lw=0)
        bottom.axhline(0.0, color="tab:red", lw=0.6)
        for axis in (top, bottom):
            _shade(axis, wavelength, masked[chip])
        bottom.set_xlabel("rest wavelength [Å]")
    axes[0][0].set_ylabel("normalised flux")
    axes[1][0].set_ylabel("observed - model")
    axes[0][0].legend(loc="lower left", fontsize="small")
    figure.suptitle(title, fontsize="medium")
    return figure


def _shade(axis: Any, wavelength: np.ndarray, masked: np.ndarray) -> None:
    """Grey bands over the pixels the fit did not use, full height whatever the limits."""
    axis.fill_between(
        wavelength, 0, 1, where=masked, color="0.85", lw=0, transform=axis.get_xaxis_transform()
    )
