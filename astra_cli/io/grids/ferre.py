"""FERRE's grid files: ASCII (`.dat`: the `&SYNTH` header, then the data) and binary (`.hdr`
with the header, `.unf` with the data, as FERRE's `ascii2bin` writes them), PCA-compressed
(NPCA) or not, one section or several (MULTI), by model or by pixel (TRANSPOSED).

The layouts follow FERRE 5.1.1's readers (`read_f.f90`, `ascii2bin.f90`) and manual:

- one master header block, then MULTI section blocks, each section with its own NPIX, WAVE,
  LOGW, RESOLUTION; a model is its sections' pixels one after the other (the master's NPIX is
  then ignored);
- the data: one model per record, the last label varying fastest (with TRANSPOSED = 1, one
  pixel per record, every model in it); ASCII records are read list-directed (a model starts
  on a new line and may continue over several; what is left on its last line is not data);
- binary: records of float32 in the machine's byte order, back to back, no markers, the
  `.unf` named as the header file with its last three characters replaced by `unf`;
- NPCA = n_1 ... n_S: the uncompressed spectrum in S pieces of n_s pixels, each node's NPIX
  = S*K coefficients, K per piece; before the models (in the `.hdr` for binary grids) come
  the mean spectrum, a vector V FERRE uses only to project observations, and the K component
  spectra.

What FERRE would read but astra cannot use as FERRE does is refused with the file and the
keyword named: photometric sections (RESOLUTION = 0), a TRANSPOSED PCA grid, a grid whose
data do not hold exactly the values the header promises.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np

from astra_cli.io.formats import binary_data_path
from astra_cli.io.grids.model import LOGW_LINEAR, LOGW_LN, LOGW_LOG10, GridData, PcaBasis, Section
from astra_cli.io.grids.namelist import MAX_DIMENSIONS, Block, NamelistError, read_blocks, tokens

HEADER_LINE_LIMIT = 100_000
"""Lines read while looking for the header's end: a data file with no header stops here."""

_METADATA_KEYS = (
    "ID", "DATE", "SYNTHFILE_INTERNAL", "SYNSPEC", "MODO", "ORIGINAL_SAMPLING", "INVALID_CODE",
    "CONTINUUM", "PRECONTINUUM", "FILE_DATA19", "FILE_DATA20", "SPECLIB_VERS",
    *(f"COMMENTS{i}" for i in range(1, 15)),
)  # fmt: skip


class FerreGridError(ValueError):
    """A FERRE grid astra cannot read exactly; the message names the keyword or line."""


@dataclass(frozen=True)
class FerreHeader:
    """What the header blocks say, checked."""

    labels: tuple[str, ...]
    llimits: np.ndarray
    steps: np.ndarray
    shape: tuple[int, ...]
    sections: tuple[Section, ...]
    stored: int
    """Values per record of a node: its pixels, or its PCA coefficients."""
    transposed: bool
    pca_pieces: tuple[int, ...]
    constant: float
    vacuum: bool | None
    invalid_code: float | None
    metadata: dict[str, Any]

    @property
    def n_nodes(self) -> int:
        return int(np.prod(self.shape))

    @property
    def npix(self) -> int:
        return sum(section.npix for section in self.sections)


def header_blocks(stream: IO[str]) -> tuple[list[Block], int]:
    """The master block and its MULTI section blocks, and the number of lines they take: the
    data start on the next line."""
    text: list[str] = []
    closed, needed, in_block = 0, 1, False
    for number, line in enumerate(stream, 1):
        text.append(line)
        for token in tokens(line, number):
            if token.kind == "open":
                name = token.text[1:].upper()
                in_block = in_block or name == "SYNTH"
                if name == "END" and in_block:
                    in_block, closed = False, closed + 1
            elif token.kind == "slash" and in_block:
                in_block, closed = False, closed + 1
        if closed == 1 and needed == 1:
            needed = 1 + int(read_blocks("".join(text), count=1)[0].get("MULTI", 0))
        if closed >= needed:
            return read_blocks("".join(text), count=needed), number
        if number >= HEADER_LINE_LIMIT:
            break
    if closed == 0:
        raise FerreGridError("no &SYNTH header (is it a FERRE grid?)")
    raise FerreGridError(f"the header has {closed} &SYNTH block(s); MULTI asks for {needed}")


def parse_header(blocks: Sequence[Block]) -> FerreHeader:
    """Check the blocks the way FERRE reads them, and say what the grid is."""
    master, sections_blocks = blocks[0], list(blocks[1:])
    final = blocks[-1]
    dims = final.get("N_OF_DIM")
    if not isinstance(dims, int) or not 1 <= dims <= MAX_DIMENSIONS:
        raise FerreGridError(f"N_OF_DIM must be 1 to {MAX_DIMENSIONS}, not {dims}")
    lattice = _lattice(final, dims)
    for index, block in enumerate(sections_blocks, 1):
        if _lattice(block, dims) != lattice:
            raise FerreGridError(
                f"section block {index} gives other N_P, LLIMITS, STEPS or LABEL than the last "
                "block (FERRE requires them equal)"
            )
    if sections_blocks and _lattice(master, dims) != lattice:
        raise FerreGridError(
            "the master block gives other N_P, LLIMITS, STEPS or LABEL than the section blocks"
        )
    shape, llimits, steps, labels = lattice
    if any(n < 2 for n in shape):
        raise FerreGridError(f"N_P = {' '.join(map(str, shape))}: every label needs 2 nodes")
    if not all(np.isfinite(llimits)) or not all(step > 0 for step in steps):
        raise FerreGridError(f"STEPS must be positive (and LLIMITS finite), not {list(steps)}")

    pieces = tuple(n for n in master.array("NPCA") if n)
    if any(n < 0 for n in pieces):
        raise FerreGridError(f"NPCA = {pieces}: piece sizes must be positive")
    described = sections_blocks or [master]
    if pieces and not sections_blocks:
        raise FerreGridError(
            "an NPCA grid needs MULTI section blocks: without them it has no wavelengths"
        )
    sections = tuple(_sections(described))
    stored = _stored_values(master, sections, pieces)
    vacuum = _vacuum(blocks)
    transposed = bool(final.get("TRANSPOSED", 0))
    if transposed and pieces:
        raise FerreGridError("TRANSPOSED = 1 with NPCA: FERRE stores PCA grids by model only")
    metadata = {
        key: final.values[key] for key in _METADATA_KEYS if final.values.get(key) is not None
    }
    return FerreHeader(
        labels=labels,
        llimits=np.array(llimits),
        steps=np.array(steps),
        shape=shape,
        sections=sections,
        stored=stored,
        transposed=transposed,
        pca_pieces=pieces,
        constant=float(final.get("CONSTANT", 0.0)),
        vacuum=vacuum,
        invalid_code=final.get("INVALID_CODE") if "INVALID_CODE" in _given(blocks) else None,
        metadata=metadata,
    )


def _given(blocks: Sequence[Block]) -> set[str]:
    return set().union(*(block.given for block in blocks))


class Lattice(NamedTuple):
    shape: tuple[int, ...]
    llimits: tuple[float, ...]
    steps: tuple[float, ...]
    labels: tuple[str, ...]


def _lattice(block: Block, dims: int) -> Lattice:
    n_p, llimits, steps = (block.array(name)[:dims] for name in ("N_P", "LLIMITS", "STEPS"))
    for name, values in (("N_P", n_p), ("LLIMITS", llimits), ("STEPS", steps)):
        if len(values) < dims or any(value is None for value in values):
            raise FerreGridError(f"{name} gives {len(values)} of the N_OF_DIM = {dims} values")
    raw = (block.values.get("LABEL") or [None] * dims)[:dims]
    labels = tuple(label.strip() if label and label.strip() else f"label{i}"
                   for i, label in enumerate(raw, 1))  # fmt: skip
    return Lattice(tuple(n_p), tuple(llimits), tuple(steps), labels)


def _sections(blocks: Sequence[Block]) -> Iterator[Section]:
    start = 0
    for index, block in enumerate(blocks, 1):
        where = f"section {index}: " if len(blocks) > 1 else ""
        npix, wave = block.get("NPIX"), block.array("WAVE")
        logw, resolution = block.get("LOGW", LOGW_LINEAR), block.values.get("RESOLUTION")
        if not isinstance(npix, int) or npix < 1:
            raise FerreGridError(f"{where}NPIX must be a positive number of pixels, not {npix}")
        if len(wave) != 2 or None in wave:
            raise FerreGridError(f"{where}WAVE needs 2 values (first pixel, step), not {wave}")
        if logw not in (LOGW_LINEAR, LOGW_LOG10, LOGW_LN):
            raise FerreGridError(f"{where}LOGW must be 0, 1 or 2, not {logw}")
        if not wave[1] > 0:
            raise FerreGridError(f"{where}WAVE step {wave[1]}: wavelengths must increase")
        if resolution is not None and abs(resolution) < 1e-6:
            raise FerreGridError(
                f"{where}RESOLUTION = 0 marks photometry, which astra does not fit"
            )
        yield Section(start, npix, (float(wave[0]), float(wave[1])), logw, resolution)
        start += npix


def _stored_values(master: Block, sections: Sequence[Section], pieces: Sequence[int]) -> int:
    npix = sum(section.npix for section in sections)
    if not pieces:
        return npix
    coefficients = master.get("NPIX")
    if sum(pieces) != npix:
        raise FerreGridError(
            f"NPCA pieces add up to {sum(pieces)} pixels, the MULTI sections to {npix}"
        )
    if not isinstance(coefficients, int) or coefficients < 1 or coefficients % len(pieces):
        raise FerreGridError(
            f"NPIX = {coefficients} coefficients cannot be {len(pieces)} NPCA pieces of the same "
            "number of components"
        )
    return coefficients


def _vacuum(blocks: Sequence[Block]) -> bool | None:
    """True or False when every block that describes wavelengths agrees; None when no block
    says (FERRE's manual then means air, VACUUM = 0)."""
    if "VACUUM" not in _given(blocks):
        return None
    described = blocks[1:] or blocks
    values = {int(block.get("VACUUM", 0)) for block in described}
    if len(values) > 1:
        raise FerreGridError("VACUUM differs between sections")
    (value,) = values
    if value not in (0, 1):
        raise FerreGridError(f"VACUUM must be 0 (air) or 1 (vacuum), not {value}")
    return bool(value)


# --- data ----------------------------------------------------------------------------------------


class ListDirected:
    """Fortran list-directed reads of numbers over lines of text: each read starts on a new
    line, takes values until it has enough, and drops the rest of its last line."""

    def __init__(self, lines: Iterator[str], first_line: int) -> None:
        self._lines = lines
        self.line = first_line - 1

    def read(self, count: int, what: str, out: np.ndarray | None = None) -> np.ndarray:
        values = out if out is not None else np.empty(count, dtype=np.float32)
        filled = 0
        while filled < count:
            raw = next(self._lines, None)
            self.line += 1
            if raw is None:
                raise FerreGridError(f"the file ends in {what}: {filled} of {count} values")
            row = self._parse(raw, what)
            take = min(count - filled, row.size)
            if take < row.size:
                raise FerreGridError(
                    f"line {self.line} ({what}): {row.size - take} value(s) beyond the "
                    f"{count} the header gives it (FERRE would drop them: is NPIX right?)"
                )
            values[filled : filled + take] = row[:take]
            filled += take
        return values

    def _parse(self, raw: str, what: str) -> np.ndarray:
        if "*" in raw or "," in raw or "/" in raw:
            return self._slow(raw, what)
        text = raw.replace("D", "E").replace("d", "e") if ("D" in raw or "d" in raw) else raw
        try:
            return np.fromstring(text, dtype=np.float64, sep=" ")
        except ValueError:
            return self._slow(raw, what)

    def _slow(self, raw: str, what: str) -> np.ndarray:
        """Repeat counts (`3*0.5`) and commas; null values and `/` are refused: FERRE would
        leave such values unset."""
        values: list[float] = []
        for item in re.split(r"[\s,]+", raw.strip()) if raw.strip() else []:
            repeat, _, number = item.rpartition("*")
            try:
                value = float(number.replace("D", "E").replace("d", "e"))
                times = int(repeat) if repeat else 1
            except ValueError:
                raise FerreGridError(
                    f"line {self.line} ({what}): {item!r} is not a number"
                ) from None
            values.extend([value] * times)
        if re.search(r",\s*,|^\s*,|/", raw):
            raise FerreGridError(
                f"line {self.line} ({what}): an empty value or '/', which FERRE leaves unset"
            )
        return np.array(values, dtype=np.float64)


def read_ascii(path: str | os.PathLike[str]) -> GridData:
    """An ASCII grid, read whole (ASCII cannot be memory-mapped: `astra grid convert` makes a
    binary copy that can)."""
    with open(path, errors="replace") as stream:
        blocks, header_lines = _header_of(stream, path)
        header = parse_header(blocks)
        data = ListDirected(stream, header_lines + 1)
        try:
            pca = _read_basis(header, data) if header.pca_pieces else None
            values = np.empty((header.n_nodes, header.stored), dtype=np.float32)
            if header.transposed:
                by_pixel = np.empty((header.stored, header.n_nodes), dtype=np.float32)
                for pixel in range(header.stored):
                    data.read(header.n_nodes, f"pixel {pixel + 1}", by_pixel[pixel])
                values[:] = by_pixel.T
            else:
                for node in range(header.n_nodes):
                    data.read(header.stored, f"model {node + 1}", values[node])
        except FerreGridError as error:
            raise FerreGridError(f"{path}: {error}") from None
        if any(line.strip() for line in stream):
            raise FerreGridError(
                f"{path}: more data than the header's {header.n_nodes} models of "
                f"{header.stored} values (N_P, NPIX or NPCA wrong?)"
            )
    return _grid(path, "FERRE ASCII", header, values, pca)


def _header_of(stream: IO[str], path: str | os.PathLike[str]) -> tuple[list[Block], int]:
    try:
        blocks, lines = header_blocks(stream)
        parse_header(blocks)  # errors about the header name the file, below
        return blocks, lines
    except (FerreGridError, NamelistError) as error:
        raise FerreGridError(f"{path}: {error}") from None


def _read_basis(header: FerreHeader, data: ListDirected) -> PcaBasis:
    pixels = header.npix
    mean = data.read(pixels, "the PCA mean").astype(np.float64)
    data.read(pixels, "the PCA vector V")  # only for projecting observations, not used here
    k = header.stored // len(header.pca_pieces)
    components = np.empty((k, pixels), dtype=np.float32)
    for component in range(k):
        data.read(pixels, f"PCA component {component + 1}", components[component])
    return PcaBasis(mean, components, header.pca_pieces, header.constant)


def read_binary(path: str | os.PathLike[str]) -> GridData:
    """A binary grid: its data memory-mapped read-only, shared by every process that maps it."""
    with open(path, errors="replace") as stream:
        blocks, header_lines = _header_of(stream, path)
        header = parse_header(blocks)
        pca = None
        if header.pca_pieces:
            try:
                pca = _read_basis(header, ListDirected(stream, header_lines + 1))
            except FerreGridError as error:
                raise FerreGridError(f"{path}: {error}") from None
    data = binary_data_path(path)
    values = map_binary(data, header)
    return _grid(path, "FERRE binary", header, values, pca)


def map_binary(data: Path, header: FerreHeader) -> np.ndarray:
    """The .unf as (nodes, stored values), float32, without reading it."""
    if not data.is_file():
        raise FerreGridError(f"{data}: the binary grid's data file is missing")
    expected = header.n_nodes * header.stored * 4
    size = data.stat().st_size
    if size != expected:
        raise FerreGridError(
            f"{data}: {size} bytes, but the header's {header.n_nodes} models of "
            f"{header.stored} float32 values take {expected}"
        )
    order = _byte_order(data, header.stored)
    records = (
        (header.stored, header.n_nodes) if header.transposed else (header.n_nodes, header.stored)
    )
    mapped = np.memmap(data, dtype=np.dtype(f"{order}f4"), mode="r", shape=records)
    return mapped.T if header.transposed else mapped


def _byte_order(data: Path, record: int) -> str:
    """'<' or '>': FERRE writes the machine's own; a file from a big-endian machine reads as
    nonsense the other way round, which the first record shows."""
    with open(data, "rb") as handle:
        first = handle.read(4 * min(record, 65536))
    for order in ("<", ">"):
        values = np.frombuffer(first, dtype=f"{order}f4")
        if np.all(np.isfinite(values)) and np.all(np.abs(values) < 1e30):
            return order
    raise FerreGridError(f"{data}: the first record is not plausible float32 in either byte order")


def _grid(
    path: str | os.PathLike[str],
    kind: str,
    header: FerreHeader,
    values: np.ndarray,
    pca: PcaBasis | None,
) -> GridData:
    metadata = dict(header.metadata)
    if header.invalid_code is not None:
        metadata["INVALID_CODE"] = header.invalid_code
    return GridData(
        path=os.fspath(path),
        format=kind,
        labels=header.labels,
        llimits=header.llimits,
        steps=header.steps,
        shape=header.shape,
        sections=header.sections,
        values=values,
        pca=pca,
        vacuum=header.vacuum,
        metadata=metadata,
    )


def read_header(path: str | os.PathLike[str]) -> FerreHeader:
    with open(path, errors="replace") as stream:
        blocks, _ = _header_of(stream, path)
    return parse_header(blocks)


# --- writing -------------------------------------------------------------------------------------


def header_text(grid: GridData) -> str:
    """The &SYNTH blocks of a grid: one master block, and MULTI section blocks when the grid
    has several sections (or is PCA-compressed), in the layout of the ASPCAP libraries."""
    dims = len(grid.labels)
    lattice = [
        f" N_OF_DIM = {dims}",
        " N_P = " + " ".join(str(n) for n in grid.shape),
        *(f" LABEL({i}) = {_quoted(label)}" for i, label in enumerate(grid.labels, 1)),
        " LLIMITS = " + " ".join(_exact(value) for value in grid.llimits),
        " STEPS = " + " ".join(_exact(value) for value in grid.steps),
    ]
    meta = [f" {key} = {_value_text(value)}" for key, value in grid.metadata.items()]
    vacuum = [] if grid.vacuum is None else [f" VACUUM = {int(grid.vacuum)}"]
    multi = len(grid.sections) > 1 or grid.pca is not None
    master = [" &SYNTH", *meta]
    if multi:
        master.append(f" MULTI = {len(grid.sections)}")
    if grid.pca is not None:
        master.append(" NPCA = " + " ".join(str(n) for n in grid.pca.piece_pixels))
        master.append(f" NPIX = {grid.values.shape[1]}")
        if grid.pca.constant:
            master.append(f" CONSTANT = {grid.pca.constant:.10g}")
    elif multi:
        master.append(f" NPIX = {grid.npix}")
    blocks = [master + lattice]
    if not multi:
        blocks[0] += _section_lines(grid.sections[0]) + vacuum
    else:
        blocks += [[" &SYNTH", *lattice, *_section_lines(s), *vacuum] for s in grid.sections]
    return "".join("\n".join([*block, " /"]) + "\n" for block in blocks)


def _section_lines(section: Section) -> list[str]:
    lines = [
        f" NPIX = {section.npix}",
        f" WAVE = {_exact(section.wave[0])} {_exact(section.wave[1])}",
        f" LOGW = {section.logw}",
    ]
    if section.resolution is not None:
        lines.append(f" RESOLUTION = {section.resolution:.10g}")
    return lines


def _exact(value: float) -> str:
    """The shortest text that reads back as exactly this float (Fortran reads `6e-06`)."""
    return repr(float(value))


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _value_text(value: Any) -> str:
    if isinstance(value, str):
        return _quoted(value)
    if isinstance(value, list):
        return " ".join(_value_text(v) for v in value if v is not None)
    return f"{value:.10g}" if isinstance(value, float) else str(value)


def write_ascii(grid: GridData, path: str | os.PathLike[str]) -> None:
    """FERRE ASCII, values to 9 significant digits: every float32 reads back exactly."""
    with open(path, "w") as handle:
        handle.write(header_text(grid))
        _write_basis_text(grid, handle)
        for start in range(0, grid.n_nodes, 256):
            block = np.asarray(grid.values[start : start + 256], dtype=np.float64)
            np.savetxt(handle, block, fmt="%.9g")


def _write_basis_text(grid: GridData, handle: IO[str]) -> None:
    if grid.pca is not None:
        rows = [grid.pca.mean, np.zeros_like(grid.pca.mean), *grid.pca.components]
        np.savetxt(handle, np.asarray(rows, dtype=np.float64), fmt="%.10g")


def write_binary(grid: GridData, path: str | os.PathLike[str]) -> Path:
    """`path` (.hdr: the header, lines padded to 600 characters as ascii2bin writes them) and
    the .unf beside it (little-endian float32, one record per model); returns the .unf."""
    text = header_text(grid)
    with open(path, "w") as handle:
        for line in text.splitlines():
            handle.write(line.ljust(600)[:600] + "\n")
        _write_basis_text(grid, handle)
    data = binary_data_path(path)
    with open(data, "wb") as handle:
        for start in range(0, grid.n_nodes, 256):
            block = np.asarray(grid.values[start : start + 256], dtype="<f4")
            handle.write(block.tobytes())
    return data
