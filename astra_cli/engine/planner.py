"""The planner: requested runs -> groups by significant options -> chunks for the workers.

This is the seed's scheduler. A run is (method, significant options, observation). Runs that
share the method and its significant options form a group, which needs one model; insignificant
options never split a group. Runs already in the store are sorted out with one bulk query, and
each group is cut into chunks so that every worker has work.

The plan is the only contract between planning and running: it carries the policy that decided
which runs are to do (`force`, `retry_failed`), the chunks the runs will be executed in, and the
store it was made against. `classify` is the one place where a stored status decides whether a
run is done, failed or to do; the run loop calls it again after taking a group's lock.

Pure: no I/O except through the `lookup_statuses` callable it is given.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from astra_cli.engine.requests import RequestSet
from astra_cli.errors import UsageError, spelling
from astra_cli.methods.base import Method, Upstream
from astra_cli.vocabulary import Observation

CHUNKS_PER_WORKER = 4
"""Aim for this many chunks per worker: enough to even out uneven chunks, few enough that the
per-chunk overhead (a task sent, a transaction committed) stays negligible."""

MAX_CHUNK_SIZE = 256
"""Upper bound on the automatic chunk size: it bounds a worker's memory for one chunk and how
much work a crashed worker can take with it, and keeps progress moving."""

StatusLookup = Callable[[Sequence[str]], Mapping[str, Mapping[str, str]]]
"""group keys -> {group_key: {observation key: stored status}}."""


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


def classify(
    observations: Iterable[Observation], statuses: Mapping[str, str], policy: RunPolicy
) -> Classification:
    """Sort runs into done, failed (left alone) and to do, by their stored status."""
    sorted_runs = Classification()
    if policy.force:
        sorted_runs.todo = list(observations)
        return sorted_runs
    for observation in observations:
        status = statuses.get(observation.key)
        if status == "ok":
            sorted_runs.done += 1
        elif status == "failed" and not policy.retry_failed:
            sorted_runs.failed += 1
        else:
            sorted_runs.todo.append(observation)
    return sorted_runs


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
    notes: list[str] = field(default_factory=list)
    """What the method says about how it will analyse this group (`Method.plan_notes`)."""
    needs: list[Need] = field(default_factory=list)

    def describe(self) -> str:
        """`grid continuum_order=4 grid=/models/grid.fits`: the method and what sets the group
        apart."""
        options = " ".join(f"{name}={value}" for name, value in self.significant.items())
        return f"{self.method} {options}".strip()


@dataclass(frozen=True)
class Chunk:
    """A slice of a group handed to one worker call."""

    group_key: str
    index: int
    observations: tuple[Observation, ...]


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
    lookup_statuses: StatusLookup,
    *,
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
            groups[key].notes = method.plan_notes()
            groups[key].needs = needs
            requested[key] = {}
        runs = requested[key]
        given: set[str] = set()
        for observation in request.observations:
            runs.setdefault(observation.key, observation)
            if observation.inputs:
                given.update(name for name, _ in observation.inputs)
        if given:
            method.check_inputs(given)

    stored = lookup_statuses(list(groups)) if groups and not force else {}
    for key, group in groups.items():
        sorted_runs = classify(requested[key].values(), stored.get(key, {}), policy)
        group.requested = len(requested[key])
        group.already_done, group.skipped_failed = sorted_runs.done, sorted_runs.failed
        group.observations = sorted_runs.todo

    total = sum(len(group.observations) for group in groups.values())
    size = chunk_size or automatic_chunk_size(total, jobs)
    return Plan(
        method_class.name,
        method_class.version,
        list(groups.values()),
        make_chunks(groups.values(), size),
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


def make_chunks(groups: Iterable[Group], size: int) -> list[Chunk]:
    """Each group's runs cut into chunks of `size`, group after group, so that a worker meets
    one group's chunks together and keeps few models in memory."""
    return [
        Chunk(group.key, index, tuple(group.observations[start : start + size]))
        for group in groups
        for index, start in enumerate(range(0, len(group.observations), size))
    ]


def automatic_chunk_size(runs: int, jobs: int) -> int:
    """Chunks small enough that all `jobs` workers get several, capped at MAX_CHUNK_SIZE."""
    if runs <= 0:
        return 1
    return max(1, min(MAX_CHUNK_SIZE, math.ceil(runs / (max(jobs, 1) * CHUNKS_PER_WORKER))))
