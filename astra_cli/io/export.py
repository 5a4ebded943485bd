"""Results as one table: every stored run of a method, one row each, in the formats astra
writes (FITS, an allStar-like catalogue: upper-case column names, APOGEE_ID, units in TUNIT;
ECSV, CSV, TSV, VOTable, Parquet with pyarrow), chosen by the file's name or `--format`.
Here the table is made; `tablewriter` writes it.

Columns: the identifier keys (in the usual order), the input path and observation key, the
group key and the significant options (one column each; an option named like a result column
is prefixed `option_`), status, error, start time (ISO, UTC), duration, astra and method
versions, then every result column any run returned (masked where a run has none).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

from astra_cli.errors import AstraError, UsageError
from astra_cli.io.formats import extensions_of
from astra_cli.io.formats import format_of as format_of_name
from astra_cli.io.identifiers import IDENTIFIER_KEYS
from astra_cli.vocabulary import RunRecord, option_text

ExportFormat = Literal["fits", "ecsv", "csv", "tsv", "votable", "parquet"]
FORMATS: tuple[str, ...] = get_args(ExportFormat)
ExportedStatus = Literal["ok", "failed", "all"]
STATUSES: tuple[str, ...] = get_args(ExportedStatus)


def destination_format(destination: str | None, requested: str | None) -> str:
    """The format to write: `requested` (--format), else what the file's name says, else FITS
    (standard output, or the default file). A directory, or a name that says no format astra
    writes, is an error rather than a FITS file under a name that claims otherwise."""
    if destination and destination != "-" and os.path.isdir(destination):
        raise UsageError(
            f"--out {destination} is a directory; --out names the table file (the store is "
            "--output-dir)"
        )
    if requested is not None:
        return requested
    if not destination or destination == "-":
        return "fits"
    found = format_of_name(destination)
    if found not in FORMATS:
        endings = ", ".join(extensions_of(FORMATS))
        raise UsageError(
            f"--out {destination}: the name says no table format astra writes (it writes "
            f"{endings}); rename it or give --format"
        )
    return found


def results_table(records: Iterable[RunRecord], *, method: str) -> Any:
    """An astropy Table of run records, read once: a store's records are turned into columns
    as they come, not all held first (as RunRecords, 200,000 runs of `grid` took 0.8 GB
    before their table was made). `describe` adds what the method says of its columns; a
    table too large to hold is written a block at a time instead (`tablewriter`)."""
    layout, gathered = TableLayout(), _Gathered()
    for row in records:
        layout.add(row)
        gathered.add(row)
    return layout.table(gathered, layout.meta(method))


def table_blocks(
    records: Iterable[RunRecord], layout: TableLayout, meta: dict[str, Any], rows: int
) -> Iterator[Any]:
    """The records as tables of `rows` rows at most, each with every column of `layout` (what
    a first reading of the same records found): a table of no rows when there are none."""
    gathered = _Gathered()
    for record in records:
        gathered.add(record)
        if gathered.rows == rows:
            yield layout.table(gathered, meta)
            gathered = _Gathered()
    if gathered.rows or not layout.rows:
        yield layout.table(gathered, meta)


def latest_positions(records: Iterable[RunRecord]) -> set[int]:
    """The positions, among `records`, of each observation's latest run (the first of runs
    started together): what `--latest-per-observation` keeps, found without holding runs."""
    latest: dict[str, tuple[float, int]] = {}
    for position, row in enumerate(records):
        started = row.started_at or 0
        kept = latest.get(row.observation)
        if kept is None or started > kept[0]:
            latest[row.observation] = (started, position)
    return {position for _, position in latest.values()}


def describe(table: Any, descriptions: dict[str, str], units: dict[str, str]) -> None:
    """Put what the method says of its columns on the table: `descriptions` (column -> text)
    beside them (ECSV descriptions, FITS TCOMMn), `units` (column -> astropy unit) in them."""
    for name, text in descriptions.items():
        if name in table.colnames:
            table[name].description = text
    for name, unit in units.items():
        if name in table.colnames:
            table[name].unit = unit


class _Kind:
    """What one column's values are, seen one at a time: its type is the narrowest that holds
    every value present (bool; int64, which holds no bool; float64, any number; else text,
    where a mapping or list is the JSON the store holds), and, for text, its widest value, in
    characters and in the ASCII bytes FITS holds (`_ascii_width`).

    A number's text is measured only in a column that is text already: most columns are
    numbers, and writing each one out made the first reading of 200,000 runs of `grid` 1.4 s
    longer, where reading them took 4.3 s. A column that turns out text after numbers is
    `unmeasured`: its numbers are measured in another reading (`TableLayout.measure_numbers`)."""

    __slots__ = ("ascii_width", "bools", "ints", "numbers", "unmeasured", "width")

    def __init__(self) -> None:
        self.bools = self.ints = self.numbers = True
        self.unmeasured = False
        self.width = self.ascii_width = 0

    def add(self, value: Any) -> None:
        if value is None:
            return
        if type(value) is str:
            self.bools = self.ints = self.numbers = False
            self.measure(value)
            return
        if isinstance(value, bool):
            self.ints = self.numbers = False
        elif isinstance(value, (int, float)):
            self.bools = False
            self.ints = self.ints and _is_int64(value)
        else:
            self.bools = self.ints = self.numbers = False
        if self.bools or self.numbers:
            self.unmeasured = True
        else:
            self.measure(option_text(value))

    def add_text(self, value: Any) -> None:
        """A value of a column that is text whatever it holds: an identifier, a path, a key."""
        if value is None:
            return
        self.bools = self.ints = self.numbers = False
        self.measure(value if type(value) is str else option_text(value))

    def measure(self, text: str) -> None:
        if len(text) > self.width:
            self.width = len(text)
        if len(text) > self.ascii_width or not text.isascii():
            self.ascii_width = max(self.ascii_width, _ascii_width(text))

    @property
    def dtype(self) -> str:
        if self.bools:
            return "bool"
        if self.ints:
            return "int64"
        return "float64" if self.numbers else "str"

    @property
    def needs_measuring(self) -> bool:
        """Text, with numbers not yet measured."""
        return self.unmeasured and self.dtype == "str"

    def text_dtype(self) -> Any:
        """numpy's type for the column's text: as wide as its widest value (numpy's own
        choice for the whole column, whatever part of it a block holds); numpy's choice for
        the values at hand, while numbers are not measured (all of them are at hand then:
        `results_table`)."""
        return str if self.unmeasured else f"U{max(1, self.width)}"


def _kind_of(kinds: dict[str, _Kind], name: str) -> _Kind:
    """The column's `_Kind`, made as the column is first seen."""
    kind = kinds.get(name)
    if kind is None:
        kind = kinds[name] = _Kind()
    return kind


def _ascii_width(text: str) -> int:
    """The bytes `text` takes in FITS: ASCII, with a backslash escape for anything else."""
    return len(text) if text.isascii() else len(text.encode("ascii", "backslashreplace"))


class TableLayout:
    """A table's columns, in order, and what each holds, from one reading of the records.
    `results_table` reads them once, making the columns as it goes; a table written a block
    at a time reads them twice, first here, so that every block has the columns of the whole
    table, with the same types and widths, and the file is as one table would make it."""

    def __init__(self) -> None:
        self.identifiers: dict[str, _Kind] = {}
        self.options: dict[str, _Kind] = {}
        self.results: dict[str, _Kind] = {}
        self.run = {name: _Kind() for name in _RUN_COLUMNS}
        self.groups: dict[str, dict[str, Any]] = {}
        self.rows = 0

    def add(self, record: RunRecord) -> None:
        # A group's runs have its options: seen once, they change nothing when seen again.
        seen = self.groups.get(record.group_key)
        same_options = seen is not None and _same_json(seen, record.options)
        for name, value in (record.identifiers or {}).items():
            _kind_of(self.identifiers, name).add_text(value)
        for kinds, mapping in (
            (self.options, None if same_options else record.options),
            (self.results, record.result),
        ):
            for name, value in (mapping or {}).items():
                _kind_of(kinds, name).add(value)
        for (name, kind), value in zip(self.run.items(), _run_values(record), strict=True):
            if name == "duration_s":
                kind.add(value)
            else:
                kind.add_text(value)
        self.groups[record.group_key] = record.options
        self.rows += 1

    def measure_numbers(self, records: Iterable[RunRecord]) -> None:
        """Measure, in another reading of the same records, the numbers of the columns that
        turned out text after numbers (`_Kind`); nothing to do, and nothing read, without
        such a column."""
        sections = [
            (lambda record: record.options, self.options),
            (lambda record: record.result, self.results),
            # A run's own columns are text but its duration (`add`): that alone may need it.
            (
                lambda record: {"duration_s": record.duration_s},
                {"duration_s": self.run["duration_s"]},
            ),
        ]
        found = [
            (mapping, {name: kind for name, kind in kinds.items() if kind.needs_measuring})
            for mapping, kinds in sections
        ]
        found = [(mapping, kinds) for mapping, kinds in found if kinds]
        if not found:
            return
        for record in records:
            for mapping, kinds in found:
                values = mapping(record) or {}
                for name, kind in kinds.items():
                    value = values.get(name)
                    if isinstance(value, (int, float)):
                        kind.measure(option_text(value))
        for _, kinds in found:
            for kind in kinds.values():
                kind.unmeasured = False

    def meta(self, method: str) -> dict[str, Any]:
        """The table's metadata: the method, astra's version, when, and every group's options."""
        from astra_cli.version import __version__  # package metadata: not at start-up

        return {
            "method": method,
            "astra_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "groups": {key: self.groups[key] for key in sorted(self.groups)},
        }

    def option_columns(self) -> dict[str, str]:
        """Each option's column: its name, or `option_NAME` where a result or a run's own
        column has that name."""
        return {
            name: f"option_{name}" if name in self.results or name in _FIXED else name
            for name in self.options
        }

    def ascii_widths(self) -> dict[str, int]:
        """The bytes each text column's widest value takes in FITS, by column name."""
        kinds = {
            **self.identifiers,
            **{column: self.options[name] for name, column in self.option_columns().items()},
            **self.run,
            **self.results,
        }
        return {name: max(1, kind.ascii_width) for name, kind in kinds.items()}

    def table(self, gathered: _Gathered, meta: dict[str, Any]) -> Any:
        """The table of the records `gathered` holds (all of them, or a block), with this
        layout's columns."""
        from astropy.table import Column, MaskedColumn, Table

        rows = gathered.rows

        def text(values: list[Any] | None, kind: _Kind) -> Any:
            shown = [""] * rows if values is None else [_shown(value) for value in values]
            return Column(_fitting(shown, kind), dtype=kind.text_dtype())

        def typed(values: list[Any] | None, kind: _Kind) -> Any:
            return _column(MaskedColumn, [None] * rows if values is None else values, kind)

        run = gathered.run
        columns: dict[str, Any] = {}
        for key in _ordered(list(self.identifiers), IDENTIFIER_KEYS):
            columns[key] = text(gathered.identifiers.values.get(key), self.identifiers[key])
        for name in _RUN_COLUMNS[:3]:  # input_path, observation, group_key
            columns[name] = text(run[name], self.run[name])
        for name, column in self.option_columns().items():
            columns[column] = typed(gathered.options.values.get(name), self.options[name])
        for name in _RUN_COLUMNS[3:]:
            make = typed if name == "duration_s" else text
            columns[name] = make(run[name], self.run[name])
        for name, kind in self.results.items():
            columns[name] = typed(gathered.results.values.get(name), kind)

        table = Table(columns) if self.rows else Table(names=list(columns) or ["observation"])
        table["duration_s"].unit = "s"
        table.meta.update(meta)
        return table


class _Gathered:
    """The values of some records (a block, or all), column by column, as they come."""

    def __init__(self) -> None:
        self.identifiers, self.options, self.results = _Columns(), _Columns(), _Columns()
        self.run: dict[str, list[Any]] = {name: [] for name in _RUN_COLUMNS}
        self._lists = list(self.run.values())
        self.rows = 0

    def add(self, record: RunRecord) -> None:
        self.identifiers.add(record.identifiers)
        self.options.add(record.options)
        self.results.add(record.result)
        for values, value in zip(self._lists, _run_values(record), strict=True):
            values.append(value)
        self.rows += 1


class _Columns:
    """The values of the columns one mapping of each record gives (its identifiers, options
    or results), by name in the order first seen, one per record; records without a name
    have None there."""

    def __init__(self) -> None:
        self.values: dict[str, list[Any]] = {}
        self._records = 0

    def add(self, mapping: dict[str, Any] | None) -> None:
        """The next record's mapping (None: it has none)."""
        mapping = mapping or {}
        for name, values in self.values.items():
            values.append(mapping.get(name))
        for name, value in mapping.items():
            if name not in self.values:
                self.values[name] = [None] * self._records + [value]
        self._records += 1


_RUN_COLUMNS = (
    "input_path", "observation", "group_key", "status", "error", "started_at", "duration_s",
    "astra_version", "method_version",
)  # fmt: skip
"""A record's own columns, in the table's order (its options come after `group_key`)."""


def _run_values(row: RunRecord) -> tuple[Any, ...]:
    """A record's values of _RUN_COLUMNS, in that order."""
    return (
        row.input_path, row.observation, row.group_key, row.status, row.error or "",
        _iso(row.started_at), row.duration_s, row.astra_version, row.method_version,
    )  # fmt: skip


_FIXED = {*_RUN_COLUMNS, *IDENTIFIER_KEYS}
"""Names an option's column may not take (it is then `option_NAME`)."""


def _column(column_class: Any, values: Sequence[Any], kind: _Kind) -> Any:
    """A column of `kind`'s type with masked gaps. A dict or list (the upstream runs an
    option names) is written as the store holds it, JSON, which every reader parses, rather
    than as Python prints it."""
    import numpy as np

    mask = [value is None for value in values]
    dtype = kind.dtype
    if dtype == "str":
        shown = [_shown(value) for value in values]
        return column_class(_fitting(shown, kind), mask=mask, dtype=kind.text_dtype())
    fill = {"bool": False, "int64": 0, "float64": np.nan}[dtype]
    data = np.array([fill if value is None else value for value in values], dtype=dtype)
    return column_class(data, mask=mask)


def _shown(value: Any) -> str:
    """A value in a text column: itself, JSON for a mapping or list, nothing for None."""
    if value is None:
        return ""
    return value if type(value) is str else option_text(value)


def _fitting(texts: list[str], kind: _Kind) -> list[str]:
    """The texts of a column, which its layout's width holds: else the store changed between
    the readings (`StoreChanged`), and numpy would cut them short without a word."""
    if not kind.unmeasured and max(map(len, texts), default=0) > kind.width:
        raise StoreChanged()
    return texts


class StoreChanged(AstraError):
    """The runs read for a table's rows are not those read for its columns: another
    invocation wrote to the store between the readings, which only a store that could not be
    read in one snapshot allows (`ResultsStore.snapshot`: an immutable read of a store in a
    directory astra cannot write)."""

    def __init__(self) -> None:
        super().__init__(
            "the store changed while its runs were read (another invocation writing to it); "
            "no table was written: export again"
        )


def _same_json(first: dict[str, Any], second: dict[str, Any]) -> bool:
    """Equal, and of the same types: 1, 1.0 and True are equal in Python, not in JSON."""
    return first == second and repr(first) == repr(second)


def _is_int64(value: Any) -> bool:
    """An integer a table's int64 column holds (an older store may hold larger ones)."""
    return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63


def _iso(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
    return moment.isoformat(timespec="seconds")


def _ordered(names: Sequence[str], preferred: Sequence[str]) -> list[str]:
    first = [name for name in preferred if name in names]
    return first + [name for name in names if name not in first]


def default_destination(method: str, file_format: str, output_dir: str | os.PathLike[str]) -> Path:
    """`OUTPUT_DIR/astra-METHOD.fits` (or .ecsv, .csv)."""
    return Path(output_dir) / f"astra-{method}.{file_format}"
