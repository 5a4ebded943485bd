"""Writing a results table a block of rows at a time, so that a store of any size is exported
in bounded memory: astropy writes a table it holds whole, and a million runs made 4 to 6 GB
of table and copies.

Every block has the whole table's columns, types and widths (`export.TableLayout`), so astropy
writes each as it would have written its rows within the whole table. What comes before the
rows (a FITS header, the CSV names line, the ECSV or VOTable header) is written once, from the
first block; the rows of each block follow; and what comes after them (VOTable's closing
elements, FITS's padding) closes the file. The file is the one astropy writes for the whole
table. Parquet alone is made whole (pyarrow writes its columns together), from the blocks.

A file is written under a temporary name beside it and renamed once complete: a failed or
interrupted export (Ctrl-C, SIGTERM, SIGHUP: `astra results` stops on them as on Ctrl-C)
leaves the previous table, if any, as it was, and no partial one.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from astra_cli.errors import AstraError, UsageError
from astra_cli.io.export import FORMATS, StoreChanged

BLOCK_ROWS = 10_000
"""Rows made into a table and written at a time: some tens of MB of memory, whatever the
store holds."""

_ASTROPY_FORMATS = {
    "ecsv": "ascii.ecsv", "csv": "ascii.csv", "tsv": "ascii.tab", "votable": "votable",
    "parquet": "parquet",
}  # fmt: skip
_FITS_NAMES = {"obj": "APOGEE_ID"}
"""Columns that allStar names otherwise than upper case alone."""
_FITS_BLOCK = 2880


@contextlib.contextmanager
def table_output(destination: str, file_format: str) -> Iterator[TableOutput]:
    """Where a table is to be written (a file, or standard output: '-'), made ready before
    the store is read: a format astra cannot write, or a file that cannot be made, is said
    at once rather than after reading a million runs."""
    if file_format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {file_format!r}")
    if file_format == "parquet":
        _check_parquet(destination)
    with _output(destination) as (out, path):
        yield TableOutput(out, path, file_format)


@dataclass
class TableOutput:
    """A table's destination, open: `write` puts the table there."""

    out: IO[bytes]
    path: str | None
    """The file `out` writes, under its temporary name; None for standard output."""
    file_format: str

    def write(self, blocks: Iterable[Any], *, rows: int, ascii_widths: dict[str, int]) -> list[str]:
        """Write the tables `blocks` yields as one table of `rows` rows; what the reader of
        the file should be told (text FITS could not hold as it was). `ascii_widths`
        (column -> bytes) are the widest values of the text columns as FITS holds them."""
        if self.file_format == "parquet":
            assert self.path is not None  # a regular file (`_check_parquet`)
            _write_parquet(blocks, self.path)
            return []
        sink = _Sink(self.out)
        writer: _FitsWriter | _TextWriter
        if self.file_format == "fits":
            writer = _FitsWriter(sink, rows, ascii_widths)
        else:
            writer = _TextWriter(sink, self.file_format)
        written = 0
        for block in blocks:
            writer.add(block)
            written += len(block)
        if written != rows:  # as many rows as the first reading counted, or none at all
            raise StoreChanged()
        return writer.finish()


@contextlib.contextmanager
def _output(destination: str) -> Iterator[tuple[IO[bytes], str | None]]:
    """Standard output; a regular file (or a link to one), written under a temporary name
    beside it and renamed over it once complete, with the mode it had; anything else that is
    there already (a FIFO, /dev/null, a shell's `>(...)`) written in place, as it cannot be
    replaced. A file that cannot be made, or is read-only, is the command line's fault (--out
    names it); one that cannot be written to the end (a full disk) is not, and leaves what was
    there before."""
    if destination == "-":
        yield sys.stdout.buffer, None
        sys.stdout.buffer.flush()
        return
    try:
        existing: os.stat_result | None = os.stat(destination)
    except FileNotFoundError:
        existing = None
    except OSError as error:
        raise _cannot_write_there(destination, error) from None
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        with _opened(destination, destination, "wb") as out:
            yield out, None
        return
    if existing is not None and not os.access(destination, os.W_OK):
        raise UsageError(f"--out {destination}: the file is read-only")
    target = os.path.realpath(destination)  # a link is followed, not replaced
    partial = f"{target}.{os.getpid()}.partial"
    try:
        with _opened(partial, destination, "wb") as out:
            yield out, partial
        if existing is not None:
            os.chmod(partial, stat.S_IMODE(existing.st_mode))
        os.replace(partial, target)
    except OSError as error:
        kept = " (the one there is as it was)" if existing is not None else ""
        raise AstraError(
            f"cannot write {destination}: {_reason(error)}; no table was written{kept}"
        ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)


@contextlib.contextmanager
def _opened(path: str, destination: str, mode: str) -> Iterator[IO[bytes]]:
    """`path` open for writing, for the table --out names; a failure to open it is the
    command line's."""
    try:
        out = open(path, mode)  # noqa: SIM115  (closed below)
    except OSError as error:
        raise _cannot_write_there(destination, error) from None
    with out:
        yield out


def _cannot_write_there(destination: str, error: OSError) -> UsageError:
    return UsageError(f"--out {destination}: cannot write there: {_reason(error)}")


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


class _Sink:
    """Where a table's bytes go, each write whole. A buffered file's `write` can return having
    written part of what it was given, without an error: here, a write of 1 MB to a pipe
    whose reader went away returned 65,536 (`astra results -o - | head`: the next write
    fails, as it should, and stops the export)."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[self.out.write(view) :]


class _TextWriter:
    """ECSV, CSV, TSV and VOTable: each block as astropy writes it, less what comes before
    and after its rows (`_header_and_footer`), written once."""

    def __init__(self, out: _Sink, file_format: str) -> None:
        self.out = out
        self.file_format = file_format
        self.keep_meta = file_format == "ecsv"  # no place for nested metadata in the others
        self.header: bytes | None = None
        self.footer = b""

    def add(self, block: Any) -> None:
        if not self.keep_meta:
            block = block.copy(copy_data=False)
            block.meta.clear()
        written = self._written(block)
        if self.header is None:
            self.header, self.footer = self._header_and_footer(block, written)
            self.out.write(self.header)
        if not (written.startswith(self.header) and written.endswith(self.footer)):
            raise RuntimeError(f"a block of the {self.file_format} table has another header")
        self.out.write(written[len(self.header) : len(written) - len(self.footer)])

    def finish(self) -> list[str]:
        self.out.write(self.footer)
        return []

    def _written(self, table: Any) -> bytes:
        if self.file_format == "votable":
            binary = io.BytesIO()
            table.write(binary, format="votable")
            return binary.getvalue()
        text = io.StringIO(newline="")
        table.write(text, format=_ASTROPY_FORMATS[self.file_format])
        return text.getvalue().encode("utf-8")

    def _header_and_footer(self, block: Any, written: bytes) -> tuple[bytes, bytes]:
        """What a table's rows sit between: in a text table, all a table of no rows has; in
        a VOTable, up to the line that opens TABLEDATA, and from the line that closes it (a
        VOTable of no rows has no TABLEDATA: it is all header)."""
        if self.file_format != "votable":
            return self._written(block[:0]), b""
        opening = written.find(b"<TABLEDATA>")
        if opening < 0:
            return written, b""
        closing = written.index(b"</TABLEDATA>")
        return (
            written[: written.index(b"\n", opening) + 1],
            written[written.rindex(b"\n", 0, closing) + 1 :],
        )


class _FitsWriter:
    """A primary HDU with the table's metadata, then a RESULTS binary table: its header as
    astropy makes it for the first block (with the whole table's row count), each block's
    rows as astropy encodes them, and the padding a FITS file ends with."""

    def __init__(self, out: _Sink, rows: int, ascii_widths: dict[str, int]) -> None:
        self.out = out
        self.rows = rows
        self.ascii_widths = ascii_widths
        self.row_bytes: int | None = None
        self.escaped: dict[str, int] = {}

    def add(self, block: Any) -> None:
        from astropy.io import fits

        renamed, escaped = _upper_case(block, self.ascii_widths)
        for name, count in escaped.items():
            self.escaped[name] = self.escaped.get(name, 0) + count
        hdu = fits.table_to_hdu(renamed)
        hdu.name = "RESULTS"
        for index, column in enumerate(block.itercols(), 1):
            if column.description:
                hdu.header[f"TCOMM{index}"] = column.description[:68]
                if len(column.description) > 68:  # a card's limit: the whole text as comments
                    hdu.header.add_comment(f"{column.name.upper()}: {column.description}")
        primary = _primary(block.meta) if self.row_bytes is None else fits.PrimaryHDU()
        encoded = io.BytesIO()
        fits.HDUList([primary, hdu]).writeto(encoded)
        written = encoded.getvalue()
        starts = len(primary.header.tostring())
        data = starts + len(hdu.header.tostring())
        row_bytes = hdu.header["NAXIS1"]
        if self.row_bytes is None:
            self.row_bytes = row_bytes
            self.out.write(written[:starts])
            self.out.write(_with_row_count(hdu.header, self.rows))
        elif row_bytes != self.row_bytes:
            raise RuntimeError("a block of the FITS table has rows of another width")
        self.out.write(written[data : data + row_bytes * len(block)])

    def finish(self) -> list[str]:
        self.out.write(bytes(-((self.row_bytes or 0) * self.rows) % _FITS_BLOCK))
        if not self.escaped:
            return []
        columns = ", ".join(f"{name} ({count})" for name, count in self.escaped.items())
        return [
            f"FITS holds text as ASCII: values with other characters are written with "
            f"backslash escapes (ö as \\xf6), in {columns}; the other formats keep every "
            f"character"
        ]


def _primary(meta: dict[str, Any]) -> Any:
    """The primary HDU: no data; the astra version, method, time and every group's options."""
    from astropy.io import fits

    primary = fits.PrimaryHDU()
    header = primary.header
    header["ASTRAVER"] = (meta["astra_version"], "astra version that wrote this table")
    header["METHOD"] = meta["method"]
    header["CREATED"] = meta["created"]
    header["NGROUPS"] = (len(meta["groups"]), "groups (option sets) in the table")
    for key, options in meta["groups"].items():
        header.add_history(f"group {key}: {json.dumps(options, sort_keys=True)}")
    return primary


def _with_row_count(header: Any, rows: int) -> bytes:
    """The table's header as written for a block, with the whole table's row count."""
    header = header.copy()
    header["NAXIS2"] = rows
    return header.tostring().encode("ascii")


def _upper_case(table: Any, ascii_widths: dict[str, int]) -> tuple[Any, dict[str, int]]:
    """Column names as allStar has them: upper case, `obj` as APOGEE_ID; text as the ASCII
    bytes FITS holds, as wide as the whole table's widest (`ascii_widths`), and how many
    values of each column needed escapes for that.

    Encoded here, not by astropy: astropy copies a table whole, twice, on its way to FITS, and
    numpy's text takes four bytes a character; and astropy stops at the first character
    beyond ASCII (a path with an accent), where no table was written at all."""
    import numpy as np

    renamed = table.copy(copy_data=False)
    renamed.meta.clear()  # the header says it, in FITS keywords
    escaped: dict[str, int] = {}
    for name in renamed.colnames:
        column = renamed[name]
        if column.dtype.kind != "U":
            continue
        text = np.asarray(column)
        try:
            data = np.char.encode(text, "ascii")
        except UnicodeEncodeError:
            data = np.char.encode(text, "ascii", "backslashreplace")
            escaped[name] = int(np.count_nonzero(np.char.str_len(data) != np.char.str_len(text)))
        width = ascii_widths[name]
        if len(data) and int(np.char.str_len(data).max()) > width:
            raise StoreChanged()  # the layout's width would cut it short
        data = data.astype(f"S{width}")
        mask = getattr(column, "mask", None)
        renamed[name] = column.copy(data=data if mask is None else np.ma.array(data, mask=mask))
    names = [_FITS_NAMES.get(name, name.upper()) for name in renamed.colnames]
    if len(set(names)) == len(names):
        escaped = {_FITS_NAMES.get(name, name.upper()): n for name, n in escaped.items()}
        renamed.rename_columns(renamed.colnames, names)
    return renamed, escaped


def _check_parquet(destination: str) -> None:
    """Parquet is written by astropy to a file it names: not to standard output, nor to
    anything but a regular file."""
    if destination == "-":
        raise UsageError("--format parquet cannot go to standard output: give --out FILE")
    if os.path.exists(destination) and not os.path.isfile(destination):
        raise UsageError(f"--format parquet writes a file, and --out {destination} is not one")
    import importlib.util

    if importlib.util.find_spec("pyarrow") is None:
        raise UsageError("writing Parquet needs pyarrow: pip install pyarrow")


def _write_parquet(blocks: Iterable[Any], path: str) -> None:
    """The blocks stacked into one table (pyarrow writes its columns whole), then written."""
    from astropy.table import vstack

    vstack(list(blocks), metadata_conflicts="silent").write(path, format="parquet", overwrite=True)
