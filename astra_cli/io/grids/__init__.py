"""Model grid files: astra's FITS grids, FERRE's ASCII and binary grids (MULTI, NPCA,
TRANSPOSED), and `.npz`, read into one `GridData`, and converted between them.

`read_grid` maps the data where the format allows (FERRE binary, astra FITS) and reads it
whole where it does not (ASCII, `.npz`); `check_grid` reads headers only and checks that the
data hold exactly what they promise; `verify_grid` also reads every value once, so that the
invoking process refuses a grid holding NaN or infinity before any work instead of every run
settling on the corner the NaNs push the fit to. Each raises ModelFileError naming the file and
what is wrong.

`.npz` grids hold arrays `flux` (the lattice's shape then NPIX, or nodes x NPIX), `labels`,
`llimits`, `steps`, `wave` (`[first, step]`, or one such pair per section with `section_npix`),
`logw` (one, or one per section) and optionally `vacuum` (1 when absent).
"""

from __future__ import annotations

import contextlib
import mmap
import os
from pathlib import Path
from typing import Any

import numpy as np

from astra_cli.io.grids import astrafits, ferre
from astra_cli.io.grids.model import GridData, Section, check_columns
from astra_cli.io.grids.namelist import NamelistError
from astra_cli.io.modelfiles import ModelFileError, file_kind, fits_headers, load_npz

__all__ = [
    "FORMATS",
    "GridData",
    "check_grid",
    "combine",
    "format_by_name",
    "grid_format",
    "grid_header",
    "read_grid",
    "verify_grid",
    "write_grid",
]

FORMATS = {
    "astra": "astra FITS grid (.fits): fast to load, memory-mapped",
    "ferre-binary": "FERRE binary (.hdr + .unf, as ascii2bin writes them): memory-mapped",
    "ferre-ascii": "FERRE ASCII (a &SYNTH header and the models as text): read whole",
    "npz": "numpy .npz of plain arrays: read whole",
}


def format_by_name(path: str | os.PathLike[str]) -> str | None:
    """The grid format a new file's name asks for: .fits (astra), .hdr (FERRE binary), .npz,
    .dat (FERRE ASCII)."""
    name = os.fspath(path).lower()
    for endings, fmt in (
        ((".fits", ".fit", ".fts"), "astra"),
        ((".hdr",), "ferre-binary"),
        ((".npz",), "npz"),
        ((".dat", ".ferre"), "ferre-ascii"),
    ):
        if name.endswith(endings):
            return fmt
    return None


def grid_format(path: str | os.PathLike[str]) -> str:
    """Which of FORMATS a grid file is in, from its name and first bytes."""
    kind = file_kind(path)
    if kind in ("fits", "npz"):
        return "astra" if kind == "fits" else "npz"
    return "ferre-binary" if os.fspath(path).lower().endswith(".hdr") else "ferre-ascii"


def read_grid(path: str | os.PathLike[str]) -> GridData:
    """The grid with its data (memory-mapped where the format allows)."""
    return _opened(path, with_data=True)


def grid_header(path: str | os.PathLike[str]) -> GridData:
    """The header alone, unchecked against the data (`values` is empty): for describing."""
    fmt = grid_format(path)
    try:
        if fmt == "ferre-ascii":
            header = ferre.read_header(path)
            return ferre._grid(path, "FERRE ASCII", header, np.empty((0, 0), np.float32), None)
    except (ferre.FerreGridError, NamelistError) as error:
        raise ModelFileError(f"FERRE grid {path}: {error}") from None
    return check_grid(path)


def check_grid(path: str | os.PathLike[str]) -> GridData:
    """The grid's header, checked against its data's size without reading the data
    (`values` is None); an ASCII grid's values are counted."""
    return _opened(path, with_data=False)


def verify_grid(path: str | os.PathLike[str]) -> GridData:
    """`check_grid`, and every value (or PCA coefficient and basis vector) finite: the whole
    file is read once, block by block through its memory map (an ASCII grid's count already
    looked at every value)."""
    if grid_format(path) == "ferre-ascii":
        return check_grid(path)
    grid = read_grid(path)
    arrays = {"values": grid.values}
    if grid.pca is not None:
        arrays |= {"PCA mean": grid.pca.mean, "PCA components": grid.pca.components}
    for what, array in arrays.items():
        _check_finite(array, what, grid)
    return _without_values(grid)


VERIFY_BLOCK_VALUES = 1 << 24
"""Values looked at per step of `verify_grid`: 64 MB of float32, to bound its memory."""


def _check_finite(array: np.ndarray, what: str, grid: GridData) -> None:
    rows = np.atleast_2d(array)
    step = max(1, VERIFY_BLOCK_VALUES // max(rows.shape[1], 1))
    mapping = _mapping_of(array)
    for start in range(0, len(rows), step):
        finite = np.isfinite(rows[start : start + step])
        if mapping is not None:
            _forget_pages(mapping)
        if finite.all():
            continue
        row, column = np.argwhere(~finite)[0]
        bad = sum(
            int(rows[at : at + step].size - np.count_nonzero(np.isfinite(rows[at : at + step])))
            for at in range(start, len(rows), step)
        )
        where = f"node {start + row + 1}" if what == "values" else f"row {start + row + 1}"
        at = ""
        if what == "values" and grid.shape:
            index = np.unravel_index(start + row, grid.shape)
            labels = ", ".join(
                f"{label}={grid.llimits[i] + grid.steps[i] * index[i]:g}"
                for i, label in enumerate(grid.labels)
            )
            at = f" ({labels})"
        raise ModelFileError(
            f"model grid {grid.path}: {bad} {what} are NaN or infinite, the first at {where}"
            f"{at}, value {column + 1}; a fit against them would be meaningless"
        )


def _mapping_of(array: np.ndarray) -> mmap.mmap | None:
    """The memory map an array's data lie in (a FERRE binary or FITS grid's), if any."""
    base: Any = array
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    return base


def _forget_pages(mapping: mmap.mmap) -> None:
    """Unmap the pages of the grid read so far from this process: they stay in the page cache,
    but the process no longer holds them. A check reads the whole grid, and without this the
    process that makes it would hold every page of it (0.97 GB in its PSS for the grid of
    bench_grid_memory.py) until the check ends."""
    if hasattr(mmap, "MADV_DONTNEED"):
        with contextlib.suppress(OSError, ValueError):  # a closed map or an unsupported file
            mapping.madvise(mmap.MADV_DONTNEED)


def _opened(path: str | os.PathLike[str], *, with_data: bool) -> GridData:
    fmt = grid_format(path)
    try:
        if fmt == "astra":
            grid = _astra(path, with_data)
        elif fmt == "npz":
            grid = _npz(path, load_npz(path))
        elif fmt == "ferre-binary":
            grid = ferre.read_binary(path)
        elif with_data:
            grid = ferre.read_ascii(path)
        else:
            grid = _ascii_checked(path)
        check_columns(grid)
        return grid
    except ModelFileError:
        raise
    except (ferre.FerreGridError, NamelistError) as error:
        message = str(error)
        prefix = "" if message.startswith(os.fspath(path)) else f"{path}: "
        raise ModelFileError(f"FERRE grid {prefix}{message}") from None
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise ModelFileError(f"cannot read model grid {path}: {error}") from None


def _astra(path: str | os.PathLike[str], with_data: bool) -> GridData:
    from astropy.io import fits

    header = fits_headers(path, "model grid")[0]
    if not astrafits.is_astra_grid(header):
        raise ModelFileError(
            f"{path} is not an astra model grid (no ASTRAGRD/NLABELS keywords; the format is "
            "in the README, 'Model files')"
        )
    grid = astrafits.grid_from_header(header, path, np.empty((0, 0), dtype=np.float32))
    problem = astrafits.check_sections(grid.sections)
    if problem:
        raise ModelFileError(f"model grid {path}: {problem}")
    axes = tuple(int(header[f"NAXIS{i}"]) for i in range(int(header["NAXIS"]), 0, -1))
    if axes != (*grid.shape, grid.npix):
        raise ModelFileError(
            f"model grid {path}: flux has shape {axes}, header says {(*grid.shape, grid.npix)}"
        )
    _check_lattice(grid, path)
    if not with_data:
        return _without_values(grid)
    hdus = fits.open(path, memmap=True, mode="readonly")
    data = hdus[0].data  # a read-only map, kept open as long as the array lives
    return _with_values(grid, data.reshape(grid.n_nodes, grid.npix))


def _npz(path: str | os.PathLike[str], arrays: dict[str, Any]) -> GridData:
    labels = tuple(str(name) for name in np.atleast_1d(arrays["labels"]))
    llimits = np.asarray(arrays["llimits"], dtype=float)
    steps = np.asarray(arrays["steps"], dtype=float)
    flux = np.asarray(arrays["flux"], dtype=np.float32)
    shape = tuple(flux.shape[:-1]) if flux.ndim == len(labels) + 1 else None
    if shape is None:
        raise ModelFileError(
            f"model grid {path}: flux has {flux.ndim} dimensions; {len(labels)} labels need "
            f"{len(labels) + 1} (the lattice, then the pixels)"
        )
    wave = np.atleast_2d(np.asarray(arrays["wave"], dtype=float))
    logw = np.atleast_1d(np.asarray(arrays.get("logw", 1), dtype=int))
    widths = np.atleast_1d(arrays.get("section_npix", [flux.shape[-1]])).astype(int)
    if not (len(wave) == len(widths) == len(logw) or (len(logw) == 1 and len(wave) == len(widths))):
        raise ModelFileError(f"model grid {path}: wave, logw and section_npix disagree in length")
    if widths.sum() != flux.shape[-1]:
        raise ModelFileError(
            f"model grid {path}: sections of {widths.sum()} pixels, flux has {flux.shape[-1]}"
        )
    starts = np.concatenate([[0], np.cumsum(widths)[:-1]])
    sections = tuple(
        Section(int(start), int(width), (float(w[0]), float(w[1])), int(logw[i % len(logw)]))
        for i, (start, width, w) in enumerate(zip(starts, widths, wave, strict=True))
    )
    grid = GridData(
        path=os.fspath(path),
        format="npz",
        labels=labels,
        llimits=llimits,
        steps=steps,
        shape=shape,
        sections=sections,
        values=flux.reshape(-1, flux.shape[-1]),
        vacuum=bool(int(arrays.get("vacuum", 1))),
    )
    if len(llimits) != len(labels) or len(steps) != len(labels):
        raise ModelFileError(f"model grid {path}: {len(labels)} labels but {len(llimits)} llimits")
    problem = astrafits.check_sections(sections)
    if problem:
        raise ModelFileError(f"model grid {path}: {problem}")
    _check_lattice(grid, path)
    return grid


def _check_lattice(grid: GridData, path: str | os.PathLike[str]) -> None:
    if any(n < 2 for n in grid.shape):
        raise ModelFileError(f"model grid {path}: every label needs at least 2 nodes")
    if not (np.all(np.isfinite(grid.llimits)) and np.all(grid.steps > 0)):
        raise ModelFileError(
            f"model grid {path}: node steps must be positive, not {list(grid.steps)}"
        )


def _ascii_checked(path: str | os.PathLike[str]) -> GridData:
    """The header, and a count of the values that follow it (cheaper than reading them)."""
    header = ferre.read_header(path)
    expected = header.n_nodes * header.stored
    if header.pca_pieces:
        k = header.stored // len(header.pca_pieces)
        expected += (2 + k) * header.npix
    count, first_bad = 0, None
    with open(path, errors="replace") as stream:
        ferre.header_blocks(stream)  # to the first line of data
        for number, line in enumerate(stream, 1):
            tokens = line.replace(",", " ").split()
            count += len(tokens)
            # Every spelling of NaN and infinity has an N; no finite Fortran number does.
            if first_bad is None and any("n" in token.lower() for token in tokens):
                first_bad = number
    if first_bad is not None:
        raise ModelFileError(
            f"FERRE grid {path}: NaN or infinite values, the first on line {first_bad} of the "
            "data; a fit against them would be meaningless"
        )
    if count != expected:
        what = f"{header.n_nodes} models of {header.stored} values"
        raise ModelFileError(
            f"FERRE grid {path}: {count} values after the header, expected {expected} ({what}"
            f"{' and the PCA basis' if header.pca_pieces else ''}); is NPIX, N_P or MULTI right?"
        )
    grid = ferre._grid(path, "FERRE ASCII", header, np.empty((0, 0), dtype=np.float32), None)
    return _without_values(grid)


def _without_values(grid: GridData) -> GridData:
    from dataclasses import replace

    return replace(grid, values=np.empty((0, 0), dtype=np.float32))


def _with_values(grid: GridData, values: np.ndarray) -> GridData:
    from dataclasses import replace

    return replace(grid, values=values)


def write_grid(grid: GridData, path: str | os.PathLike[str], fmt: str) -> list[Path]:
    """Write `grid` in one of FORMATS (a PCA grid is expanded for astra FITS and `.npz`);
    returns the files written."""
    if fmt == "ferre-ascii":
        ferre.write_ascii(grid, path)
        return [Path(path)]
    if fmt == "ferre-binary":
        return [Path(path), ferre.write_binary(grid, path)]
    full = _expanded(grid)
    if fmt == "astra":
        astrafits.write(full, path)
        return [Path(path)]
    if fmt == "npz":
        np.savez(
            path,
            flux=np.asarray(full.values, dtype=np.float32).reshape(*full.shape, full.npix),
            labels=np.array(full.labels),
            llimits=full.llimits,
            steps=full.steps,
            wave=np.array([section.wave for section in full.sections]),
            logw=np.array([section.logw for section in full.sections]),
            section_npix=np.array([section.npix for section in full.sections]),
            vacuum=np.array(int(full.vacuum is not False)),
        )
        return [Path(path)]
    raise ValueError(f"unknown grid format {fmt!r}; formats: {', '.join(FORMATS)}")


def _expanded(grid: GridData) -> GridData:
    """A PCA grid as full spectra (what astra FITS and .npz hold), block by block."""
    from dataclasses import replace

    if grid.pca is None:
        return grid
    spectra = np.empty((grid.n_nodes, grid.npix), dtype=np.float32)
    for start in range(0, grid.n_nodes, 256):
        spectra[start : start + 256] = grid.pca.expand(grid.values[start : start + 256])
    return replace(grid, values=spectra, pca=None)


def combine(grids: list[GridData]) -> GridData:
    """Several grids of one lattice as one, their pixels one after the other (what FERRE does
    with SYNTHFILE(1), SYNTHFILE(2), ...: each file adds its sections). Full grids only."""
    from dataclasses import replace

    first = grids[0]
    for other in grids[1:]:
        same = (
            other.labels == first.labels
            and other.shape == first.shape
            and np.allclose(other.llimits, first.llimits, rtol=0, atol=1e-5)
            and np.allclose(other.steps, first.steps, rtol=0, atol=1e-5)
        )
        if not same:
            raise ModelFileError(
                f"{other.path} has other labels, N_P, LLIMITS or STEPS than {first.path}; grids "
                "are combined only on the same lattice, as FERRE requires"
            )
        if other.vacuum != first.vacuum:
            raise ModelFileError(f"{other.path} and {first.path} differ in VACUUM")
    if any(grid.pca is not None for grid in grids):
        raise ModelFileError("PCA-compressed grids cannot be combined; convert each to full first")
    sections, start = [], 0
    for grid in grids:
        for section in grid.sections:
            sections.append(replace(section, start=start))
            start += section.npix
    values = np.hstack([np.asarray(grid.values, dtype=np.float32) for grid in grids])
    path = " + ".join(grid.path for grid in grids)
    return replace(first, path=path, sections=tuple(sections), values=values)
