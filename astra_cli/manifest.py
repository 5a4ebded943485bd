"""Batch manifests (`--from-file`): the lists of observations users keep, in the formats they
keep them in, read into observations grouped by the option values their rows give.

One job: files in, `{option values: observations}` out, with every bad row named as
`FILE:LINE: what is wrong`, so that in a list of a million the user can find it. A bad row
never stops the reading: the caller decides whether bad rows stop the invocation (the default)
or are skipped (`--skip-bad-rows`).

Formats (by extension, or named with `--format`):

text (.txt, .lst)
    One path or one `key=val,key=val` identifier per line; blank lines and `#` comments are
    ignored. Streamed.
csv (.csv), tsv (.tsv)
    A header row, then one observation per row. Streamed with the csv module rather than read
    with astropy: astropy's reader stops the whole file at the first row with a wrong number of
    fields, and skips blank lines so that its row numbers are not line numbers; the csv module
    names the exact line, goes on past it, and reads a million rows four times faster.
ecsv (.ecsv), fits (.fits, .fit, .fits.gz, .fit.gz)
    Typed tables, read with astropy; only the columns astra uses are converted. FITS reads the
    first table HDU unless `--hdu` names another; its "line" is the row number, from 1.
jsonl (.jsonl, .ndjson)
    One JSON object per line. Streamed.

Columns are identifier keys of the product (`--kind`; apStar, or apVisit when plate, mjd or
fiber are given), allStar-style upper-case names included (`APOGEE_ID` is obj), or `path`; a
column named exactly like a method option gives its rows their own value of that option. Any
other column is named once in a notice and otherwise ignored.
"""

from __future__ import annotations

import csv
import io
import json
import math
import operator
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TextIO

from astra_cli.errors import UsageError, did_you_mean
from astra_cli.identifiers import (
    IdentifierResolver,
    Observation,
    observation_from_path,
    parse_pairs,
)
from astra_cli.methods.base import Param

STDIN = "-"
FORMATS = ("text", "csv", "tsv", "ecsv", "fits", "jsonl")
EXTENSIONS = {
    ".txt": "text", ".lst": "text", ".csv": "csv", ".tsv": "tsv", ".ecsv": "ecsv",
    ".fits": "fits", ".fit": "fits", ".fits.gz": "fits", ".fit.gz": "fits",
    ".jsonl": "jsonl", ".ndjson": "jsonl",
}  # fmt: skip
MAX_LISTED = 20
"""Bad rows (and ignored columns) listed by name; the rest are counted."""

ALLSTAR_ALIASES = {"apogee_id": "obj"}
"""allStar column names that are identifier keys under another name. The others (TELESCOPE,
FIELD, ...) are the keys in upper case."""

_IDENTIFIER_LINE = re.compile(r"\s*[A-Za-z_][A-Za-z0-9_]*\s*=")
"""A text line that starts `key=` is an identifier; any other is a path."""

OptionValues = tuple[tuple[str, Any], ...]
"""A row's own option values as (name, value) pairs: hashable and cheap, so that a million
rows holding ten distinct values make ten request sets rather than a million objects."""


@dataclass(frozen=True, slots=True)
class RowProblem:
    """Why one row of a manifest cannot be planned."""

    source: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.message}"


@dataclass
class ManifestRequests:
    """What a set of manifests asks for."""

    by_options: dict[OptionValues, list[Observation]] = field(default_factory=dict)
    """Observations by the option values their rows give (`()` for rows that give none).
    Repeats are kept: the planner runs each run once."""
    problems: list[RowProblem] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    """One line per file about columns that were ignored."""
    rows: int = 0
    """Rows read, good and bad."""

    def add(self, options: OptionValues, observation: Observation) -> None:
        found = self.by_options.get(options)
        if found is None:
            found = self.by_options[options] = []
        found.append(observation)

    def problem(self, source: str, line: int, message: str) -> None:
        self.problems.append(RowProblem(source, line, message))


class BadRowsError(UsageError):
    """Rows that cannot be planned, found before anything ran (exit code 2)."""

    def __init__(self, problems: Sequence[RowProblem]) -> None:
        self.problems = list(problems)
        heading = (
            f"{len(self.problems)} bad row(s) in --from-file; nothing was run "
            "(--skip-bad-rows runs the others)"
        )
        super().__init__("\n".join([heading, *describe_problems(self.problems)]))


def describe_problems(problems: Sequence[RowProblem]) -> list[str]:
    """`FILE:LINE: what` for the first MAX_LISTED problems, then how many more there are."""
    lines = [str(problem) for problem in problems[:MAX_LISTED]]
    if len(problems) > MAX_LISTED:
        lines.append(f"... and {len(problems) - MAX_LISTED} more bad row(s)")
    return lines


def read_manifests(
    sources: Sequence[str],
    params: Mapping[str, Param],
    resolver: IdentifierResolver,
    *,
    kind: str | None = None,
    defaults: Mapping[str, str] | None = None,
    file_format: str | None = None,
    hdu: int | str | None = None,
    stdin: BinaryIO | None = None,
) -> ManifestRequests:
    """Read every manifest; bad rows are collected, not raised.

    params
        The method's options: a column (or `key=` in a text line) with one of these names gives
        the row its own value.
    kind
        The sdss-access product the identifiers name; None infers apStar or apVisit.
    defaults
        Identifier values for keys a row does not give (per-key options given once).
    file_format
        One of FORMATS for every file; by default each file's extension says.
    stdin
        What `-` reads (binary); sys.stdin's buffer by default.

    Raises UsageError for what is wrong with a whole file (unreadable, unknown format, no
    column naming an observation).
    """
    if list(sources).count(STDIN) > 1:
        raise UsageError("--from-file - (standard input) can be given only once")
    if file_format is not None and file_format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {file_format!r}")
    collector = _Collector(params, resolver, kind, dict(defaults or {}))
    for source in sources:
        name = "<stdin>" if source == STDIN else source
        fmt = file_format or format_of(source)
        with _opened(source, stdin) as stream:
            if fmt == "fits":
                # A file is memory-mapped, so only the columns astra uses are read.
                data = io.BytesIO(stream.read()) if source == STDIN else source
                collector.read_fits(name, data, hdu)
                continue
            with _decoded(stream) as text:
                if fmt == "text":
                    collector.read_text(name, text)
                elif fmt == "jsonl":
                    collector.read_json_lines(name, text)
                elif fmt == "ecsv":
                    collector.read_ecsv(name, text.read().splitlines())
                else:
                    collector.read_table(name, *_csv_rows(text, "\t" if fmt == "tsv" else ","))
    collector.check_insignificant_options()
    return collector.requests


def format_of(source: str) -> str:
    """The format a file's extension names; standard input is text unless --format says."""
    if source == STDIN:
        return "text"
    lowered = source.lower()
    for extension in sorted(EXTENSIONS, key=len, reverse=True):
        if lowered.endswith(extension):
            return EXTENSIONS[extension]
    raise UsageError(
        f"{source}: cannot tell its format from its name; give --format "
        f"({', '.join(FORMATS)}) or name it {', '.join(EXTENSIONS)}"
    )


@contextmanager
def _opened(source: str, stdin: BinaryIO | None) -> Iterator[BinaryIO]:
    """A manifest as a binary stream: the file, or standard input (left open)."""
    if source == STDIN:
        yield stdin or sys.stdin.buffer
        return
    try:
        stream = open(source, "rb")  # noqa: SIM115 (closed below)
    except OSError as error:
        raise UsageError(f"--from-file {source}: {error.strerror}") from None
    with stream:
        yield stream


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


def _csv_rows(text: TextIO, delimiter: str) -> tuple[list[str], Iterator[tuple[int, list]]]:
    """The header and (line, row) pairs; blank lines and lines starting with # are skipped."""
    reader = csv.reader(text, delimiter=delimiter, strict=True)

    def rows() -> Iterator[tuple[int, list]]:
        while True:
            line = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                yield line, [_Unparseable(f"not valid CSV: {error}")]
                continue
            if row and not row[0].startswith("#"):
                yield line, row

    data = rows()
    for _line, header in data:
        if isinstance(header[0], _Unparseable):
            raise UsageError(f"header: {header[0].message}")
        return [name.strip() for name in header], data
    return [], data


@dataclass(frozen=True, slots=True)
class _Unparseable:
    """Stands in for a row the reader could not parse."""

    message: str


def _missing(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def _text(value: Any) -> str:
    """A cell as identifier or path text: FITS, ECSV and JSON give ints, floats and bytes."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _getter(indices: Sequence[int]) -> Callable[[Sequence[Any]], tuple]:
    """A fast row -> tuple of the cells at these indices (itemgetter of one index returns the
    bare cell)."""
    if len(indices) > 1:
        return operator.itemgetter(*indices)
    if indices:
        (index,) = indices
        return lambda row: (row[index],)
    return lambda row: ()


class _Collector:
    """Turns the rows of every file into observations and option values."""

    def __init__(
        self,
        params: Mapping[str, Param],
        resolver: IdentifierResolver,
        kind: str | None,
        defaults: dict[str, str],
    ) -> None:
        self.params = params
        self.resolver = resolver
        self.kind = kind
        self.defaults = defaults
        self.requests = ManifestRequests()
        self._coerced: dict[tuple[str, Any], Any] = {}

    # --- formats ---------------------------------------------------------------------------

    def read_text(self, source: str, text: TextIO) -> None:
        requests = self.requests
        for line, raw in enumerate(text, 1):
            stripped = raw.strip()
            if not stripped or stripped.startswith("#"):
                continue
            requests.rows += 1
            if not _IDENTIFIER_LINE.match(stripped):
                requests.add((), observation_from_path(stripped))
                continue
            try:
                pairs = parse_pairs(stripped)
            except ValueError as error:
                requests.problem(source, line, f"{error} (or one path per line)")
                continue
            options = self.options(
                tuple((name, pairs.pop(name)) for name in self.params if name in pairs)
            )
            keys = self.resolver.product_keys(self.kind)
            unknown = next((key for key in pairs if key not in keys), None)
            if unknown is not None:
                hint = did_you_mean(unknown, [*keys, *self.params])
                message = f"{unknown!r}{hint} is neither an identifier key nor an option"
                requests.problem(source, line, message)
                continue
            observation = self.observation(pairs)
            if isinstance(options, str) or isinstance(observation, str):
                requests.problem(source, line, options if isinstance(options, str) else observation)
            else:
                requests.add(options, observation)

    def read_table(self, source: str, columns: Sequence[str], rows: Iterable[tuple]) -> None:
        layout = _Layout(source, self, columns)
        layout.require_observation_columns()
        layout.bind(columns)
        for line, row in rows:
            layout.add_row(line, row)
        layout.notice()

    def read_json_lines(self, source: str, text: TextIO) -> None:
        layout = _Layout(source, self, ())
        columns: list[str] = []
        positions: dict[str, int] = {}
        for line, raw in enumerate(text, 1):
            if not raw.strip():
                continue
            try:
                item = json.loads(raw)
            except ValueError as error:
                layout.add_row(line, [_Unparseable(f"not valid JSON: {error}")])
                continue
            if not isinstance(item, dict):
                layout.add_row(line, [_Unparseable("not a JSON object")])
                continue
            new = [name for name in item if name not in positions]
            if new:
                for name in new:
                    positions[name] = len(columns)
                    columns.append(name)
                layout.add_columns(new)
                layout.bind(columns)
            nested = [name for name in layout.used if isinstance(item.get(name), (list, dict))]
            if nested:
                layout.add_row(line, [_Unparseable(f"{nested[0]!r} is not a single value")])
                continue
            row = [None] * len(columns)
            for name, value in item.items():
                row[positions[name]] = value
            layout.add_row(line, row)
        if columns:
            layout.require_observation_columns()
        layout.notice()

    def read_ecsv(self, source: str, lines: list[str]) -> None:
        table = self._astropy_table(source, "ECSV", lines, format="ascii.ecsv")
        data = [n for n, text in enumerate(lines, 1) if text.strip() and text.lstrip()[0] != "#"]
        # The column names, then one line per row (unless a quoted value spans lines).
        numbers = data[1:] if len(data) == len(table) + 1 else range(1, len(table) + 1)
        self._read_astropy(source, table, numbers)

    def read_fits(self, source: str, data: Any, hdu: int | str | None) -> None:
        kwargs = {"hdu": hdu, "character_as_bytes": False, "memmap": isinstance(data, str)}
        table = self._astropy_table(source, "a FITS table", data, format="fits", **kwargs)
        self._read_astropy(source, table, range(1, len(table) + 1))

    @staticmethod
    def _astropy_table(source: str, what: str, data: Any, **kwargs: Any) -> Any:
        import warnings

        from astropy.table import Table

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "hdu= was not specified": the first is meant
                return Table.read(data, **kwargs)
        except Exception as error:
            hdu = f" (hdu {kwargs['hdu']})" if kwargs.get("hdu") is not None else ""
            raise UsageError(f"{source}: cannot read as {what}{hdu}: {error}") from None

    def _read_astropy(self, source: str, table: Any, lines: Sequence[int]) -> None:
        """Column by column: only the columns astra uses become Python values."""
        layout = _Layout(source, self, table.colnames)
        layout.require_observation_columns()
        layout.bind(layout.used)
        cells = [table[name].tolist() for name in layout.used]
        for line, row in zip(lines, zip(*cells, strict=True), strict=True):
            layout.add_row(line, row)
        layout.notice()

    # --- values ----------------------------------------------------------------------------

    def observation(self, identifier: Mapping[str, str]) -> Observation | str:
        """The identifier (completed by the defaults) resolved, or what is wrong with it."""
        try:
            return self.resolver.resolve({**self.defaults, **identifier}, kind=self.kind)
        except UsageError as error:
            return str(error)

    def options(self, given: OptionValues) -> OptionValues | str:
        """A row's option values coerced to their types (empty cells give none), or what is
        wrong with them. Cached: a column holds few distinct values."""
        coerced = []
        for name, value in given:
            if _missing(value):
                continue
            cache_key = (name, value)
            result = self._coerced.get(cache_key, self._coerced)
            if result is self._coerced:
                try:
                    result = self.params[name].coerce(value)
                except UsageError as error:
                    result = _Unparseable(str(error))
                self._coerced[cache_key] = result
            if isinstance(result, _Unparseable):
                return result.message
            coerced.append((name, result))
        return tuple(coerced)

    def check_insignificant_options(self) -> None:
        """Rows may not disagree on an option that does not change results: their runs would
        be the same runs, and only one value could be used."""
        for name, param in self.params.items():
            if param.significant:
                continue
            values = {dict(options).get(name) for options in self.requests.by_options}
            values.discard(None)
            if len(values) > 1:
                raise UsageError(
                    f"--from-file: {param.flag} does not change results (it is insignificant), "
                    f"so rows may not give it different values; found "
                    f"{', '.join(sorted(map(str, values)))}"
                )


class _Layout:
    """What each column of one file means, and how a row of it becomes a request."""

    def __init__(self, source: str, collector: _Collector, columns: Iterable[str]) -> None:
        self.source = source
        self.collector = collector
        self.requests = collector.requests
        self.identifier_keys = collector.resolver.product_keys(collector.kind)
        self.keys: dict[str, str] = {}
        """column -> identifier key"""
        self.options: list[str] = []
        self.path: str | None = None
        self.ignored: list[str] = []
        self._made: dict[tuple, Observation | str] = {}
        self._option_values: dict[tuple, OptionValues | str] = {}
        self.width = 0
        self.add_columns(columns)

    @property
    def used(self) -> list[str]:
        """The columns that name an observation and the option columns."""
        naming = [self.path] if self.path is not None else list(self.keys)
        return [*naming, *self.options]

    def add_columns(self, names: Iterable[str]) -> None:
        for name in names:
            key = name.strip().lower()
            key = ALLSTAR_ALIASES.get(key, key)
            if key == "path" or key in self.identifier_keys:
                taken = self.path if key == "path" else _find(self.keys, key)
                if taken is not None:
                    raise UsageError(
                        f"{self.source}: columns {taken!r} and {name!r} both give {key}; keep one"
                    )
                if key == "path":
                    self.path = name
                else:
                    self.keys[name] = key
            elif name in self.collector.params:
                self.options.append(name)
            else:
                self.ignored.append(name)

    def require_observation_columns(self) -> None:
        if self.path is None and not self.keys:
            keys = ", ".join(sorted(self.identifier_keys))
            raise UsageError(
                f"{self.source}: no column names an observation: expected `path` or identifier "
                f"keys ({keys})"
            )

    def bind(self, shape: Sequence[str]) -> None:
        """Index rows whose cells are these columns, in this order. A `path` column names the
        file, and identifier columns beside it are then not used."""
        index = {name: position for position, name in enumerate(shape)}
        self.width = len(shape)
        naming = [self.path] if self.path is not None else list(self.keys)
        self._naming = _getter([index[name] for name in naming])
        self._option_names = tuple(self.options)
        self._option_cells = _getter([index[name] for name in self.options])

    def add_row(self, line: int, row: Sequence[Any]) -> None:
        """The hot loop, once per row: two cached lookups and an append when all is well."""
        requests = self.requests
        requests.rows += 1
        if len(row) != self.width or isinstance(row[0], _Unparseable):
            message = (
                row[0].message
                if row and isinstance(row[0], _Unparseable)
                else f"{len(row)} field(s) where the header has {self.width}"
            )
            requests.problem(self.source, line, message)
            return
        cells = self._option_cells(row)
        options = self._option_values.get(cells)
        if options is None:
            options = self.collector.options(tuple(zip(self._option_names, cells, strict=True)))
            self._option_values[cells] = options
        naming = self._naming(row)
        observation = self._made.get(naming)
        if observation is None:
            observation = self._made[naming] = self._make(naming)
        if isinstance(options, str) or isinstance(observation, str):
            requests.problem(
                self.source, line, options if isinstance(options, str) else observation
            )
        else:
            requests.add(options, observation)

    def _make(self, naming: tuple) -> Observation | str:
        if self.path is not None:
            (path,) = naming
            return "empty path" if _missing(path) else observation_from_path(_text(path))
        keys = self.keys.values()
        identifier = {
            key: _text(value)
            for key, value in zip(keys, naming, strict=True)
            if not _missing(value)
        }
        return self.collector.observation(identifier)

    def notice(self) -> None:
        """One line for the columns that were not used, one for identifier columns beside
        `path`."""
        product = self.collector.kind or "apStar or apVisit"
        reasons = {
            f"not `path`, an identifier key of {product}, or an option of the method": self.ignored,
            "the path column names the files": list(self.keys) if self.path is not None else [],
        }
        for reason, names in reasons.items():
            if names:
                listed = ", ".join(names[:MAX_LISTED])
                more = f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
                self.requests.notices.append(
                    f"{self.source}: ignoring column(s) {listed}{more} ({reason})"
                )


def _find(mapping: Mapping[str, str], value: str) -> str | None:
    return next((key for key, found in mapping.items() if found == value), None)
