"""The manifest formats: one reader per format, each turning a file into rows with the line (or
row number) a user would look for.

A reader returns either a `Table` (a header naming the columns, then rows of cells: CSV, TSV,
ECSV, FITS) or `Records` (every row names its own keys: text lines and JSON Lines). A row the
format itself cannot parse comes back as `Unparseable`, so one broken line never stops a file.

text (.txt, .lst)
    One path or one `key=val,key=val` identifier per line; blank lines and `#` comments are
    ignored. Streamed. A key that means nothing is a bad row: a typo in a hand-written line.
csv (.csv), tsv (.tsv)
    A header row, then one observation per row. Streamed with the csv module rather than read
    with astropy: astropy's reader stops the whole file at the first row with a wrong number of
    fields, and skips blank lines so that its row numbers are not line numbers; the csv module
    names the exact line, goes on past it, and reads a million rows four times faster.
ecsv (.ecsv), fits (.fits, .fit, .fits.gz, ...)
    Typed tables, read with astropy; only the columns astra uses are converted to Python
    values. FITS reads the first table HDU unless `--hdu` names another; its "line" is the row
    number, from 1.
jsonl (.jsonl, .ndjson)
    One JSON object per line. Streamed. Keys that mean nothing are named in a notice.
"""

from __future__ import annotations

import csv
import io
import json
import operator
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO, TextIO

from astra_cli.errors import UsageError

Cells = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Unparseable:
    """Stands in for a row the reader could not parse."""

    message: str


Row = tuple[int, "Cells | Unparseable"]
"""(line, the cells of the columns asked for), or (line, why it could not be read)."""


@dataclass(frozen=True)
class Table:
    """A file with one header: `rows(names)` yields each row's cells of those columns only, so
    that a wide allStar table converts only what is used."""

    columns: Sequence[str]
    rows: Callable[[Sequence[str]], Iterator[Row]]


Record = tuple[int, "dict[str, Any] | Unparseable"]


@dataclass(frozen=True)
class Records:
    """A file whose rows each name their own keys."""

    rows: Iterator[Record]
    unknown_keys_are_bad: bool
    """A key that is neither an identifier key nor an option makes its row bad (text lines are
    written by hand: it is a typo), rather than being named once in a notice."""


Reader = Callable[[str, BinaryIO, "int | str | None"], AbstractContextManager["Table | Records"]]
"""(file name for messages, its bytes, the FITS HDU asked for) -> its rows, for as long as the
context lasts."""


@contextmanager
def read_text(source: str, stream: BinaryIO, hdu: int | str | None) -> Iterator[Records]:
    from astra_cli.io.identifiers import parse_pairs

    def rows(text: TextIO) -> Iterator[Record]:
        for line, raw in enumerate(text, 1):
            stripped = raw.strip()
            if not stripped or stripped.startswith("#"):
                continue
            if not _looks_like_identifier(stripped):
                yield line, {"path": stripped}
                continue
            try:
                yield line, parse_pairs(stripped)
            except ValueError as error:
                yield line, Unparseable(f"{error} (or one path per line)")

    with _decoded(stream) as text:
        yield Records(rows(text), unknown_keys_are_bad=True)


@contextmanager
def read_json_lines(source: str, stream: BinaryIO, hdu: int | str | None) -> Iterator[Records]:
    def rows(text: TextIO) -> Iterator[Record]:
        for line, raw in enumerate(text, 1):
            if not raw.strip():
                continue
            try:
                item = json.loads(raw)
            except ValueError as error:
                yield line, Unparseable(f"not valid JSON: {error}")
                continue
            yield line, item if isinstance(item, dict) else Unparseable("not a JSON object")

    with _decoded(stream) as text:
        yield Records(rows(text), unknown_keys_are_bad=False)


@contextmanager
def read_csv(source: str, stream: BinaryIO, hdu: int | str | None) -> Iterator[Table]:
    with _decoded(stream) as text:
        yield _delimited(source, text, ",")


@contextmanager
def read_tsv(source: str, stream: BinaryIO, hdu: int | str | None) -> Iterator[Table]:
    with _decoded(stream) as text:
        yield _delimited(source, text, "\t")


@contextmanager
def read_ecsv(source: str, stream: BinaryIO, hdu: int | str | None) -> Iterator[Table]:
    with _decoded(stream) as text:
        lines = text.read().splitlines()
    table = _astropy_table(source, "ECSV", lines, format="ascii.ecsv")
    data = [n for n, text in enumerate(lines, 1) if text.strip() and text.lstrip()[0] != "#"]
    # The column names, then one line per row (unless a quoted value spans lines).
    numbers = data[1:] if len(data) == len(table) + 1 else range(1, len(table) + 1)
    yield _astropy_rows(table, numbers)


@contextmanager
def read_fits(source: str, stream: BinaryIO, hdu: int | str | None) -> Iterator[Table]:
    # A named file is memory-mapped, so only the columns astra uses are read.
    name = getattr(stream, "name", None)
    data: Any = name if isinstance(name, str) else io.BytesIO(stream.read())
    kwargs = {"hdu": hdu, "character_as_bytes": False, "memmap": isinstance(data, str)}
    yield _astropy_rows(_astropy_table(source, "a FITS table", data, format="fits", **kwargs))


READERS: dict[str, Reader] = {
    "text": read_text,
    "csv": read_csv,
    "tsv": read_tsv,
    "ecsv": read_ecsv,
    "fits": read_fits,
    "jsonl": read_json_lines,
}
"""Format name -> reader: the formats `--from-file` reads."""

FORMATS = tuple(READERS)


def _looks_like_identifier(line: str) -> bool:
    """A text line that starts `key=` is an identifier; any other is a path."""
    key, sep, _ = line.partition("=")
    key = key.strip()
    return bool(sep) and key.isidentifier() and key.isascii()


@contextmanager
def _decoded(stream: BinaryIO) -> Iterator[TextIO]:
    """UTF-8 text (a byte-order mark, as spreadsheets write, is dropped). Undecodable bytes
    become U+FFFD: such an identifier value is refused on its row and such a path is a missing
    input, so neither stops the file. Detached at the end, so standard input stays open."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace", newline="")
    try:
        yield text
    finally:
        text.detach()


def _delimited(source: str, text: TextIO, delimiter: str) -> Table:
    """The header and the rows; blank lines and lines starting with # are skipped, and a row
    with the wrong number of fields is a bad row of its own."""
    reader = csv.reader(text, delimiter=delimiter, strict=True)

    def lines() -> Iterator[tuple[int, list[str] | Unparseable]]:
        while True:
            line = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                yield line, Unparseable(f"not valid CSV: {error}")
                continue
            if row and not row[0].startswith("#"):
                yield line, row

    numbered = lines()
    header: list[str] = []
    for _line, first in numbered:
        if isinstance(first, Unparseable):
            raise UsageError(f"{source}: header: {first.message}")
        header = [name.strip() for name in first]
        break
    width = len(header)

    def rows(names: Sequence[str]) -> Iterator[Row]:
        pick = _picker([header.index(name) for name in names])
        for line, row in numbered:
            if isinstance(row, Unparseable):
                yield line, row
            elif len(row) != width:
                yield line, Unparseable(f"{len(row)} field(s) where the header has {width}")
            else:
                yield line, pick(row)

    return Table(header, rows)


def _picker(indices: Sequence[int]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """A fast row -> tuple of the cells at these indices (itemgetter of one index returns the
    bare cell)."""
    if len(indices) > 1:
        return operator.itemgetter(*indices)
    if indices:
        (index,) = indices
        return lambda row: (row[index],)
    return lambda row: ()


def _astropy_table(source: str, what: str, data: Any, **kwargs: Any) -> Any:
    import warnings

    from astropy.table import Table as AstropyTable

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "hdu= was not specified": the first is meant
            return AstropyTable.read(data, **kwargs)
    except Exception as error:
        hdu = f" (hdu {kwargs['hdu']})" if kwargs.get("hdu") is not None else ""
        raise UsageError(f"{source}: cannot read as {what}{hdu}: {error}") from None


def _astropy_rows(table: Any, lines: Sequence[int] | None = None) -> Table:
    """Column by column: only the columns asked for become Python values."""

    def rows(names: Sequence[str]) -> Iterator[Row]:
        cells = [table[name].tolist() for name in names]
        numbers = range(1, len(table) + 1) if lines is None else lines
        yield from zip(numbers, zip(*cells, strict=True), strict=True)

    return Table(list(table.colnames), rows)
