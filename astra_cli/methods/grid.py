"""`grid`: stellar labels by chi-square fitting over a grid of model spectra, as FERRE does.

The model grid is the expensive set-up this whole tool exists for: it is read once per group per
worker, and each chunk is fitted as a batch (chi-square against every node as matrix products).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from astra_cli.methods.base import Method, Param

if TYPE_CHECKING:
    from collections.abc import Sequence

    from astra_cli.io.spectra import Spectrum


class Grid(Method):
    """Teff, logg, [M/H] (the grid's labels) by chi-square over a grid of model spectra.

    Each spectrum is continuum-normalised per chip, compared with every node of the grid, then
    refined by interpolating the grid and minimising chi-square; errors come from the curvature
    of chi-square. Columns: one per grid label and its error (e_<label>), chi2, rchi2,
    n_pixels, snr and flags (1 at the grid edge, 2 did not converge, 4 low S/N). Model grids:
    astra FITS grids, FERRE ASCII grids or .npz (see README, "Model files").
    """

    grid = Param(type=Path, help="Model grid: astra FITS grid, FERRE ASCII grid, or .npz.")
    continuum_order = Param(4, help="Polynomial order of the continuum fitted to each chip.")

    def validate(self) -> None:
        from astra_cli.science.grids import check_grid

        check_grid(self.grid)

    def load_model(self) -> Any:
        from astra_cli.science.gridfit import PreparedGrid
        from astra_cli.science.grids import read_grid

        return PreparedGrid.from_grid(read_grid(self.grid))

    def analyse_batch(self, model: Any, spectra: Sequence[Spectrum]) -> list[dict[str, Any]]:
        import numpy as np

        from astra_cli.science.gridfit import fit_batch

        return fit_batch(
            model,
            [spectrum.wavelength for spectrum in spectra],
            [spectrum.flux for spectrum in spectra],
            [np.where(spectrum.bad, 0.0, spectrum.ivar) for spectrum in spectra],
            continuum_order=self.continuum_order,
        )
