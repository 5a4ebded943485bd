"""astra's FITS grid: the flux in HDU0, float32, numpy shape (N_1, ..., N_D, NPIX), the first
label varying slowest (as in FERRE), with the lattice and the wavelengths in the header.

Header keywords: `ASTRAGRD = 1` (format version), `NLABELS = D`; per label i = 1..D `LABEL{i}`
(its name, any text), `LLIMIT{i}` (first node), `LSTEP{i}` (node spacing), `LNPTS{i}` (nodes);
`NPIX`; `VACUUM` (1 vacuum, 0 air; vacuum when absent: the demo and older astra grids); and the
wavelengths: one section as `CRVAL1`, `CDELT1` (the first pixel and the step) and `LOGW` (0
Angstrom, 1 log10 Angstrom, 2 ln Angstrom), or several as `NSECT = S` and per section s
`SNPIX{s}`, `SWAVE{s}`, `SDWAVE{s}`, `SLOGW{s}` (and optionally `SRES{s}`, its resolution).

The data are memory-mapped; FITS is big-endian, so blocks of nodes are converted as they are
used rather than the whole grid at once.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from astra_cli.io.grids.model import LOGW_LINEAR, LOGW_LN, LOGW_LOG10, GridData, Section

FORMAT_VERSION = 1


def is_astra_grid(header: Any) -> bool:
    return "ASTRAGRD" in header and "NLABELS" in header


def grid_from_header(header: Any, path: str | os.PathLike[str], values: np.ndarray) -> GridData:
    """The grid a header describes, around its data (or a stand-in of the right shape)."""
    count = int(header["NLABELS"])
    labels = tuple(str(header[f"LABEL{i}"]).strip() for i in range(1, count + 1))
    llimits = np.array([float(header[f"LLIMIT{i}"]) for i in range(1, count + 1)])
    steps = np.array([float(header[f"LSTEP{i}"]) for i in range(1, count + 1)])
    shape = tuple(int(header[f"LNPTS{i}"]) for i in range(1, count + 1))
    vacuum = bool(int(header.get("VACUUM", 1)))
    return GridData(
        path=os.fspath(path),
        format="astra FITS",
        labels=labels,
        llimits=llimits,
        steps=steps,
        shape=shape,
        sections=_sections(header),
        values=values,
        vacuum=vacuum,
        metadata={"ID": str(header["GRIDID"])} if "GRIDID" in header else {},
    )


def _sections(header: Any) -> tuple[Section, ...]:
    if "NSECT" not in header:
        logw = int(header.get("LOGW", 1))
        npix = int(header["NPIX"])
        return (Section(0, npix, (float(header["CRVAL1"]), float(header["CDELT1"])), logw),)
    sections, start = [], 0
    for s in range(1, int(header["NSECT"]) + 1):
        npix = int(header[f"SNPIX{s}"])
        wave = (float(header[f"SWAVE{s}"]), float(header[f"SDWAVE{s}"]))
        resolution = float(header[f"SRES{s}"]) if f"SRES{s}" in header else None
        sections.append(Section(start, npix, wave, int(header[f"SLOGW{s}"]), resolution))
        start += npix
    return tuple(sections)


def check_sections(sections: tuple[Section, ...]) -> str | None:
    """What is wrong with the sections' wavelengths, if anything."""
    for index, section in enumerate(sections, 1):
        if section.logw not in (LOGW_LINEAR, LOGW_LOG10, LOGW_LN):
            return f"section {index}: LOGW must be 0, 1 or 2, not {section.logw}"
        if not (np.isfinite(section.wave[0]) and section.wave[1] > 0):
            return f"section {index}: the wavelength step must be positive, not {section.wave[1]}"
    return None


def write(grid: GridData, path: str | os.PathLike[str]) -> None:
    """An astra FITS grid of a full (not PCA) grid."""
    from astropy.io import fits

    if grid.pca is not None:
        raise ValueError("astra FITS grids hold full spectra: expand a PCA grid first")
    shape = (*grid.shape, grid.npix)
    header = fits.Header()
    header["SIMPLE"] = True
    header["BITPIX"] = -32
    header["NAXIS"] = len(shape)
    for axis, length in enumerate(reversed(shape), 1):
        header[f"NAXIS{axis}"] = length
    header["EXTEND"] = True
    header["ASTRAGRD"] = (FORMAT_VERSION, "astra model grid format version")
    header["NLABELS"] = len(grid.labels)
    for i, name in enumerate(grid.labels, 1):
        header[f"LABEL{i}"] = name
        header[f"LLIMIT{i}"] = float(grid.llimits[i - 1])
        header[f"LSTEP{i}"] = float(grid.steps[i - 1])
        header[f"LNPTS{i}"] = int(grid.shape[i - 1])
    header["NPIX"] = grid.npix
    header["VACUUM"] = (int(grid.vacuum is not False), "1 vacuum, 0 air wavelengths")
    if len(grid.sections) == 1:
        (section,) = grid.sections
        header["CRVAL1"], header["CDELT1"], header["LOGW"] = (*section.wave, section.logw)
    else:
        header["NSECT"] = len(grid.sections)
        for s, section in enumerate(grid.sections, 1):
            header[f"SNPIX{s}"] = section.npix
            header[f"SWAVE{s}"], header[f"SDWAVE{s}"] = section.wave
            header[f"SLOGW{s}"] = section.logw
            if section.resolution is not None:
                header[f"SRES{s}"] = section.resolution
    if "ID" in grid.metadata:
        header["GRIDID"] = str(grid.metadata["ID"])[:68]
    header["BUNIT"] = "model flux"
    header.tofile(path, overwrite=True)
    with open(path, "ab") as handle:
        for start in range(0, grid.n_nodes, 256):
            handle.write(np.asarray(grid.values[start : start + 256], dtype=">f4").tobytes())
        padding = -(grid.n_nodes * grid.npix * 4) % 2880
        handle.write(b"\0" * padding)
