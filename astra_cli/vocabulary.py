"""The words every layer shares: what is analysed (Observation), what a worker reports for it
(Outcome), what the store keeps of a run (RunRecord), and what an invocation did (Summary).

Plain data, no behaviour beyond describing itself, and no imports from the rest of astra but
the exit codes: inputs, engine, store and command line all speak these words, so they must
depend on none of those layers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from astra_cli.exit_codes import ExitCode, stopped_by

StageProgress = Callable[[str, int, int], None]
"""`(stage, done, total)`: what long work is doing (training's `reading 300 spectra`, an
export's `reading the runs`) and how far it got, for a display; called as it goes, and as a
stage ends."""

MAX_LISTED_FAILURES = 20


@dataclass(frozen=True, slots=True)
class Observation:
    """One spectrum to analyse.

    key
        Its stable identity in the results store: `apStar:apred=...,obj=...,release=...` for an
        identifier, `path:/absolute/file.fits` for a file named by path; followed by
        `|name=value` for each input it brings, which then is part of the run.
    path
        The file to read.
    identifiers
        The identifier's keys and values (empty for a path).
    inputs
        Values the observation brings to its method beside the file (a manifest's `v_rad`).
    position
        Where the request named it: the command line's observations first, then every
        manifest row in order (see `numbered`). Not part of its identity; it orders the
        results table as the request was written (None where nobody numbered it).
    """

    key: str
    path: str
    identifiers: tuple[tuple[str, str], ...] = ()
    inputs: tuple[tuple[str, Any], ...] = ()
    position: int | None = field(default=None, compare=False)

    def with_inputs(self, inputs: tuple[tuple[str, Any], ...]) -> Observation:
        """The same observation bringing these inputs (they become part of its key)."""
        if not inputs:
            return self
        key = self.key + _suffix(inputs)
        return Observation(key, self.path, self.identifiers, inputs, self.position)

    def at(self, position: int) -> Observation:
        """The same observation, named at this position of its request."""
        return Observation(self.key, self.path, self.identifiers, self.inputs, position)

    @property
    def observed_frame(self) -> bool:
        """An apVisit spectrum (observed frame), by its identifier or its file's name; apStar
        spectra are at rest."""
        if self.key.startswith(("apVisit", "asVisit")):
            return True
        name = os.path.basename(self.path)
        return self.key.startswith("path:") and name.startswith(("apVisit", "asVisit"))

    @property
    def bare_key(self) -> str:
        """The key without its inputs: the observation as other methods know it."""
        return self.key[: len(self.key) - len(_suffix(self.inputs))]


def numbered(observations: list[Observation], first: int = 0) -> list[Observation]:
    """The observations at positions first, first + 1, ... of their request."""
    return [observation.at(first + index) for index, observation in enumerate(observations)]


def _suffix(inputs: tuple[tuple[str, Any], ...]) -> str:
    """What the inputs add to an observation's key: `|v_rad=12.5`, one per input."""
    return "".join(f"|{name}={value!r}" for name, value in inputs)


FAULT_RUN = "run"
"""A failure of the run itself (the method raised, the spectrum cannot be analysed): kept,
retried only with --retry-failed or once its input or model changes."""
FAULT_ENVIRONMENT = "environment"
"""A failure that is not the run's (a missing input, a worker that died, a model file changed
under the run): the next invocation retries it by itself."""


@dataclass(slots=True)
class Outcome:
    """What happened to one observation: a result, or the error that stopped it."""

    observation: str
    result: dict[str, Any] | None
    error: str | None
    started_at: float
    duration_s: float
    fault: str | None = None
    """For a failure, FAULT_RUN or FAULT_ENVIRONMENT (None means FAULT_RUN)."""

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        # Shallow, as the journal writes it at once: `asdict` copied every result deeply,
        # 38 us a run in the worker, 76 ms of CPU for 2,000 runs.
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Outcome:
        return cls(**values)


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One finished run, as the store keeps it."""

    group_key: str
    observation: str
    method: str
    method_version: str
    options: dict[str, Any]
    identifiers: dict[str, str] | None
    input_path: str
    status: str
    result: dict[str, Any] | None
    error: str | None
    started_at: float | None
    duration_s: float | None
    astra_version: str
    input_state: str | None = None
    """The input file as the run read it: `size:mtime_ns` (or its checksum, `sha256:...`);
    None for runs stored before astra recorded it."""
    model_state: str | None = None
    """A digest of the group's model files' contents (see `engine.fingerprints`)."""
    fault: str | None = None
    """For a failed run, FAULT_RUN or FAULT_ENVIRONMENT."""
    requested_at: float | None = None
    """When the invocation that ran it planned its request: with `request_position`, what
    orders a results table (invocation by invocation, each as its request was written)."""
    request_position: int | None = None
    """The observation's position in that request (`Observation.position`)."""


def option_text(value: Any) -> str:
    """An option value as astra writes it for people and tables: a mapping or list (the
    upstream runs a chained method's group names) as the JSON the store holds, which any table
    reader parses, anything else as itself."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def pairs_text(values: dict[str, Any]) -> str:
    """`name=value name=value` (`option_text` each), or `(none)`: a run's options or results
    on one line, as `astra status` and `astra show` print them."""
    return " ".join(f"{name}={option_text(value)}" for name, value in values.items()) or "(none)"


@dataclass(frozen=True, slots=True)
class StoredRun:
    """What the planner needs of a stored run to decide whether it is done."""

    status: str
    input_state: str | None = None
    model_state: str | None = None
    fault: str | None = None


@dataclass
class Summary:
    """What an invocation did, in numbers: printed at the end, and the source of the exit
    code."""

    method: str
    output_dir: str
    requested: int = 0
    """Runs requested (observations x option combinations, duplicates counted once)."""
    already_done: int = 0
    """Requested runs found done in the store, not run again."""
    skipped_failed: int = 0
    """Requested runs that failed before and were not retried (see --retry-failed)."""
    stale: int = 0
    """Requested runs in the store whose input or model changed since: run again."""
    retried: int = 0
    """Requested runs that failed before through no fault of their own: run again."""
    bad_rows: int = 0
    """Manifest rows left out because they were bad (see --skip-bad-rows)."""
    ran: int = 0
    ok: int = 0
    failed: int = 0
    pending: int = 0
    """Runs left to do because the invocation was interrupted."""
    locked: int = 0
    """Runs not done because another invocation held their group's lock (see --wait)."""
    locked_groups: list[str] = field(default_factory=list)
    """Who held each lock that stopped this invocation: `GROUP: host pid N`."""
    groups: int = 0
    chunks: int = 0
    workers: int = 0
    """Worker processes started (0 when the chunks ran in this process or on a cluster astra
    did not start): no more than the chunks (but 2 for a lone chunk), whatever --jobs says."""
    model_loads: int = 0
    slurm_jobs: dict[str, int] = field(default_factory=dict)
    """Chunks each SLURM job ran (by SLURM_JOB_ID): where the work was done, with
    --backend slurm (or inside a SLURM allocation)."""
    wall_seconds: float = 0.0
    interrupted: bool = False
    signal: str | None = None
    """SIGINT, SIGTERM or SIGHUP when interrupted."""
    failures: list[dict[str, str]] = field(default_factory=list)
    """The first failures of this invocation: observation and error."""
    upstream: list[Summary] = field(default_factory=list)
    """What the methods run first did (`rv` for the velocities `grid` needs, say)."""

    @property
    def exit_code(self) -> ExitCode:
        if self.interrupted:
            return stopped_by(self.signal)
        if self.failed or self.skipped_failed or self.bad_rows:
            return ExitCode.RUNS_FAILED
        if self.locked:
            return ExitCode.RUNS_FAILED if self.ran else ExitCode.LOCKED
        return ExitCode.OK

    def note_failure(self, observation: str, error: str) -> None:
        self.failed += 1
        if len(self.failures) < MAX_LISTED_FAILURES:
            self.failures.append({"observation": observation, "error": error})

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exit_code": int(self.exit_code)}
