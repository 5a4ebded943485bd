"""Results as one table: every stored run of a method, one row each, written as FITS (an
allStar-like catalogue: upper-case column names, APOGEE_ID, units in TUNIT), ECSV, CSV, TSV,
VOTable or Parquet (with pyarrow), by the file's name or `--format`.

Columns: the identifier keys (in the usual order), the input path and observation key, the
group key and the significant options (one column each; an option named like a result column
is prefixed `option_`), status, error, start time (ISO, UTC), duration, astra and method
versions, then every result column any run returned (masked where a run has none).
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

from astra_cli.errors import UsageError
from astra_cli.io.formats import extensions_of
from astra_cli.io.formats import format_of as format_of_name
from astra_cli.io.identifiers import IDENTIFIER_KEYS
from astra_cli.vocabulary import RunRecord, option_text

ExportFormat = Literal["fits", "ecsv", "csv", "tsv", "votable", "parquet"]
FORMATS: tuple[str, ...] = get_args(ExportFormat)
_ASTROPY_FORMATS = {
    "ecsv": "ascii.ecsv", "csv": "ascii.csv", "tsv": "ascii.tab", "votable": "votable",
    "parquet": "parquet",
}  # fmt: skip
_FITS_NAMES = {"obj": "APOGEE_ID"}
"""Columns that allStar names otherwise than upper case alone."""
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


def results_table(
    records: Iterable[RunRecord], *, method: str, latest_per_observation: bool = False
) -> Any:
    """An astropy Table of run records, read once: a store's records are turned into columns
    as they come, not all held first (as RunRecords, 200,000 runs of `grid` took 0.8 GB
    before their table was made), except with `latest_per_observation`, which holds each
    observation's latest until every record is read. `describe` adds what the method says of
    its columns."""
    from astropy.table import MaskedColumn, Table

    from astra_cli.version import __version__  # package metadata: not at start-up

    rows = _latest_per_observation(records) if latest_per_observation else records
    identifiers, options, results = _Columns(missing=""), _Columns(), _Columns()
    fixed: dict[str, list[Any]] = {name: [] for name in _RUN_COLUMNS}
    lists = list(fixed.values())
    groups: dict[str, dict[str, Any]] = {}
    for row in rows:
        identifiers.add(row.identifiers)
        options.add(row.options)
        results.add(row.result)
        for values, value in zip(lists, _run_values(row), strict=True):
            values.append(value)
        groups[row.group_key] = row.options

    option_columns = {
        name: f"option_{name}" if name in results.values or name in _FIXED else name
        for name in options.values
    }
    columns: dict[str, Any] = {}
    for key in _ordered(list(identifiers.values), IDENTIFIER_KEYS):
        columns[key] = identifiers.values.pop(key)
    for name in ("input_path", "observation", "group_key"):
        columns[name] = fixed.pop(name)
    for name, column in option_columns.items():
        columns[column] = _column(MaskedColumn, options.values.pop(name))
    columns.update(fixed)
    columns["duration_s"] = _column(MaskedColumn, fixed["duration_s"])
    for name in list(results.values):
        columns[name] = _column(MaskedColumn, results.values.pop(name))

    rowcount = len(columns["observation"])
    table = Table(columns) if rowcount else Table(names=list(columns) or ["observation"])
    table["duration_s"].unit = "s"
    table.meta.update(
        {
            "method": method,
            "astra_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "groups": {key: groups[key] for key in sorted(groups)},
        }
    )
    return table


def describe(table: Any, descriptions: dict[str, str], units: dict[str, str]) -> None:
    """Put what the method says of its columns on the table: `descriptions` (column -> text)
    beside them (ECSV descriptions, FITS TCOMMn), `units` (column -> astropy unit) in them."""
    for name, text in descriptions.items():
        if name in table.colnames:
            table[name].description = text
    for name, unit in units.items():
        if name in table.colnames:
            table[name].unit = unit


class _Columns:
    """The values of the columns one mapping of each record gives (its identifiers, options
    or results), by name in the order first seen, one per record; records without a name
    have `missing` there."""

    def __init__(self, missing: Any = None) -> None:
        self.missing = missing
        self.values: dict[str, list[Any]] = {}
        self._records = 0

    def add(self, mapping: dict[str, Any] | None) -> None:
        """The next record's mapping (None: it has none)."""
        mapping = mapping or {}
        for name, values in self.values.items():
            values.append(mapping.get(name, self.missing))
        for name, value in mapping.items():
            if name not in self.values:
                self.values[name] = [self.missing] * self._records + [value]
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


def write_table(table: Any, destination: str, file_format: str) -> list[str]:
    """Write to a file, or to standard output when `destination` is '-'; what the reader of
    the file should be told (text that FITS could not hold as it was)."""
    if file_format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {file_format!r}")
    if file_format == "fits":
        return _write_fits(table, destination)
    if file_format == "parquet":
        _check_parquet(destination)
    if file_format in ("csv", "tsv", "votable"):
        table = table.copy(copy_data=False)
        table.meta.clear()  # no place for nested metadata in these
    astropy_format = _ASTROPY_FORMATS[file_format]
    if destination == "-":
        import sys

        table.write(sys.stdout, format=astropy_format)
        return []
    table.write(destination, format=astropy_format, overwrite=True)
    return []


def _check_parquet(destination: str) -> None:
    if destination == "-":
        raise UsageError("--format parquet cannot go to standard output: give --out FILE")
    import importlib.util

    if importlib.util.find_spec("pyarrow") is None:
        raise UsageError("writing Parquet needs pyarrow: pip install pyarrow")


def _write_fits(table: Any, destination: str) -> list[str]:
    from astropy.io import fits

    renamed, escaped = _upper_case(table)
    hdu = fits.table_to_hdu(renamed)
    hdu.name = "RESULTS"
    for index, column in enumerate(table.itercols(), 1):
        if column.description:
            hdu.header[f"TCOMM{index}"] = column.description[:68]
            if len(column.description) > 68:  # a card's limit: the whole text as comments
                hdu.header.add_comment(f"{column.name.upper()}: {column.description}")
    primary = fits.PrimaryHDU()
    header = primary.header
    header["ASTRAVER"] = (table.meta["astra_version"], "astra version that wrote this table")
    header["METHOD"] = table.meta["method"]
    header["CREATED"] = table.meta["created"]
    header["NGROUPS"] = (len(table.meta["groups"]), "groups (option sets) in the table")
    for key, options in table.meta["groups"].items():
        header.add_history(f"group {key}: {json.dumps(options, sort_keys=True)}")
    hdus = fits.HDUList([primary, hdu])
    if destination == "-":
        import sys

        hdus.writeto(sys.stdout.buffer)
    else:
        hdus.writeto(destination, overwrite=True)
    if not escaped:
        return []
    columns = ", ".join(f"{name} ({count})" for name, count in escaped.items())
    return [
        f"FITS holds text as ASCII: values with other characters are written with backslash "
        f"escapes (ö as \\xf6), in {columns}; the other formats keep every character"
    ]


def _upper_case(table: Any) -> tuple[Any, dict[str, int]]:
    """Column names as allStar has them: upper case, `obj` as APOGEE_ID; text as the ASCII
    bytes FITS holds, and how many values of each column needed escapes for that.

    Encoded here, not by astropy: astropy copies a table whole, twice, on its way to FITS, and
    numpy's text takes four bytes a character (for a table of 200,000 runs of `grid`, the
    memory the conversion takes beyond the table's own fell by about two fifths, for the
    same file); and astropy stops at the first character beyond ASCII (a path with an
    accent), where no table was written at all."""
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
        mask = getattr(column, "mask", None)
        renamed[name] = column.copy(data=data if mask is None else np.ma.array(data, mask=mask))
    names = [_FITS_NAMES.get(name, name.upper()) for name in renamed.colnames]
    if len(set(names)) == len(names):
        escaped = {_FITS_NAMES.get(name, name.upper()): n for name, n in escaped.items()}
        renamed.rename_columns(renamed.colnames, names)
    return renamed, escaped


def _column(column_class: Any, values: Sequence[Any]) -> Any:
    """A typed column with masked gaps: bool, int64, float64 or str by what the values are. A
    dict or list (the upstream runs an option names) is written as the store holds it, JSON,
    which every reader parses, rather than as Python prints it."""
    import numpy as np

    present = [value for value in values if value is not None]
    dtype: Any
    fill: Any
    if all(isinstance(value, bool) for value in present):
        dtype, fill = bool, False
    elif all(_is_int64(value) for value in present):
        dtype, fill = np.int64, 0
    elif all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in present):
        dtype, fill = np.float64, np.nan
    else:
        return column_class(
            ["" if value is None else option_text(value) for value in values],
            mask=[value is None for value in values],
        )
    data = np.array([fill if value is None else value for value in values], dtype=dtype)
    return column_class(data, mask=[value is None for value in values])


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


def _latest_per_observation(rows: Iterable[RunRecord]) -> list[RunRecord]:
    """Each observation's latest run: one record per observation held, not every one."""
    latest: dict[str, RunRecord] = {}
    for row in rows:
        kept = latest.get(row.observation)
        if kept is None or (row.started_at or 0) > (kept.started_at or 0):
            latest[row.observation] = row
    return list(latest.values())


def default_destination(method: str, file_format: str, output_dir: str | os.PathLike[str]) -> Path:
    """`OUTPUT_DIR/astra-METHOD.fits` (or .ecsv, .csv)."""
    return Path(output_dir) / f"astra-{method}.{file_format}"
