"""Grids of model spectra: regular in every label, on one wavelength grid.

Two file formats hold them:

**astra FITS grid** (written by `write_fits_grid`, read by `read_grid`)
    HDU0: the flux array, float32, numpy shape (N_1, ..., N_D, NPIX): the first label varies
    slowest, like FERRE. Header keywords:
    `ASTRAGRD = 1` (format version), `NLABELS = D`, and for each label i = 1..D:
    `LABEL{i}` (name), `LLIMIT{i}` (first node value), `LSTEP{i}` (node spacing),
    `LNPTS{i}` (number of nodes); the wavelength solution `CRVAL1`, `CDELT1` (log10 Angstrom
    when `LOGW = 1`, Angstrom when `LOGW = 0`) and `NPIX`.

**FERRE ASCII grid** (read by `read_grid`, written by `write_ferre_grid`)
    A header namelist `&SYNTH ... /` with `N_OF_DIM`, `N_P` (nodes per label), `LABEL(i)`,
    `LLIMITS`, `STEPS`, `NPIX`, `WAVE` (first wavelength and step) and `LOGW`, followed by the
    node spectra, NPIX values each, the last label varying fastest.

Either can also be an `.npz` archive with arrays `flux`, `labels`, `llimits`, `steps`, `wave`
(`[start, step]`) and `logw`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from astra_cli.io.modelfiles import ModelFileError, file_kind, fits_headers, load_npz


@dataclass(frozen=True)
class ModelGrid:
    labels: tuple[str, ...]
    llimits: np.ndarray
    steps: np.ndarray
    flux: np.ndarray
    """Shape (N_1, ..., N_D, NPIX)."""
    wave_start: float
    wave_step: float
    logw: bool

    @property
    def shape(self) -> tuple[int, ...]:
        return self.flux.shape[:-1]

    @property
    def npix(self) -> int:
        return self.flux.shape[-1]

    @property
    def wavelength(self) -> np.ndarray:
        grid = self.wave_start + self.wave_step * np.arange(self.npix)
        return 10.0**grid if self.logw else grid

    def nodes(self, dimension: int) -> np.ndarray:
        return self.llimits[dimension] + self.steps[dimension] * np.arange(self.shape[dimension])

    @property
    def upper(self) -> np.ndarray:
        return self.llimits + self.steps * (np.array(self.shape) - 1)

    def node_labels(self) -> np.ndarray:
        """Label values of every node, (N_nodes, D), in the order of `flux.reshape(-1, NPIX)`."""
        axes = np.meshgrid(*(self.nodes(d) for d in range(len(self.labels))), indexing="ij")
        return np.stack([axis.ravel() for axis in axes], axis=1)

    def interpolate(self, point: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Multilinear interpolation at one label point (clipped to the grid): the model
        spectrum (NPIX) and its derivatives with respect to each label (NPIX, D), which
        multilinear interpolation gives exactly from the same 2**D corner spectra."""
        shape = np.array(self.shape)
        position = (np.asarray(point, dtype=float) - self.llimits) / self.steps
        position = np.clip(position, 0.0, shape - 1.0)
        base = np.clip(np.floor(position).astype(int), 0, shape - 2)
        fraction = position - base
        offsets = _corner_offsets(len(self.labels))
        corners = self.flux[tuple((base + offsets).T)]  # (2**D, NPIX)
        factors = np.where(offsets == 1, fraction, 1.0 - fraction)  # (2**D, D)
        weights = factors.prod(axis=1)
        # d(weight)/d(label_d): the product of the other factors (prefix x suffix products),
        # signed by the corner's side, per step.
        ones = np.ones((len(factors), 1))
        prefix = np.cumprod(np.hstack([ones, factors[:, :-1]]), axis=1)
        suffix = np.cumprod(np.hstack([ones, factors[:, :0:-1]]), axis=1)[:, ::-1]
        slopes = np.where(offsets == 1, 1.0, -1.0) * prefix * suffix / self.steps
        return weights @ corners, (slopes.T @ corners).T


@functools.cache
def _corner_offsets(dims: int) -> np.ndarray:
    """The 2**dims corners of a unit cell, (2**dims, dims) of 0/1."""
    return np.array(list(np.ndindex(*(2,) * dims)), dtype=int)


def read_grid(path: str | Path) -> ModelGrid:
    """Read a grid in either format (or .npz); ModelFileError names the file on any problem."""
    kind = file_kind(path)
    try:
        if kind == "fits":
            return _read_fits_grid(path)
        if kind == "npz":
            return _grid_from_arrays(path, load_npz(path))
        return _read_ferre_grid(path)
    except ModelFileError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise ModelFileError(f"cannot read model grid {path}: {error}") from None


def check_grid(path: str | Path) -> None:
    """Validation for the invoking process, before any work: the headers, and that the file
    holds as many values as they promise (without building the arrays)."""
    kind = file_kind(path)
    try:
        if kind == "fits":
            header = fits_headers(path, "model grid")[0]
            _, _, _, shape = _labels_from_header(header, path)
            npix = int(header["NPIX"])
            axes = tuple(int(header[f"NAXIS{i}"]) for i in range(int(header["NAXIS"]), 0, -1))
            if axes != (*shape, npix):
                raise ModelFileError(
                    f"model grid {path}: flux has shape {axes}, header says {(*shape, npix)}"
                )
        elif kind == "text":
            items = _ferre_header(_read_ferre_head(path), path)
            shape = tuple(int(value) for value in items["N_P"].split())
            _check_ferre_count(path, int(np.prod(shape)) * int(items["NPIX"]), shape)
        else:
            read_grid(path)
    except ModelFileError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise ModelFileError(f"cannot read model grid {path}: {error}") from None


def _check_ferre_count(path: str | Path, expected: int, shape: tuple[int, ...]) -> None:
    with open(path, errors="replace") as handle:
        for line in handle:
            if line.strip() == "/":
                break
        count = sum(len(line.split()) for line in handle)
    if count != expected:
        raise ModelFileError(
            f"FERRE grid {path}: {count} flux values, expected {expected} "
            f"({' x '.join(map(str, shape))} nodes x {expected // int(np.prod(shape))} pixels)"
        )


def write_fits_grid(grid: ModelGrid, path: str | Path) -> None:
    from astropy.io import fits

    hdu = fits.PrimaryHDU(grid.flux.astype(np.float32))
    header = hdu.header
    header["ASTRAGRD"] = (1, "astra model grid format version")
    header["NLABELS"] = len(grid.labels)
    for i, name in enumerate(grid.labels, 1):
        header[f"LABEL{i}"] = name
        header[f"LLIMIT{i}"] = float(grid.llimits[i - 1])
        header[f"LSTEP{i}"] = float(grid.steps[i - 1])
        header[f"LNPTS{i}"] = int(grid.shape[i - 1])
    header["NPIX"] = grid.npix
    header["CRVAL1"] = grid.wave_start
    header["CDELT1"] = grid.wave_step
    header["LOGW"] = int(grid.logw)
    header["BUNIT"] = "continuum-normalised flux"
    hdu.writeto(path, overwrite=True)


def write_ferre_grid(grid: ModelGrid, path: str | Path, *, identifier: str = "astra") -> None:
    """FERRE's ASCII format; values to 6 significant digits."""
    dims = len(grid.labels)
    lines = [
        " &SYNTH",
        f" N_OF_DIM = {dims}",
        " N_P = " + " ".join(str(n) for n in grid.shape),
        *(f" LABEL({i}) = '{name}'" for i, name in enumerate(grid.labels, 1)),
        " LLIMITS = " + " ".join(f"{value:.8g}" for value in grid.llimits),
        " STEPS = " + " ".join(f"{value:.8g}" for value in grid.steps),
        f" ID = '{identifier}'",
        f" NPIX = {grid.npix}",
        f" WAVE = {grid.wave_start:.10g} {grid.wave_step:.10g}",
        f" LOGW = {int(grid.logw)}",
        " /",
    ]
    flux = grid.flux.reshape(-1, grid.npix).astype(np.float64)
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
        for spectrum in flux:
            spectrum.tofile(handle, sep=" ", format="%.6g")
            handle.write("\n")


def _read_fits_grid(path: str | Path) -> ModelGrid:
    from astropy.io import fits

    with fits.open(path, memmap=False) as hdus:
        header = hdus[0].header
        labels, llimits, steps, shape = _labels_from_header(header, path)
        flux = np.asarray(hdus[0].data, dtype=np.float64)
    if flux.shape != (*shape, int(header["NPIX"])):
        raise ModelFileError(
            f"model grid {path}: flux has shape {flux.shape}, header says "
            f"{(*shape, int(header['NPIX']))}"
        )
    return ModelGrid(
        labels, llimits, steps, flux, float(header["CRVAL1"]), float(header["CDELT1"]),
        bool(header.get("LOGW", 1)),
    )  # fmt: skip


def _labels_from_header(
    header: Any, path: str | Path
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, tuple[int, ...]]:
    if "ASTRAGRD" not in header or "NLABELS" not in header:
        raise ModelFileError(
            f"{path} is not an astra model grid (no ASTRAGRD/NLABELS keywords; the format is "
            "in the README, 'Model files')"
        )
    count = int(header["NLABELS"])
    labels = tuple(str(header[f"LABEL{i}"]).strip().lower() for i in range(1, count + 1))
    llimits = np.array([float(header[f"LLIMIT{i}"]) for i in range(1, count + 1)])
    steps = np.array([float(header[f"LSTEP{i}"]) for i in range(1, count + 1)])
    shape = tuple(int(header[f"LNPTS{i}"]) for i in range(1, count + 1))
    return labels, llimits, steps, shape


def _read_ferre_head(path: str | Path) -> str:
    with open(path, errors="replace") as handle:
        head = []
        for line in handle:
            head.append(line)
            if line.strip() == "/" or len(head) > 500:
                break
    return "".join(head)


_NAMELIST_ITEM = re.compile(r"^\s*([A-Z_0-9()]+)\s*=\s*(.*?)\s*$", re.IGNORECASE)


def _ferre_header(text: str, path: str | Path) -> dict[str, str]:
    if "&SYNTH" not in text.upper():
        raise ModelFileError(f"{path} is neither FITS, .npz nor a FERRE grid (no &SYNTH header)")
    items = {}
    for line in text.splitlines():
        match = _NAMELIST_ITEM.match(line)
        if match:
            items[match.group(1).upper()] = match.group(2).strip().strip(",")
    for key in ("N_OF_DIM", "N_P", "LLIMITS", "STEPS", "NPIX", "WAVE"):
        if key not in items:
            raise ModelFileError(f"FERRE grid {path}: header has no {key}")
    return items


def _read_ferre_grid(path: str | Path) -> ModelGrid:
    text = Path(path).read_text(errors="replace")
    end = re.search(r"^\s*/\s*$", text, re.MULTILINE)
    if end is None:
        raise ModelFileError(f"FERRE grid {path}: the &SYNTH header has no closing '/'")
    items = _ferre_header(text[: end.start()], path)
    dims = int(items["N_OF_DIM"])
    shape = tuple(int(value) for value in items["N_P"].split())
    npix = int(items["NPIX"])
    labels = tuple(
        items.get(f"LABEL({i})", f"'label{i}'").strip("'\" ").lower() for i in range(1, dims + 1)
    )
    values = np.fromstring(text[end.end() :], dtype=np.float64, sep=" ")
    if values.size != int(np.prod(shape)) * npix:
        _check_ferre_count(path, int(np.prod(shape)) * npix, shape)  # says how many there are
    start, step = (float(value) for value in items["WAVE"].split()[:2])
    return ModelGrid(
        labels,
        np.array(items["LLIMITS"].split(), dtype=float),
        np.array(items["STEPS"].split(), dtype=float),
        values.reshape(*shape, npix),
        start,
        step,
        bool(int(items.get("LOGW", "0"))),
    )


def _grid_from_arrays(path: str | Path, arrays: dict[str, Any]) -> ModelGrid:
    wave = np.asarray(arrays["wave"], dtype=float)
    return ModelGrid(
        tuple(str(name).lower() for name in arrays["labels"]),
        np.asarray(arrays["llimits"], dtype=float),
        np.asarray(arrays["steps"], dtype=float),
        np.asarray(arrays["flux"], dtype=np.float64),
        float(wave[0]),
        float(wave[1]),
        bool(arrays.get("logw", True)),
    )
