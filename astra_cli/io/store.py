"""The results store: one SQLite database in the output directory, one row per run.

SQLite because completeness is then one indexed query rather than a million `stat` calls, a
chunk's results land in one transaction (a killed invocation leaves no half-written result), and
several invocations can share an output directory on a local disk. Only the invoking process
writes; workers send their results back to it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from astra_cli.errors import UsageError, spelling
from astra_cli.vocabulary import RunRecord, StoredRun

DEFAULT_OUTPUT_DIR = "astra-output"
STORE_FILENAME = "astra.sqlite"
SETUP_LOCK_FILENAME = ".store.lock"
SCHEMA_VERSION = 4
BUSY_TIMEOUT_MS = 60_000

_SCHEMA_1 = (
    """
CREATE TABLE IF NOT EXISTS runs (
    group_key      TEXT NOT NULL,
    observation    TEXT NOT NULL,
    method         TEXT NOT NULL,
    method_version TEXT NOT NULL,
    options        TEXT NOT NULL,
    identifiers    TEXT,
    input_path     TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    result         TEXT,
    error          TEXT,
    started_at     REAL,
    duration_s     REAL,
    astra_version  TEXT NOT NULL,
    PRIMARY KEY (group_key, observation)
) WITHOUT ROWID
""",
    "CREATE INDEX IF NOT EXISTS runs_by_method ON runs (method, status)",
)

_SCHEMA_2 = (
    # What each run was computed from, and whose fault a failure was (see RunRecord).
    "ALTER TABLE runs ADD COLUMN input_state TEXT",
    "ALTER TABLE runs ADD COLUMN model_state TEXT",
    "ALTER TABLE runs ADD COLUMN fault TEXT",
    """
CREATE TABLE IF NOT EXISTS model_digests (
    path     TEXT PRIMARY KEY,
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    digest   TEXT NOT NULL
)
""",
)

_SCHEMA_3 = (
    # Where each run stood in the request that ran it, to export results in that order.
    "ALTER TABLE runs ADD COLUMN requested_at REAL",
    "ALTER TABLE runs ADD COLUMN request_position INTEGER",
)

_SCHEMA_4 = (
    # Models that passed their method's checks (engine.modelchecks), not to be read again.
    "CREATE TABLE IF NOT EXISTS model_checks (key TEXT PRIMARY KEY, passed_at REAL NOT NULL)",
)

_MIGRATIONS = {1: _SCHEMA_1, 2: _SCHEMA_2, 3: _SCHEMA_3, 4: _SCHEMA_4}
"""The statements that bring a store of schema N - 1 to schema N."""

_COLUMNS = (
    "group_key", "observation", "method", "method_version", "options", "identifiers",
    "input_path", "status", "result", "error", "started_at", "duration_s", "astra_version",
    "input_state", "model_state", "fault", "requested_at", "request_position",
)  # fmt: skip
_COLUMNS_OF_SCHEMA = {1: _COLUMNS[:13], 2: _COLUMNS[:16], 3: _COLUMNS, 4: _COLUMNS}
"""The columns of each schema: a read-only connection reads an older store as it is."""


def refuse_a_file_as_directory(output_dir: str | os.PathLike[str]) -> None:
    """Refuse a file named where the store's directory is expected (a table's name, by the
    habit of `-o FILE`), before anything is read or written."""
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        option = spelling().argument("output_dir")
        raise UsageError(
            f"{option} {output_dir} is a file; {option} names the directory of the results "
            "store (a table is written by astra results -o FILE)"
        )


class ResultsStore:
    """The SQLite results store of one output directory.

    Opening creates the directory and the database when they do not exist, in WAL mode so that
    readers never block the writer and a crash leaves the database consistent. With
    `read_only`, no store, table or lock file is created and nothing is written: for the
    commands that only read, which then work on a store in a directory they cannot write.
    """

    def __init__(self, output_dir: str | os.PathLike[str], *, read_only: bool = False) -> None:
        self.output_dir = Path(output_dir)
        self.path = self.output_dir / STORE_FILENAME
        self.read_only = read_only
        self.damaged: list[str] = []
        """Runs `records` skipped because a cell could not be read: `group/observation`."""
        self._columns: tuple[str, ...] = _COLUMNS
        self._version = SCHEMA_VERSION
        """The store's schema: older ones are read as they are by read-only connections."""
        refuse_a_file_as_directory(self.output_dir)
        if read_only:
            self._connection = self._open_read_only()
            return
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            self._connection = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
            )
        except (OSError, sqlite3.Error) as error:
            raise self._unusable(error) from None
        try:
            self._connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            # Switching a new database to WAL and creating its schema can answer "database is
            # locked" at once, without waiting, when two invocations do it together: one at a
            # time, then.
            with _setup_lock(self.output_dir):
                self._refuse_foreign()
                self._connection.execute("PRAGMA journal_mode = WAL")
                self._migrate()
            self._connection.execute("PRAGMA synchronous = NORMAL")
            # A store SQLite can only read (a read-only file) opens without a word, and would
            # refuse the first chunk's results: find out now, before any work.
            self._connection.execute("BEGIN IMMEDIATE")
            self._connection.execute("ROLLBACK")
        except (OSError, sqlite3.Error) as error:
            self._connection.close()
            raise self._unusable(error) from None
        except BaseException:  # a newer schema, say: still, leave no connection open
            self._connection.close()
            raise

    def _open_read_only(self) -> sqlite3.Connection:
        """A connection that changes nothing of the store. Where the directory is writable,
        an ordinary one that creates no store (SQLite's own -wal and -shm files come and go
        with it); elsewhere read-only, and `immutable` when SQLite cannot otherwise read a WAL
        database there and no write-ahead log is waiting."""
        if not self.path.is_file():
            raise UsageError(f"no results store in {self.output_dir} (give --output-dir)")
        uri = self.path.resolve().as_uri()
        writable = os.access(self.output_dir, os.W_OK) and os.access(self.path, os.W_OK)
        attempts = ["mode=rw"] if writable else ["mode=ro"]
        wal = self.path.with_name(self.path.name + "-wal")
        if not writable and not (wal.exists() and wal.stat().st_size):
            # Nothing waits in a write-ahead log, so the file alone is the store: safe to read
            # as a snapshot where SQLite may not create its shared-memory file.
            attempts.append("mode=ro&immutable=1")
        failure: sqlite3.Error | None = None
        for options in attempts:
            connection = sqlite3.connect(
                f"{uri}?{options}", uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000
            )
            # A damaged cell that is not UTF-8 reads as replacement characters: the row is
            # then skipped as damaged (`records`), not the whole query failed.
            connection.text_factory = lambda raw: raw.decode("utf-8", errors="replace")
            try:
                (version,) = connection.execute("PRAGMA user_version").fetchone()
                break
            except sqlite3.Error as error:
                connection.close()
                failure = error
        else:
            raise self._unreadable(failure)
        if version > SCHEMA_VERSION:
            connection.close()
            raise UsageError(
                f"{self.path} was written by a newer astra (schema {version}); upgrade astra"
            )
        self._columns = _COLUMNS_OF_SCHEMA.get(version, _COLUMNS)
        self._version = version
        self._check_schema(connection)
        return connection

    def _unreadable(self, error: sqlite3.Error | None) -> UsageError:
        return self._not_a_store(error) or UsageError(
            f"cannot read the results store {self.path}: {error}"
        )

    def _not_a_store(self, error: BaseException | None) -> UsageError | None:
        """The error for a file SQLite cannot read as a database (not a lock or a full disk)."""
        if isinstance(error, sqlite3.DatabaseError) and not isinstance(
            error, sqlite3.OperationalError
        ):
            return UsageError(f"{self.path} is not a readable astra results store: {error}")
        return None

    def _check_schema(self, connection: sqlite3.Connection) -> None:
        """Refuse a file that is not an astra store (another program's SQLite database, or
        one whose table lost columns) with one line, before any query fails half-way."""
        try:
            found = {row[1] for row in connection.execute("PRAGMA table_info(runs)")}
        except sqlite3.DatabaseError as error:
            connection.close()
            raise UsageError(
                f"{self.path} is not a readable astra results store: {error}"
            ) from None
        missing = [column for column in self._columns if column not in found]
        if missing:
            connection.close()
            what = "has no runs table" if not found else f"lacks column(s) {', '.join(missing)}"
            raise UsageError(f"{self.path} is not an astra results store: it {what}")

    def _unusable(self, error: BaseException) -> UsageError:
        not_a_store = self._not_a_store(error)
        if not_a_store is not None:
            return not_a_store
        return UsageError(
            f"cannot open the results store {self.path}: {error} "
            f"(choose a writable directory with {spelling().argument('output_dir')})"
        )

    def _refuse_foreign(self) -> None:
        """Refuse another program's SQLite database before changing anything of it (not even
        its journal mode)."""
        (version,) = self._connection.execute("PRAGMA user_version").fetchone()
        if version:
            return
        query = "SELECT name FROM sqlite_master WHERE type = 'table'"
        tables = [row[0] for row in self._connection.execute(query)]
        if tables:
            raise UsageError(
                f"{self.path} is not an astra results store: it holds the tables "
                f"{', '.join(sorted(tables))} of another program"
            )

    def _migrate(self) -> None:
        (version,) = self._connection.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise UsageError(
                f"{self.path} was written by a newer astra (schema {version}); upgrade astra"
            )
        if version < SCHEMA_VERSION:
            with self.transaction():
                for step in range(version + 1, SCHEMA_VERSION + 1):
                    for statement in _MIGRATIONS[step]:
                        self._connection.execute(statement)
                self._connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._check_schema(self._connection)

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def transaction(self) -> _Transaction:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error): takes the write lock up front, so a
        concurrent writer waits for the busy timeout instead of failing half-way."""
        return _Transaction(self._connection)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """One read transaction: every query in it sees the store as the first one did,
        whatever another invocation writes meanwhile (an export reads the runs twice)."""
        self._connection.execute("BEGIN")
        try:
            yield
        finally:
            # Nothing was written: ending the transaction cannot lose anything, and a store
            # that fails here must not hide what failed inside it.
            with contextlib.suppress(sqlite3.Error):
                self._connection.execute("COMMIT")

    def stored_runs(self, group_keys: Sequence[str]) -> dict[str, dict[str, StoredRun]]:
        """{group_key: {observation: StoredRun}} for every stored run of these groups, in one
        query."""
        found: dict[str, dict[str, StoredRun]] = {key: {} for key in group_keys}
        if not group_keys:
            return found
        placeholders = ",".join("?" * len(group_keys))
        states = (
            "input_state, model_state, fault" if "fault" in self._columns else "NULL, NULL, NULL"
        )
        query = (
            f"SELECT group_key, observation, status, {states} FROM runs "
            f"WHERE group_key IN ({placeholders})"
        )
        for group_key, observation, *stored in self._connection.execute(query, list(group_keys)):
            found[group_key][observation] = StoredRun(*stored)
        return found

    def model_digest(self, path: str, size: int, mtime_ns: int) -> str | None:
        """The digest remembered for a model file of this size and modification time."""
        if "fault" not in self._columns:
            return None
        row = self._connection.execute(
            "SELECT digest FROM model_digests WHERE path = ? AND size = ? AND mtime_ns = ?",
            (path, size, mtime_ns),
        ).fetchone()
        return row[0] if row else None

    def remember_model_digest(self, path: str, size: int, mtime_ns: int, digest: str) -> None:
        """Keep a model file's digest, so that the next invocation need not read it again."""
        if self.read_only:
            return
        with self.transaction():
            self._connection.execute(
                "INSERT OR REPLACE INTO model_digests VALUES (?, ?, ?, ?)",
                (path, size, mtime_ns, digest),
            )

    def model_check_passed(self, key: str) -> bool:
        """Whether a model passed its method's checks under this key (`engine.modelchecks`);
        never in a store older than schema 4."""
        if self._version < 4:
            return False
        query = "SELECT 1 FROM model_checks WHERE key = ?"
        return self._connection.execute(query, (key,)).fetchone() is not None

    def remember_model_checks(self, keys: Sequence[str]) -> None:
        """Remember that models passed their method's checks under these keys."""
        if self.read_only or not keys:
            return
        now = time.time()
        with self.transaction():
            self._connection.executemany(
                "INSERT OR REPLACE INTO model_checks VALUES (?, ?)", [(key, now) for key in keys]
            )

    def column_values(
        self, group_key: str, columns: Sequence[str], observations: Sequence[str]
    ) -> dict[str, tuple[str, tuple[Any, ...], str | None]]:
        """{observation: (status, the result's `columns`, error)} for these runs of a group,
        in a query per 900 observations (SQLite's limit on parameters)."""
        found: dict[str, tuple[str, tuple[Any, ...], str | None]] = {}
        extracts = ", ".join("json_extract(result, ?)" for _ in columns)
        paths = [f"$.{column}" for column in columns]
        for start in range(0, len(observations), 900):
            batch = list(observations[start : start + 900])
            placeholders = ",".join("?" * len(batch))
            query = (
                f"SELECT observation, status, error, {extracts} FROM runs "
                f"WHERE group_key = ? AND observation IN ({placeholders})"
            )
            for observation, status, error, *values in self._connection.execute(
                query, [*paths, group_key, *batch]
            ):
                found[observation] = (status, tuple(values), error)
        return found

    def write(self, records: Iterable[RunRecord]) -> int:
        """Insert or replace runs in one transaction; returns how many."""
        rows = [_to_row(record) for record in records]
        if not rows:
            return 0
        placeholders = ",".join("?" * len(_COLUMNS))
        with self.transaction():
            self._connection.executemany(
                f"INSERT OR REPLACE INTO runs ({','.join(_COLUMNS)}) VALUES ({placeholders})",
                rows,
            )
        return len(rows)

    def records(
        self,
        method: str | None = None,
        status: str | None = None,
        group_key: str | None = None,
        before: float | None = None,
    ) -> Iterator[RunRecord]:
        """Stored runs, optionally of one method, status and group, and started before a time,
        in request order: invocation by invocation, each in the order its request named the
        observations (runs stored before astra recorded it come first, by group and start)."""
        where, parameters = _where(method, status, group_key, before)
        order = "group_key, started_at"
        if "request_position" in self._columns:
            order = f"requested_at, request_position, {order}"
        query = f"SELECT {','.join(self._columns)} FROM runs{where} ORDER BY {order}"
        for row in self._connection.execute(query, parameters):
            try:
                yield _from_row(dict(zip(self._columns, row, strict=True)))
            except (ValueError, TypeError):  # a cell that is not the JSON astra wrote
                self.damaged.append(f"{row[0]}/{row[1]}")

    def count(
        self, method: str | None = None, status: str | None = None, group_key: str | None = None
    ) -> int:
        where, parameters = _where(method, status, group_key)
        query = f"SELECT COUNT(*) FROM runs{where}"
        (count,) = self._connection.execute(query, parameters).fetchone()
        return count

    def runs_of(self, target: str) -> list[RunRecord]:
        """Every run of one observation, whatever the method and options: by its key (with
        or without the inputs a manifest gave it, `|v_rad=...`), its input file, or its
        object (`obj`, the APOGEE_ID)."""
        obj = "CASE WHEN json_valid(identifiers) THEN json_extract(identifiers, '$.obj') END"
        query = (
            f"SELECT {','.join(self._columns)} FROM runs WHERE observation = ? "
            f"OR substr(observation, 1, ?) = ? OR input_path = ? OR {obj} = ? "
            "ORDER BY method, started_at"
        )
        prefix = f"{target}|"
        parameters = (target, len(prefix), prefix, target, target)
        found = []
        for row in self._connection.execute(query, parameters):
            try:
                found.append(_from_row(dict(zip(self._columns, row, strict=True))))
            except (ValueError, TypeError):
                self.damaged.append(f"{row[0]}/{row[1]}")
        return found

    def forget(
        self, method: str, status: str | None, group_key: str | None, before: float | None
    ) -> int:
        """Delete the runs of a method that match, in one transaction; how many."""
        where, parameters = _where(method, status, group_key, before)
        with self.transaction():
            deleted = self._connection.execute(f"DELETE FROM runs{where}", parameters)
        return deleted.rowcount

    def overview_rows(self) -> Iterator[tuple[Any, ...]]:
        """(method, group_key, options, status, input_path, input_state, model_state, flags,
        started_at) of every run, by method and group: what `astra status` with no request
        sums up. A result that is not JSON gives flags None rather than failing the query."""
        states = "input_state, model_state" if "fault" in self._columns else "NULL, NULL"
        flags = "CASE WHEN json_valid(result) THEN json_extract(result, '$.flags') END"
        query = (
            f"SELECT method, group_key, options, status, input_path, {states}, {flags}, "
            "started_at FROM runs ORDER BY method, group_key"
        )
        yield from self._connection.execute(query)

    def group_keys(self, method: str) -> list[str]:
        """The groups of a method that have runs in the store."""
        query = "SELECT DISTINCT group_key FROM runs WHERE method = ? ORDER BY group_key"
        return [key for (key,) in self._connection.execute(query, (method,))]

    def methods(self) -> list[str]:
        """The methods that have runs in the store."""
        query = "SELECT DISTINCT method FROM runs ORDER BY method"
        return [method for (method,) in self._connection.execute(query)]


def _where(
    method: str | None,
    status: str | None,
    group_key: str | None = None,
    before: float | None = None,
) -> tuple[str, list[Any]]:
    clauses = {
        "method = ?": method, "status = ?": status, "group_key = ?": group_key,
        "started_at < ?": before,
    }  # fmt: skip
    used = {clause: value for clause, value in clauses.items() if value is not None}
    return (f" WHERE {' AND '.join(used)}" if used else "", list(used.values()))


@contextlib.contextmanager
def _setup_lock(output_dir: Path) -> Iterator[None]:
    """An flock on OUTPUT/.store.lock while a connection sets the database up."""
    descriptor = os.open(output_dir / SETUP_LOCK_FILENAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


class _Transaction:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def __enter__(self) -> None:
        self._connection.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self._connection.execute("COMMIT")
        elif self._connection.in_transaction:  # SQLite rolls back by itself on SQLITE_FULL
            self._connection.execute("ROLLBACK")


def _to_row(record: RunRecord) -> tuple[Any, ...]:
    return (
        record.group_key,
        record.observation,
        record.method,
        record.method_version,
        _dumps(record.options),
        _dumps(record.identifiers) if record.identifiers else None,
        record.input_path,
        record.status,
        _dumps(record.result, sort_keys=False) if record.result is not None else None,
        record.error,
        record.started_at,
        record.duration_s,
        record.astra_version,
        record.input_state,
        record.model_state,
        record.fault,
        record.requested_at,
        record.request_position,
    )


def _from_row(values: dict[str, Any]) -> RunRecord:
    """A row as a RunRecord; ValueError for a cell that is not what astra wrote."""
    for column in ("options", "identifiers", "result"):
        if values[column] is not None:
            values[column] = json.loads(values[column])
            if not isinstance(values[column], dict):
                raise ValueError(f"{column} is not a JSON object")
    return RunRecord(**values)


def _dumps(value: Any, *, sort_keys: bool = True) -> str:
    """Compact JSON; results keep the method's column order, the rest is canonical."""
    return json.dumps(value, sort_keys=sort_keys, separators=(",", ":"), allow_nan=False)
