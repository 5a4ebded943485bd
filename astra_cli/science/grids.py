"""A grid of model spectra ready for fitting: node spectra by block, the model at any label
point by interpolation, and the wavelengths in vacuum.

The data are a `astra_cli.io.grids.GridData`, read from any of the grid formats; they may be a
memory map shared by every process of the machine, so nothing here converts or copies the whole
grid: blocks of nodes are converted to float64 as they are used, and a PCA-compressed grid is
expanded a block (or one interpolated spectrum) at a time.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from astra_cli.io.grids.model import GridData, Section

BLOCK_NODES = 1024
"""Nodes converted at once when every node is needed: bounds the transient memory (8 MB per
1000 pixels) whatever the grid's size."""


@dataclass(frozen=True)
class ModelGrid:
    """A grid in the units and conventions astra fits in."""

    data: GridData
    wavelength: np.ndarray
    """Vacuum wavelengths (Angstrom) of every model pixel, sections one after the other."""
    invalid_nodes: np.ndarray | None = None
    """Nodes holding the header's INVALID_CODE, which no fit may use."""

    @classmethod
    def from_data(cls, data: GridData, *, air_to_vacuum: bool = False) -> ModelGrid:
        """`air_to_vacuum`: the grid's wavelengths are in air; convert them to vacuum."""
        wavelength = data.wavelength()
        if air_to_vacuum:
            wavelength = air_to_vacuum_wavelength(wavelength)
        code = data.metadata.get("INVALID_CODE")
        invalid = None
        if code is not None and data.pca is None:
            invalid = np.zeros(data.n_nodes, dtype=bool)
            for start in range(0, data.n_nodes, BLOCK_NODES):
                block = np.asarray(data.values[start : start + BLOCK_NODES])
                invalid[start : start + len(block)] = np.any(block == np.float32(code), axis=1)
            invalid = invalid if invalid.any() else None
        return cls(data, wavelength, invalid)

    @property
    def labels(self) -> tuple[str, ...]:
        """The result column of each label."""
        return self.data.columns

    @property
    def llimits(self) -> np.ndarray:
        return self.data.llimits

    @property
    def steps(self) -> np.ndarray:
        return self.data.steps

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def upper(self) -> np.ndarray:
        return self.data.upper

    @property
    def npix(self) -> int:
        return self.data.npix

    @property
    def sections(self) -> tuple[Section, ...]:
        return self.data.sections

    @property
    def n_nodes(self) -> int:
        return self.data.n_nodes

    def node_labels(self) -> np.ndarray:
        """Label values of every node, (N_nodes, D), in storage order."""
        axes = np.meshgrid(*(self.data.nodes(d) for d in range(len(self.shape))), indexing="ij")
        return np.stack([axis.ravel() for axis in axes], axis=1)

    def node_spectra(self, start: int, stop: int, dtype: type = np.float64) -> np.ndarray:
        """Spectra of nodes start..stop-1 (n, NPIX), in native byte order: no copy when the
        grid is stored so (a mapped FERRE binary grid read as float32)."""
        block = self.data.values[start:stop]
        if self.data.pca is not None:
            return self.data.pca.expand(block).astype(dtype, copy=False)
        return np.asarray(block, dtype=dtype)

    def node_blocks(self) -> list[tuple[int, int]]:
        return [
            (start, min(start + BLOCK_NODES, self.n_nodes))
            for start in range(0, self.n_nodes, BLOCK_NODES)
        ]

    def cell(self, point: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The cell a label point falls in (clipped to the grid): its lower corner's indices
        and the point's fractional position in it."""
        shape = np.array(self.shape)
        position = (np.asarray(point, dtype=float) - self.llimits) / self.steps
        position = np.clip(position, 0.0, shape - 1.0)
        base = np.clip(np.floor(position).astype(int), 0, shape - 2)
        return base, position - base

    def corner_indices(self, base: np.ndarray) -> np.ndarray:
        """Storage indices of a cell's 2**D corners."""
        corners = base + _corner_offsets(len(self.shape))
        return np.ravel_multi_index(tuple(corners.T), self.shape)

    def interpolate(
        self, point: np.ndarray, method: str = "linear"
    ) -> tuple[np.ndarray, np.ndarray]:
        """The model spectrum (NPIX) at one label point (clipped to the grid) and its exact
        derivatives with respect to each label (NPIX, D).

        linear
            Multilinear between the cell's 2**D corners.
        cubic
            FERRE's INTER = 3 in each dimension: the Catmull-Rom cubic (a cubic Bezier whose
            control points follow the neighbouring nodes) in the inner cells, a quadratic
            Bezier in the first and last cells; linear where a label has only 2 nodes.
        """
        base, fraction = self.cell(point)
        per_dimension = [
            _weights(int(b), float(d), n, method)
            for b, d, n in zip(base, fraction, self.shape, strict=True)
        ]
        indices = np.ravel_multi_index(
            np.meshgrid(*(nodes for nodes, _, _ in per_dimension), indexing="ij"), self.shape
        ).ravel()
        weights = _outer([w for _, w, _ in per_dimension])
        slopes = [
            _outer(
                [dw / self.steps[d] if d == j else w for d, (_, w, dw) in enumerate(per_dimension)]
            )
            for j in range(len(self.shape))
        ]
        order = np.argsort(indices)  # memory-map pages in file order
        coefficients = np.vstack([weights, *slopes])[:, order]
        nodes = self.data.values[indices[order]]
        if self.data.pca is not None:
            combined = coefficients @ np.asarray(nodes, dtype=np.float64)
            values, derivatives = combined[0], combined[1:].T
            return self.data.pca.expand(values)[0], self.data.pca.expand_derivatives(derivatives)
        # One float32 product for the spectrum and its derivatives: the grid's own precision.
        combined = coefficients.astype(np.float32) @ np.asarray(nodes, dtype=np.float32)
        return combined[0].astype(np.float64), combined[1:].T.astype(np.float64)

    def touches_invalid(self, point: np.ndarray) -> bool:
        """Whether the cell of `point` has a corner the grid marks invalid."""
        if self.invalid_nodes is None:
            return False
        base, _ = self.cell(point)
        return bool(self.invalid_nodes[self.corner_indices(base)].any())


INTERPOLATIONS = ("linear", "cubic")


def _weights(cell: int, d: float, nodes: int, method: str) -> tuple[np.ndarray, ...]:
    """One dimension: the nodes used, their weights, and the weights' derivatives by d."""
    if method == "linear" or nodes < 3:
        return np.array([cell, cell + 1]), np.array([1 - d, d]), np.array([-1.0, 1.0])
    if cell == 0:  # quadratic Bezier on nodes 0, 1, 2
        weights = [(1 - d) ** 2 + d * (1 - d) / 2, 2 * d - d * d, -d * (1 - d) / 2]
        slopes = [-2 * (1 - d) + (1 - 2 * d) / 2, 2 - 2 * d, -(1 - 2 * d) / 2]
        return np.arange(0, 3), np.array(weights), np.array(slopes)
    if cell == nodes - 2:  # quadratic Bezier on the last three nodes
        weights = [-d * (1 - d) / 2, 1 - d * d, d * d + d * (1 - d) / 2]
        slopes = [-(1 - 2 * d) / 2, -2 * d, 2 * d + (1 - 2 * d) / 2]
        return np.arange(nodes - 3, nodes), np.array(weights), np.array(slopes)
    d2, d3 = d * d, d * d * d
    weights = [
        (-d + 2 * d2 - d3) / 2,
        (2 - 5 * d2 + 3 * d3) / 2,
        (d + 4 * d2 - 3 * d3) / 2,
        (d3 - d2) / 2,
    ]
    slopes = [
        (-1 + 4 * d - 3 * d2) / 2,
        (-10 * d + 9 * d2) / 2,
        (1 + 8 * d - 9 * d2) / 2,
        (3 * d2 - 2 * d) / 2,
    ]
    return np.arange(cell - 1, cell + 3), np.array(weights), np.array(slopes)


def _outer(factors: list[np.ndarray]) -> np.ndarray:
    """The products of one factor from each list, in C order: weights of the node lattice."""
    result = factors[0]
    for factor in factors[1:]:
        result = np.multiply.outer(result, factor)
    return np.asarray(result).ravel()


@functools.cache
def _corner_offsets(dims: int) -> np.ndarray:
    """The 2**dims corners of a unit cell, (2**dims, dims) of 0/1."""
    return np.array(list(np.ndindex(*(2,) * dims)), dtype=int)


def air_to_vacuum_wavelength(air: np.ndarray) -> np.ndarray:
    """Vacuum wavelengths (Angstrom) of air wavelengths, by the inverse of the IAU standard
    (Morton 2000) refractive index of air as VALD tabulates it (N. Piskunov): good to a few
    m/s in the near infrared."""
    s2 = (1e4 / np.asarray(air, dtype=float)) ** 2
    n = (
        1.0
        + 0.00008336624212083
        + 0.02408926869968 / (130.1065924522 - s2)
        + 0.0001599740894897 / (38.92568793293 - s2)
    )
    return np.asarray(air * n)
