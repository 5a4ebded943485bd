"""A grid of model spectra as the files hold it: labels on a regular lattice of nodes, one
model spectrum per node made of one or more wavelength sections, stored in full or compressed
as PCA coefficients.

This is data, read by the format modules (`ferre`, `astrafits`, `npzgrid`) and used by the
science (`astra_cli.science.grids`), which interpolates it. Values may be a read-only memory
map of the file: nothing here copies them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

LOGW_LINEAR, LOGW_LOG10, LOGW_LN = 0, 1, 2
"""FERRE's LOGW: pixel abscissae in Angstrom, log10 Angstrom, or ln Angstrom."""

RESULT_COLUMNS = ("chi2", "rchi2", "n_pixels", "snr", "flags")
"""Columns the grid fit reports besides the labels; a label may not take these names."""


@dataclass(frozen=True)
class Section:
    """One wavelength section: `npix` pixels from model pixel `start` on, pixel i at abscissa
    wave[0] + i * wave[1] in the scale LOGW says (FERRE's WAVE)."""

    start: int
    npix: int
    wave: tuple[float, float]
    logw: int = LOGW_LOG10
    resolution: float | None = None

    @property
    def stop(self) -> int:
        return self.start + self.npix

    def wavelength(self) -> np.ndarray:
        """Wavelengths of the section's pixels, Angstrom, in the grid's own convention."""
        abscissa = self.wave[0] + self.wave[1] * np.arange(self.npix)
        if self.logw == LOGW_LOG10:
            return np.asarray(10.0**abscissa)
        if self.logw == LOGW_LN:
            return np.exp(abscissa)
        return abscissa


@dataclass(frozen=True)
class PcaBasis:
    """A PCA-compressed grid (FERRE's NPCA): the uncompressed spectrum is cut into pieces of
    `piece_pixels`; piece s of a node is mean + (c_s - constant) @ components[:, piece s],
    with c_s that node's `components`-long slice of coefficients for the piece."""

    mean: np.ndarray
    """(P,) over every uncompressed pixel."""
    components: np.ndarray
    """(K, P): K components, each over every uncompressed pixel."""
    piece_pixels: tuple[int, ...]
    constant: float = 0.0

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])

    def expand(self, coefficients: np.ndarray) -> np.ndarray:
        """Spectra (n, P) of coefficient vectors (n, S*K)."""
        coefficients = np.atleast_2d(np.asarray(coefficients, dtype=np.float64))
        spectra = np.empty((len(coefficients), self.mean.size))
        k, start = self.n_components, 0
        for piece, width in enumerate(self.piece_pixels):
            c = coefficients[:, piece * k : (piece + 1) * k] - self.constant
            block = np.asarray(self.components[:, start : start + width], dtype=np.float64)
            spectra[:, start : start + width] = self.mean[start : start + width] + c @ block
            start += width
        return spectra

    def expand_derivatives(self, derivatives: np.ndarray) -> np.ndarray:
        """d(spectrum)/d(label) (P, D) from d(coefficients)/d(label) (S*K, D): linear, so no
        mean and no constant."""
        result = np.empty((self.mean.size, derivatives.shape[1]))
        k, start = self.n_components, 0
        for piece, width in enumerate(self.piece_pixels):
            block = np.asarray(self.components[:, start : start + width], dtype=np.float64)
            result[start : start + width] = block.T @ derivatives[piece * k : (piece + 1) * k]
            start += width
        return result


@dataclass(frozen=True)
class GridData:
    """A model grid read from a file."""

    path: str
    format: str
    """"astra FITS", "FERRE ASCII", "FERRE binary" or "npz"."""
    labels: tuple[str, ...]
    """The labels as the file names them (`'O Mg Si S Ca Ti'`)."""
    llimits: np.ndarray
    steps: np.ndarray
    shape: tuple[int, ...]
    sections: tuple[Section, ...]
    values: np.ndarray
    """(nodes, stored values): the node spectra, or for a PCA grid their coefficients; the
    first label varies slowest. May be a read-only memory map."""
    pca: PcaBasis | None = None
    vacuum: bool | None = None
    """Vacuum wavelengths (True), air (False), or not stated (None)."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """ID, DATE, COMMENTS and the rest, kept as the file gives them."""

    @property
    def columns(self) -> tuple[str, ...]:
        """Result column of each label (see `column_name`)."""
        return tuple(column_name(label, index) for index, label in enumerate(self.labels, 1))

    @property
    def npix(self) -> int:
        """Pixels of a (decompressed) model spectrum."""
        return sum(section.npix for section in self.sections)

    @property
    def n_nodes(self) -> int:
        return int(np.prod(self.shape))

    def wavelength(self) -> np.ndarray:
        return np.concatenate([section.wavelength() for section in self.sections])

    def nodes(self, dimension: int) -> np.ndarray:
        return np.asarray(
            self.llimits[dimension] + self.steps[dimension] * np.arange(self.shape[dimension])
        )

    @property
    def upper(self) -> np.ndarray:
        return np.asarray(self.llimits + self.steps * (np.array(self.shape) - 1))


def column_name(label: str, index: int) -> str:
    """The result column of a grid label: lower case, every run of other characters than
    letters and digits one `_`, no `_` at the ends; `label_` first if that leaves a digit first,
    `label<index>` if it leaves nothing. `'O Mg Si S Ca Ti'` -> `o_mg_si_s_ca_ti`, `'TEFF'` ->
    `teff`, `'C'` -> `c`, `'12C/13C'` -> `label_12c_13c`."""
    name = re.sub(r"[^a-z0-9]+", "_", label.strip().lower()).strip("_")
    if not name:
        return f"label{index}"
    return f"label_{name}" if name[0].isdigit() else name


def check_columns(grid: GridData) -> None:
    """Refuse labels whose result columns would collide, with each other or with the fit's
    own columns."""
    taken = {column: "one of the fit's own columns" for column in RESULT_COLUMNS}
    for label, column in zip(grid.labels, grid.columns, strict=True):
        for name in (column, f"e_{column}"):
            if name in taken:
                raise ValueError(
                    f"label {label!r} would be result column {name!r}, which is {taken[name]}"
                )
        taken[column] = f"the column of label {label!r}"
        taken[f"e_{column}"] = f"the error of label {label!r}"
