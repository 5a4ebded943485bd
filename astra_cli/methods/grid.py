"""`grid`: stellar labels by chi-square fitting over a grid of model spectra, as FERRE does.

The model grid is the expensive set-up this whole tool exists for: it is read once per group per
worker (memory-mapped where its format allows, so that the workers of a machine share it), and
each chunk is fitted as a batch (chi-square against every node as matrix products).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from astra_cli.errors import UsageError, spelling
from astra_cli.methods.base import Method, Param

if TYPE_CHECKING:
    from collections.abc import Sequence

    from astra_cli.io.grids import GridData
    from astra_cli.io.spectra import Spectrum


class Grid(Method):
    """Stellar labels (the grid's: Teff, logg, [M/H], ...) by chi-square over a grid of model
    spectra.

    Each spectrum is continuum-normalised per chip and grid section, compared with every node
    of the grid, then refined by interpolating the grid and minimising chi-square; errors come
    from the curvature of chi-square. Columns: one per grid label and its error (e_<label>;
    a label's column is its name in lower case with other characters as '_', so FERRE's 'O Mg
    Si S Ca Ti' is o_mg_si_s_ca_ti), chi2, rchi2, n_pixels, snr and flags (1 at the grid edge,
    2 did not converge, 4 low S/N, 8 the fit used a node the grid marks invalid). Model grids:
    astra FITS grids, FERRE grids (ASCII or binary .hdr + .unf, MULTI sections, NPCA,
    TRANSPOSED) or .npz; `astra grid info FILE` says what astra makes of one.
    """

    grid = Param(type=Path, help="Model grid: astra FITS, FERRE ASCII or binary (.hdr), or .npz.")
    continuum_order = Param(4, help="Polynomial order of the continuum fitted to each chip.")
    air_to_vacuum = Param(
        False,
        help="The grid's wavelengths are in air (VACUUM = 0, or not stated in a FERRE "
        "header): convert them to vacuum, as apStar and apVisit spectra are, instead of "
        "refusing the grid.",
    )

    def validate(self) -> None:
        from astra_cli.io.grids import check_grid

        check_wavelengths(check_grid(self.grid), self.air_to_vacuum)

    def describe_columns(self) -> dict[str, str]:
        from astra_cli.io.grids import grid_header

        grid = grid_header(self.grid)
        described = {}
        for label, column in zip(grid.labels, grid.columns, strict=True):
            described[column] = f"grid label {label!r}"
            described[f"e_{column}"] = f"error of grid label {label!r}"
        return described

    def load_model(self) -> Any:
        from astra_cli.io.grids import read_grid
        from astra_cli.science.gridfit import PreparedGrid
        from astra_cli.science.grids import ModelGrid

        data = read_grid(self.grid)
        check_wavelengths(data, self.air_to_vacuum)
        return PreparedGrid.from_grid(ModelGrid.from_data(data, air_to_vacuum=self.air_to_vacuum))

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


def check_wavelengths(grid: GridData, air_to_vacuum: bool) -> None:
    """apStar and apVisit wavelengths are in vacuum: a grid in air is converted only when the
    user says so, and a grid that says nothing is taken for air, as FERRE's manual does."""
    option = f"option {spelling().option('air_to_vacuum')}"
    if grid.vacuum is True:
        if air_to_vacuum:
            raise UsageError(
                f"model grid {grid.path} is in vacuum wavelengths (VACUUM = 1): leave out {option}"
            )
        return
    if air_to_vacuum:
        return
    said = "says VACUUM = 0 (air)" if grid.vacuum is False else "does not say VACUUM"
    raise UsageError(
        f"model grid {grid.path} {said}; FERRE then means air wavelengths, and apStar and "
        f"apVisit spectra are in vacuum: give {option} to convert the grid, or add "
        "VACUUM = 1 to its header if its wavelengths are in vacuum"
    )
