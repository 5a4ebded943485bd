"""`grid`: stellar labels by chi-square fitting over a grid of model spectra, as FERRE does.

The model grid is the expensive set-up this whole tool exists for: it is read once per group per
worker (memory-mapped where its format allows, so that the workers of a machine share it), and
each chunk is fitted as a batch (chi-square against every node as matrix products).
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from astra_cli.errors import UsageError, spelling
from astra_cli.methods.base import Method, Param, Upstream
from astra_cli.methods.continuum_option import continuum_order_option
from astra_cli.methods.restframe import (
    VELOCITY_FLAGS,
    frame_flags,
    rest_wavelength,
    rv_templates_option,
    velocity_option,
    velocity_source,
)
from astra_cli.methods.units import label_units

if TYPE_CHECKING:
    from collections.abc import Sequence

    from astra_cli.io.grids import GridData
    from astra_cli.io.spectra import Spectrum
    from astra_cli.science.grids import ModelGrid


FIX_PREFIX = "fix_"
"""A manifest column fix_<label> holds that label fixed for its row (as --fix does for all)."""


class Grid(Method):
    """Stellar labels (the grid's own: Teff, logg, [M/H]...) by chi-square over model spectra.

    Each spectrum is continuum-normalised per chip and grid section and compared with the
    grid's nodes (every node of a small grid, a coarse lattice of a large one: `astra plan`
    says which), then refined from its best nodes by interpolating the grid and minimising
    chi-square with the continuum refitted to every trial; errors come from the curvature of
    chi-square. Observed-frame spectra (apVisit) are moved to the rest frame by their v_rad: a
    manifest column v_rad, or what `rv` measured (run first, in the same invocation, where the
    store has none). Columns: one per grid label and its error (e_<label>; a label's column is
    its name in lower case with other characters as '_', so FERRE's 'O Mg Si S Ca Ti' is
    o_mg_si_s_ca_ti), chi2, rchi2, n_pixels, snr and flags. Model grids: astra FITS grids,
    FERRE grids (ASCII or binary .hdr + .unf, MULTI sections, NPCA, TRANSPOSED) or .npz;
    `astra grid info FILE` says what astra makes of one.
    """

    inputs: ClassVar[dict[str, type]] = {"v_rad": float, "fix_*": float}
    flags: ClassVar[dict[int, str]] = {
        1: "the best fit is at the grid's edge: the true labels may lie outside it",
        2: "the refinement did not converge",
        4: "median S/N below 10: treat the labels with caution",
        8: "the fit's cell of the grid has a node the grid marks invalid (INVALID_CODE)",
        **VELOCITY_FLAGS,
    }

    grid = Param(type=Path, help="Model grid: astra FITS, FERRE ASCII or binary (.hdr), or .npz.")
    continuum_order = continuum_order_option(4, "polynomial")
    interpolation = Param(
        "linear",
        choices=("linear", "cubic"),
        help="Between the grid's nodes: multilinear, or cubic (FERRE's INTER = 3: Catmull-Rom, "
        "quadratic in the first and last cells).",
    )
    starts = Param(
        0,
        min=0,
        help="Refinements per spectrum, each from one of its best nodes; 0 chooses: 1 for "
        "grids searched node by node, 3 for large grids searched through a coarse lattice.",
    )
    fix = Param(
        "",
        help="Labels held at a value instead of fitted, LABEL=VALUE[,LABEL=VALUE] (result "
        "column names: logg=4.5). A manifest column fix_<label> (fix_logg) holds that label "
        "for its row alone; an empty cell leaves it free.",
    )
    weights = Param(
        None,
        type=Path,
        help="Per-pixel weights on the grid's pixels (FERRE's FILTERFILE: one number per pixel, "
        "as text): they multiply the inverse variance, so 0 leaves a pixel out (element windows).",
    )
    velocity = velocity_option()
    rv_templates = rv_templates_option()
    save_spectra = Param(
        False,
        significant=False,
        help="Write each run's fit to OUTPUT_DIR/spectra/grid/GROUP/ (FITS: the spectrum and "
        "its error normalised, the continuum and the best-fit model); the result column "
        "spectrum_file names it. Runs already done are not rerun: add --force for them.",
    )
    covariance = Param(
        False,
        significant=False,
        help="Also store the covariance of every pair of labels, cov_<label>_<label> (the "
        "errors are the square roots of the variances). Runs already done are not rerun: "
        "add --force for them.",
    )
    air_to_vacuum = Param(
        False,
        help="The grid's wavelengths are in air (VACUUM = 0, or not stated in a FERRE "
        "header): convert them to vacuum, as apStar and apVisit spectra are, instead of "
        "refusing the grid.",
    )

    def upstream(self) -> list[Upstream]:
        return velocity_source(self.velocity, self.rv_templates)

    def model_files(self) -> list[Path]:
        """The option files, and a FERRE binary grid's data beside its header."""
        from astra_cli.io.formats import binary_data_path

        files = self.requires()
        if str(self.grid).lower().endswith(".hdr"):  # by name: the file may be gone
            files.append(binary_data_path(self.grid))
        return files

    def check_inputs(self, names: set[str]) -> None:
        from astra_cli.io.grids import grid_header

        columns = grid_header(self.grid).columns
        for name in sorted(names):
            if name.startswith(FIX_PREFIX) and name.removeprefix(FIX_PREFIX) not in columns:
                known = ", ".join(FIX_PREFIX + column for column in columns)
                raise UsageError(
                    f"manifest column {name}: {self.grid} has no label "
                    f"{name.removeprefix(FIX_PREFIX)!r} (its fix_ columns: {known})"
                )

    def validate(self) -> None:
        from astra_cli.io.grids import verify_grid

        grid = verify_grid(self.grid)
        check_wavelengths(grid, self.air_to_vacuum)
        fixed_labels(grid, self.fix)
        if self.weights is not None:
            read_weights(self.weights, grid.npix)

    def plan_notes(self) -> list[str]:
        from astra_cli.io.grids import grid_header
        from astra_cli.science.gridfit import COARSE_NODES, FULL_SEARCH_NODES, STARTS_COARSE

        nodes = grid_header(self.grid).n_nodes
        if nodes <= FULL_SEARCH_NODES:
            return [f"search: chi-square against all {nodes} nodes, then refinement"]
        starts = self.starts or STARTS_COARSE
        return [
            f"search: a coarse lattice of about {COARSE_NODES} of {nodes} nodes, then "
            f"refinement from the best {starts}"
        ]

    def column_units(self) -> dict[str, str]:
        from astra_cli.io.grids import grid_header

        return label_units(grid_header(self.grid).columns)

    def describe_columns(self) -> dict[str, str]:
        from astra_cli.io.grids import grid_header

        grid = grid_header(self.grid)
        described = super().describe_columns()
        for label, column in zip(grid.labels, grid.columns, strict=True):
            described[column] = f"grid label {label!r}"
            described[f"e_{column}"] = f"error of grid label {label!r}"
        for (a, first), (b, second) in itertools.combinations(
            zip(grid.labels, grid.columns, strict=True), 2
        ):
            described[f"cov_{first}_{second}"] = f"covariance of grid labels {a!r} and {b!r}"
        return described

    def load_model(self) -> Any:
        from astra_cli.io.grids import read_grid
        from astra_cli.science.gridfit import FitSettings, PreparedGrid
        from astra_cli.science.grids import ModelGrid

        data = read_grid(self.grid)
        check_wavelengths(data, self.air_to_vacuum)
        prepared = PreparedGrid.from_grid(
            ModelGrid.from_data(data, air_to_vacuum=self.air_to_vacuum)
        )
        settings = FitSettings(
            continuum_order=self.continuum_order,
            interpolation=self.interpolation,
            starts=self.starts,
            fixed=fixed_labels(data, self.fix),
            weights=None if self.weights is None else read_weights(self.weights, data.npix),
        )
        return prepared, settings

    def analyse_batch(self, model: Any, spectra: Sequence[Spectrum]) -> list[dict[str, Any]]:
        import numpy as np

        from astra_cli.science.gridfit import fit_batch

        prepared, settings = model
        # Spectra whose manifest rows fix labels of their own are fitted apart, each set of
        # fixed values with its settings.
        batches: dict[tuple[tuple[int, float], ...], list[int]] = {}
        for index, spectrum in enumerate(spectra):
            own = tuple(sorted(fixed_by_row(prepared.grid, spectrum.inputs).items()))
            batches.setdefault(own, []).append(index)
        results: list[dict[str, Any]] = [{} for _ in spectra]
        for own, indices in batches.items():
            fixed = {**settings.fixed, **dict(own)}
            if len(fixed) == len(prepared.grid.labels):
                raise ValueError("every label is fixed (by --fix and fix_ columns)")
            fitted = fit_batch(
                prepared,
                [rest_wavelength(spectra[i]) for i in indices],
                [spectra[i].flux for i in indices],
                [np.where(spectra[i].bad, 0.0, spectra[i].ivar) for i in indices],
                settings=replace(settings, fixed=fixed),
                spectra=self.save_spectra,
                covariance=self.covariance,
            )
            for index, result in zip(indices, fitted, strict=True):
                result["flags"] = int(result["flags"]) | frame_flags(spectra[index])
                results[index] = result
        return results


def fixed_by_row(grid: ModelGrid, inputs: dict[str, Any]) -> dict[int, float]:
    """{label index: value} from a spectrum's fix_<label> inputs (their labels checked by
    `Grid.check_inputs` when planning), each inside the grid."""
    fixed = {}
    for name, value in inputs.items():
        if not name.startswith(FIX_PREFIX):
            continue
        index = grid.labels.index(name.removeprefix(FIX_PREFIX))
        low, high = float(grid.llimits[index]), float(grid.upper[index])
        if not low <= float(value) <= high:
            raise ValueError(f"{name}={value:g} is outside the grid ({low:g} to {high:g})")
        fixed[index] = float(value)
    return fixed


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


def fixed_labels(grid: GridData, text: str) -> dict[int, float]:
    """`logg=4.5,m_h=0` -> {label index: value}, labels by result column or by their name in
    the grid; each value inside the grid."""
    option = f"option {spelling().option('fix')}"
    fixed: dict[int, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        names = {column: d for d, column in enumerate(grid.columns)}
        names.update({label.lower(): d for d, label in enumerate(grid.labels)})
        index = names.get(name.strip().lower())
        if not sep or index is None:
            raise UsageError(
                f"{option}: {item!r} is not LABEL=VALUE with a label of {grid.path} "
                f"({', '.join(grid.columns)})"
            )
        try:
            number = float(value)
        except ValueError:
            raise UsageError(f"{option}: {value!r} is not a number") from None
        low, high = float(grid.llimits[index]), float(grid.upper[index])
        if not low <= number <= high:
            raise UsageError(
                f"{option}: {grid.columns[index]}={number:g} is outside the grid ({low:g} to "
                f"{high:g})"
            )
        fixed[index] = number
    if len(fixed) == len(grid.labels):
        raise UsageError(f"{option}: every label is fixed; leave at least one free")
    return fixed


def read_weights(path: str | Path, npix: int) -> Any:
    """A weights file: `npix` non-negative numbers as text, some positive."""
    import numpy as np

    try:
        values = np.loadtxt(path, dtype=float, ndmin=1).ravel()
    except ValueError as error:
        raise UsageError(f"weights file {path}: {error}") from None
    if values.size != npix:
        raise UsageError(f"weights file {path}: {values.size} values, the grid has {npix} pixels")
    if not np.all(np.isfinite(values)) or np.any(values < 0) or not np.any(values > 0):
        raise UsageError(f"weights file {path}: weights must be finite, >= 0, and not all 0")
    return values
