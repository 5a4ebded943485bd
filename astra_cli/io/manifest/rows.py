"""From manifest rows to requests: what each column means, and how a row becomes an observation
and the option values it gives.

Columns are identifier keys of the product (`--kind`; apStar, or apVisit when plate, mjd or
fiber are given), allStar-style upper-case names included (`APOGEE_ID` is obj), or `path`; a
column named exactly like a method option gives its rows their own value of that option. Any
other column is named once in a notice and otherwise ignored (in text lines, a bad row).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from astra_cli.errors import UsageError, did_you_mean, spelling
from astra_cli.io.identifiers import IdentifierResolver, observation_from_path
from astra_cli.io.manifest.problems import MAX_LISTED, RowProblem
from astra_cli.io.manifest.readers import Records, Table, Unparseable
from astra_cli.methods.base import Param
from astra_cli.vocabulary import Observation

ALLSTAR_ALIASES = {"apogee_id": "obj"}
"""allStar column names that are identifier keys under another name. The others (TELESCOPE,
FIELD, ...) are the keys in upper case."""

OBSERVED_FRAME_INPUTS = frozenset({"v_rad"})
"""Inputs that only observed-frame spectra (apVisit) take: a v_rad column gives the velocity a
visit's lines are shifted by, and apStar spectra are already at rest (in an allStar-like
manifest the column is the star's velocity, which their spectra no longer show)."""

OptionValues = tuple[tuple[str, Any], ...]
"""A row's own option values as (name, value) pairs: hashable and cheap, so that a million
rows holding ten distinct values make ten request sets rather than a million objects."""


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


def _missing(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def _text(value: Any) -> str:
    """A cell as identifier or path text: FITS, ECSV and JSON give ints, floats and bytes."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


class Interpreter:
    """Turns the rows of every file into observations and option values."""

    def __init__(
        self,
        params: Mapping[str, Param],
        resolver: IdentifierResolver,
        kind: str | None,
        defaults: Mapping[str, str],
        inputs: Mapping[str, type] | None = None,
        first_position: int = 0,
    ) -> None:
        self.params = params
        self.first_position = first_position
        """The request position of the first row (after the command line's observations)."""
        self.inputs = dict(inputs or {})
        self.resolver = resolver
        self.kind = kind
        self.defaults = dict(defaults)
        if kind is not None:
            _ = self.identifier_keys  # a --kind sdss-access does not know is refused at once
        self.requests = ManifestRequests()
        self._coerced: dict[tuple[str, Any], Any] = {}

    @functools.cached_property
    def identifier_keys(self) -> frozenset[str]:
        """The product's identifier keys, looked up only when a column or a `key=value`
        line needs them: that builds one sdss-access Path per release (most of a second), which
        a manifest of paths never needs."""
        return self.resolver.product_keys(self.kind)

    def read(self, source: str, rows: Table | Records) -> None:
        if isinstance(rows, Table):
            self._read_table(source, rows)
        else:
            self._read_records(source, rows)

    def _read_table(self, source: str, table: Table) -> None:
        layout = Layout(source, self, table.columns)
        layout.require_observation_columns()
        for line, cells in table.rows(layout.used):
            layout.add_row(line, cells)
        self.requests.notices += layout.notices()

    def _read_records(self, source: str, records: Records) -> None:
        """Rows with the same keys share one layout: a text file of paths has one."""
        layouts: dict[tuple[str, ...], Layout] = {}
        for line, record in records.rows:
            if isinstance(record, Unparseable):
                self.requests.rows += 1
                self.requests.problem(source, line, record.message)
                continue
            keys = tuple(record)
            layout = layouts.get(keys)
            if layout is None:
                layout = layouts[keys] = Layout(source, self, keys, records.unknown_keys_are_bad)
            cells = tuple(record[name] for name in layout.used)
            nested = next(
                (i for i, cell in enumerate(cells) if isinstance(cell, (list, dict))), None
            )
            if nested is not None:
                self.requests.rows += 1
                message = f"{layout.used[nested]!r} is not a single value"
                self.requests.problem(source, line, message)
                continue
            layout.add_row(line, cells)
        named = any(layout.names_observations for layout in layouts.values())
        if layouts and not named and not records.unknown_keys_are_bad:
            next(iter(layouts.values())).require_observation_columns()
        notices = [notice for layout in layouts.values() for notice in layout.notices()]
        self.requests.notices += list(dict.fromkeys(notices))

    def observation(self, identifier: Mapping[str, str]) -> Observation | str:
        """The identifier (completed by the defaults) resolved, or what is wrong with it."""
        try:
            return self.resolver.resolve({**self.defaults, **identifier}, kind=self.kind)
        except UsageError as error:
            return str(error)

    def options(self, given: Iterable[tuple[str, Any]]) -> OptionValues | str:
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
                    result = Unparseable(str(error))
                self._coerced[cache_key] = result
            if isinstance(result, Unparseable):
                return result.message
            coerced.append((name, result))
        return tuple(coerced)

    def takes_input(self, column: str) -> bool:
        """Whether the column is one of the method's inputs, by name or by a `prefix*`."""
        return any(
            column.startswith(name[:-1]) if name.endswith("*") else column == name
            for name in self.inputs
        )

    def input_values(self, given: Iterable[tuple[str, Any]]) -> tuple[tuple[str, Any], ...] | str:
        """A row's inputs as numbers (empty cells give none), or what is wrong with them."""
        values = []
        for name, value in given:
            if _missing(value):
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                return f"{name}={value!r} is not a number"
            if not math.isfinite(number):
                return f"{name}={value!r} is not a finite number"
            values.append((name, number))
        return tuple(values)

    def check_insignificant_options(self) -> None:
        """Rows may not disagree on an option that does not change results: their runs would
        be the same runs, and only one value could be used."""
        words = spelling()
        for name, param in self.params.items():
            if param.significant:
                continue
            values = {dict(options).get(name) for options in self.requests.by_options}
            values.discard(None)
            if len(values) > 1:
                raise UsageError(
                    f"{words.argument('from_file')}: option {words.option(name)} does not "
                    "change results (it is insignificant), so rows may not give it different "
                    f"values; found {', '.join(sorted(map(str, values)))}"
                )


class Layout:
    """What each column of one file (or each key set of a records file) means, and how a row
    of it becomes a request."""

    def __init__(
        self,
        source: str,
        interpreter: Interpreter,
        columns: Iterable[str],
        unknown_are_bad: bool = False,
    ) -> None:
        self.source = source
        self.interpreter = interpreter
        self.requests = interpreter.requests
        self.keys: dict[str, str] = {}
        """column -> identifier key"""
        self.options: list[str] = []
        self.inputs: list[str] = []
        self.path: str | None = None
        self.ignored: list[str] = []
        self.unused_at_rest: set[str] = set()
        self._made: dict[tuple[Any, ...], Observation | str] = {}
        self._option_values: dict[tuple[Any, ...], OptionValues | str] = {}
        for name in columns:
            self._add_column(name)
        self._naming = [self.path] if self.path is not None else list(self.keys)
        self._unknown = self._unknown_message() if unknown_are_bad else None

    @property
    def names_observations(self) -> bool:
        return bool(self._naming)

    @property
    def used(self) -> list[str]:
        """The columns that name an observation, the option columns, the input columns: a
        row's cells."""
        return [*self._naming, *self.options, *self.inputs]

    def _add_column(self, name: str) -> None:
        key = ALLSTAR_ALIASES.get(name.strip().lower(), name.strip().lower())
        if key == "path" or key in self.interpreter.identifier_keys:
            taken = self.path if key == "path" else _find(self.keys, key)
            if taken is not None:
                raise UsageError(
                    f"{self.source}: columns {taken!r} and {name!r} both give {key}; keep one"
                )
            if key == "path":
                self.path = name
            else:
                self.keys[name] = key
        elif name in self.interpreter.params:
            self.options.append(name)
        elif self.interpreter.takes_input(name):
            self.inputs.append(name)
        else:
            self.ignored.append(name)

    def _unknown_message(self) -> str | None:
        if not self.ignored:
            return None
        unknown = self.ignored[0]
        choices = [*self.interpreter.identifier_keys, *self.interpreter.params]
        hint = did_you_mean(unknown, choices)
        return f"{unknown!r}{hint} is neither an identifier key nor an option"

    def require_observation_columns(self) -> None:
        if not self._naming:
            keys = ", ".join(sorted(self.interpreter.identifier_keys))
            raise UsageError(
                f"{self.source}: no column names an observation: expected `path` or identifier "
                f"keys ({keys})"
            )

    def add_row(self, line: int, cells: tuple[Any, ...] | Unparseable) -> None:
        """The hot loop, once per row: two cached lookups and an append when all is well."""
        requests = self.requests
        requests.rows += 1
        if isinstance(cells, Unparseable):
            requests.problem(self.source, line, cells.message)
            return
        if self._unknown is not None:
            requests.problem(self.source, line, self._unknown)
            return
        width, options_end = len(self._naming), len(self._naming) + len(self.options)
        naming, option_cells = cells[:width], cells[width:options_end]
        inputs: tuple[tuple[str, Any], ...] = ()
        if self.inputs:
            given = self.interpreter.input_values(
                zip(self.inputs, cells[options_end:], strict=True)
            )
            if isinstance(given, str):
                requests.problem(self.source, line, given)
                return
            inputs = given
        options = self._option_values.get(option_cells)
        if options is None:
            options = self.interpreter.options(zip(self.options, option_cells, strict=True))
            self._option_values[option_cells] = options
        observation = self._made.get(naming)
        if observation is None:
            observation = self._made[naming] = self._make(naming)
        if isinstance(options, str):
            requests.problem(self.source, line, options)
        elif isinstance(observation, str):
            requests.problem(self.source, line, observation)
        else:
            if inputs and not observation.observed_frame:
                dropped = {name for name, _ in inputs if name in OBSERVED_FRAME_INPUTS}
                self.unused_at_rest |= dropped
                inputs = tuple((name, value) for name, value in inputs if name not in dropped)
            position = self.interpreter.first_position + requests.rows - 1
            requests.add(options, observation.with_inputs(inputs).at(position))

    def _make(self, naming: tuple[Any, ...]) -> Observation | str:
        if not naming:
            return "names no observation: no `path` and no identifier key"
        if self.path is not None:
            (path,) = naming
            return "empty path" if _missing(path) else observation_from_path(_text(path))
        identifier = {
            key: _text(value)
            for key, value in zip(self.keys.values(), naming, strict=True)
            if not _missing(value)
        }
        return self.interpreter.observation(identifier)

    def notices(self) -> list[str]:
        """One line for the columns that were not used, one for identifier columns beside
        `path`."""
        product = self.interpreter.kind or "apStar or apVisit"
        reasons = {
            f"not `path`, an identifier key of {product}, or an option or input of the method": (
                [] if self._unknown is not None else self.ignored
            ),
            "the path column names the files": list(self.keys) if self.path is not None else [],
        }
        lines = []
        if self.unused_at_rest:
            unused = ", ".join(sorted(self.unused_at_rest))
            lines.append(
                f"{self.source}: column(s) {unused} not used for apStar rows (their spectra "
                "are at rest; it is the velocity of an observed-frame apVisit spectrum)"
            )
        for reason, names in reasons.items():
            if names:
                listed = ", ".join(names[:MAX_LISTED])
                more = f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
                lines.append(f"{self.source}: ignoring column(s) {listed}{more} ({reason})")
        return lines


def _find(mapping: Mapping[str, str], value: str) -> str | None:
    return next((key for key, found in mapping.items() if found == value), None)
