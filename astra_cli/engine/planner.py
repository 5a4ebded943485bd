"""The planner: requested runs -> groups by significant options -> chunks for the workers.

This is the seed's scheduler. A run is (method, significant options, observation). Runs that
share the method and its significant options form a group, which needs one model; insignificant
options never split a group. Runs already in the store are sorted out with one bulk query, and
each group is cut into chunks so that every worker has work.

The plan is the only contract between planning and running: it carries the policy that decided
which runs are to do (`force`, `retry_failed`), the chunks the runs will be executed in, and the
store it was made against. `classify` is the one place where a stored status decides whether a
run is done, failed or to do; the run loop calls it again after taking a group's lock.

A stored run is done only while what it was computed from is unchanged: the planner compares
each run's stored input and model states with the current ones (`engine.fingerprints`), and a
run whose input or model changed is stale and to do again.

No I/O but through the `lookup_runs` callable and the `Fingerprints` it is given.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from astra_cli.engine.fingerprints import (
    CHECKSUM_PREFIX,
    MISSING,
    NO_MODEL,
    Fingerprints,
    ModelFingerprint,
)
from astra_cli.engine.requests import RequestSet
from astra_cli.errors import UsageError, spelling
from astra_cli.methods.base import Method, Upstream
from astra_cli.vocabulary import FAULT_ENVIRONMENT, Observation, StoredRun

CHUNKS_PER_WORKER = 4
"""Aim for this many chunks per worker: enough to even out uneven chunks, few enough that the
per-chunk overhead (a task sent, a transaction committed) stays negligible."""

MAX_CHUNK_SIZE = 256
"""Upper bound on the automatic chunk size: it bounds a worker's memory for one chunk and how
much work a crashed worker can take with it, and keeps progress moving."""

MIN_TAIL_CHUNK = 16
"""The smallest chunk the automatic sizes shrink to at the end of a plan (see `chunk_sizes`):
the workers then finish within about this many runs of each other, and a chunk stays big
enough for a method's batch to vectorise (`grid`: 7.0 ms per spectrum in chunks of 256, 6.6 in
chunks of 64, 8.5 in chunks of 16, 17 one by one; bench_grid_batch.py). With 64, a worker
waited for the other's last chunk about 0.3 s at the end of 2,000 runs."""

RunLookup = Callable[[Sequence[str]], Mapping[str, Mapping[str, StoredRun]]]
"""group keys -> {group_key: {observation key: what the store holds of the run}}."""


@dataclass(frozen=True)
class RunPolicy:
    """Which stored runs are run again."""

    force: bool = False
    """Every requested run, whatever the store holds."""
    retry_failed: bool = False
    """Runs that failed before; without it they are reported but left alone."""


@dataclass
class Classification:
    """A group's requested runs sorted by what the store holds for them."""

    todo: list[Observation] = field(default_factory=list)
    done: int = 0
    """ok in the store."""
    failed: int = 0
    """failed in the store, and not to be retried."""
    stale: int = 0
    """In the store, but its input or model changed since: to do."""
    retried: int = 0
    """Failed through no fault of its own (a missing input, a worker that died): to do."""


@dataclass(frozen=True)
class CurrentState:
    """What a group's runs would be computed from now."""

    inputs: Mapping[str, str] = field(default_factory=dict)
    """Observation key -> its input's state; an observation not in it is not compared."""
    model: str | None = None
    """The group's model digest; None compares nothing."""


def classify(
    observations: Iterable[Observation],
    stored: Mapping[str, StoredRun],
    policy: RunPolicy,
    current: CurrentState = CurrentState(),
) -> Classification:
    """Sort runs into done, failed (left alone) and to do, by what the store holds of them
    and whether their input or model changed since (a state the store lacks, as in runs of
    older astra versions, is taken as unchanged)."""
    sorted_runs = Classification()
    if policy.force:
        sorted_runs.todo = list(observations)
        return sorted_runs
    for observation in observations:
        run = stored.get(observation.key)
        if run is None:
            sorted_runs.todo.append(observation)
        elif _changed(run.input_state, current.inputs.get(observation.key)) or _changed(
            run.model_state, current.model
        ):
            sorted_runs.stale += 1
            sorted_runs.todo.append(observation)
        elif run.status == "ok":
            sorted_runs.done += 1
        elif run.fault == FAULT_ENVIRONMENT:
            sorted_runs.retried += 1
            sorted_runs.todo.append(observation)
        elif policy.retry_failed:
            sorted_runs.todo.append(observation)
        else:
            sorted_runs.failed += 1
    return sorted_runs


def _changed(stored: str | None, now: str | None) -> bool:
    """Whether a state differs from the stored one. Nothing is compared where either is not
    known: a state the store lacks, an input that is missing now (an unmounted disk must
    not turn good results into failures), or one of the other kind (`--checksum` switched
    on or off)."""
    if stored is None or now is None or now == MISSING:
        return False
    return _kind(stored) == _kind(now) and stored != now


def _kind(state: str) -> str:
    return "checksum" if state.startswith(CHECKSUM_PREFIX) else "stat"


@dataclass(frozen=True)
class Need:
    """A column of another method's results that a group's runs need (`Method.upstream`)."""

    column: str
    method: str
    options: Mapping[str, Any]
    group_key: str
    """The upstream group whose results hold the column."""
    observed_frame_only: bool
    flags_column: str | None = None

    def applies(self, observation: Observation) -> bool:
        """Whether this observation needs the column looked up (a manifest value wins)."""
        if self.observed_frame_only and not observation.observed_frame:
            return False
        return self.column not in dict(observation.inputs)


@dataclass
class Group:
    """Runs that share a method and its significant options, and so one model."""

    key: str
    method: str
    options: dict[str, Any]
    """Every option the method is constructed with (significant and insignificant)."""
    significant: dict[str, Any]
    observations: list[Observation] = field(default_factory=list)
    """The runs to do, after dropping those already done."""
    requested: int = 0
    already_done: int = 0
    skipped_failed: int = 0
    stale: int = 0
    retried: int = 0
    fingerprinted: bool = False
    """Whether the plan looked at the states below (not when planned without Fingerprints)."""
    model: ModelFingerprint = NO_MODEL
    """The model files' fingerprint as planned: runs store its digest, workers check it."""
    input_states: dict[str, str] = field(default_factory=dict)
    """Observation key -> its input's state as planned, for the runs to do."""
    needs: list[Need] = field(default_factory=list)

    @property
    def current(self) -> CurrentState:
        """What this group's runs would be computed from now, as the plan saw it."""
        if not self.fingerprinted:
            return CurrentState()
        return CurrentState(self.input_states, self.model.digest)


@dataclass(frozen=True)
class Chunk:
    """A slice of a group handed to one worker call."""

    group_key: str
    index: int
    observations: tuple[Observation, ...]


class StartedWorkers(Protocol):
    """Workers started for a stage before it runs (`engine.warmstart.WarmStart`)."""

    workers: int
    """How many: the stage runs on as many, for joblib to reuse them."""

    def finish(self) -> int:
        """Wait until they are ready; the models they loaded."""
        ...

    def cancel(self) -> None:
        """Stop them now (an interrupt)."""
        ...


@dataclass
class Plan:
    """What an invocation will do, and everything the run loop needs to do it."""

    method: str
    method_version: str
    groups: list[Group]
    chunks: list[Chunk]
    chunk_size: int
    policy: RunPolicy = RunPolicy()
    output_dir: str = ""
    """The store the plan was made against, where its results go."""
    bad_rows: int = 0
    """Manifest rows left out as bad (--skip-bad-rows): the invocation cannot exit 0."""
    upstream: list[Plan] = field(default_factory=list)
    """Plans of the methods whose results this one needs, run first (see `engine.upstream`)."""
    requested_at: float = field(default_factory=time.time)
    """When the request was planned: its runs are stored with it, so that a results table
    lists invocation after invocation, each in the order its request named the runs."""
    warm_start: StartedWorkers | None = field(default=None, compare=False, repr=False)
    """The workers started for this stage before the request was checked, loading its first
    model (`engine.warmstart`); `execute_plan` runs the chunks on them."""

    @property
    def requested(self) -> int:
        return sum(group.requested for group in self.groups)

    @property
    def already_done(self) -> int:
        return sum(group.already_done for group in self.groups)

    @property
    def skipped_failed(self) -> int:
        return sum(group.skipped_failed for group in self.groups)

    @property
    def stale(self) -> int:
        return sum(group.stale for group in self.groups)

    @property
    def retried(self) -> int:
        return sum(group.retried for group in self.groups)

    @property
    def to_run(self) -> int:
        return sum(len(group.observations) for group in self.groups)

    def group(self, key: str) -> Group:
        return next(group for group in self.groups if group.key == key)

    def chunks_of(self, group_key: str) -> list[Chunk]:
        return [chunk for chunk in self.chunks if chunk.group_key == group_key]


def group_key(method: str, method_version: str, significant: Mapping[str, Any]) -> str:
    """A run group's stable identity: a hash of the method, its version and its significant
    options (canonical JSON), so it is the same in every invocation and on every machine."""
    canonical = json.dumps(
        [method, method_version, dict(significant)], sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def make_plan(
    method_class: type[Method],
    request_sets: Iterable[RequestSet],
    lookup_runs: RunLookup,
    *,
    fingerprints: Fingerprints | None = None,
    jobs: int = 1,
    chunk_size: int | None = None,
    force: bool = False,
    retry_failed: bool = False,
    output_dir: str = "",
    bad_rows: int = 0,
) -> Plan:
    """Expand request sets into runs, group them, drop those done, and chunk the rest.

    force
        Rerun runs that are already done (or failed).
    retry_failed
        Rerun runs that failed before; without it they are reported but left alone.
    fingerprints
        The current states of inputs and models, to find stale runs (None: none is stale,
        and runs are stored without states).
    """
    if chunk_size is not None and chunk_size < 1:
        raise UsageError(
            f"{spelling().argument('chunk_size')} must be at least 1, not {chunk_size}"
        )
    policy = RunPolicy(force=force, retry_failed=retry_failed)
    groups: dict[str, Group] = {}
    requested: dict[str, dict[str, Observation]] = {}
    for request in request_sets:
        method = method_class(**request.options)
        needs = [_need(upstream) for upstream in method.upstream()]
        significant = method.significant_options
        if needs:
            # The upstream method and its options are part of these runs' identity.
            chain = {need.column: f"{need.method}:{need.group_key}" for need in needs}
            significant = {**significant, "upstream": chain}
        key = group_key(method_class.name, method_class.version, significant)
        if key not in groups:
            groups[key] = Group(key, method_class.name, method.options, significant)
            groups[key].needs = needs
            if fingerprints is not None:
                groups[key].model = fingerprints.model(method)
                groups[key].fingerprinted = True
            requested[key] = {}
        runs = requested[key]
        given: set[str] = set()
        for observation in request.observations:
            runs.setdefault(observation.key, observation)
            if observation.inputs:
                given.update(name for name, _ in observation.inputs)
        if given:
            method.check_inputs(given)

    stored = lookup_runs(list(groups)) if groups and not force else {}
    for key, group in groups.items():
        candidates = list(requested[key].values())
        if fingerprints is not None:
            group.input_states = {o.key: fingerprints.input(o.path) for o in candidates}
        # Nothing stored, nothing to compare: the model's digest may still be being read.
        stored_runs = stored.get(key, {})
        current = group.current if stored_runs else CurrentState()
        sorted_runs = classify(candidates, stored_runs, policy, current)
        group.requested = len(requested[key])
        group.already_done, group.skipped_failed = sorted_runs.done, sorted_runs.failed
        group.stale, group.retried = sorted_runs.stale, sorted_runs.retried
        group.observations = sorted_runs.todo
        if fingerprints is not None:
            todo = {o.key for o in group.observations}
            group.input_states = {k: v for k, v in group.input_states.items() if k in todo}

    total = sum(len(group.observations) for group in groups.values())
    size = chunk_size or automatic_chunk_size(total, jobs)
    return Plan(
        method_class.name,
        method_class.version,
        list(groups.values()),
        make_chunks(groups.values(), size, tail_jobs=jobs if chunk_size is None else 1),
        size,
        policy,
        output_dir,
        bad_rows,
    )


def _need(upstream: Upstream) -> Need:
    from astra_cli.methods.registry import load_method

    upstream_class = load_method(upstream.method)
    method = upstream_class(**upstream.options)
    key = group_key(upstream_class.name, upstream_class.version, method.significant_options)
    return Need(
        upstream.column,
        upstream.method,
        method.options,
        key,
        upstream.observed_frame_only,
        upstream.flags_column,
    )


def make_chunks(groups: Iterable[Group], size: int, *, tail_jobs: int = 1) -> list[Chunk]:
    """Each group's runs cut into chunks of at most `size`, group after group, so that a worker
    meets one group's chunks together and keeps few models in memory. With `tail_jobs` > 1 the
    last chunks of the plan get smaller (`chunk_sizes`), so that no worker is left idle while
    another finishes a full chunk."""
    groups = list(groups)
    remaining = sum(len(group.observations) for group in groups)
    chunks = []
    for group in groups:
        runs = len(group.observations)
        start = 0
        for index, length in enumerate(chunk_sizes(runs, remaining, size, tail_jobs)):
            chunks.append(
                Chunk(group.key, index, tuple(group.observations[start : start + length]))
            )
            start += length
        remaining -= runs
    return chunks


def chunk_sizes(runs: int, remaining: int, size: int, jobs: int) -> list[int]:
    """The lengths of one group's chunks, when `remaining` runs (this group's included) are
    still to be cut: `size` each with one worker; with several, guided self-scheduling: each
    chunk at most 1 / jobs of what remains, no smaller than MIN_TAIL_CHUNK, so that the chunks
    handed out last are small and the workers finish together. (1 / (2 jobs) made half again
    as many chunks, 18 for 2,000 runs on 2 workers against 12, each a call of the method's
    batch more, for workers that finished no closer together.)"""
    sizes = []
    while runs > 0:
        length = size
        if jobs > 1:
            length = min(size, max(MIN_TAIL_CHUNK, math.ceil(remaining / jobs)))
        length = min(length, runs)
        sizes.append(length)
        runs -= length
        remaining -= length
    return sizes


def automatic_chunk_size(runs: int, jobs: int) -> int:
    """Chunks small enough that all `jobs` workers get several, capped at MAX_CHUNK_SIZE."""
    if runs <= 0:
        return 1
    return max(1, min(MAX_CHUNK_SIZE, math.ceil(runs / (max(jobs, 1) * CHUNKS_PER_WORKER))))
