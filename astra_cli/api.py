"""The Python API, and the one code path the CLI uses too: collect observations, plan, execute,
store. `run()` is for notebooks and scripts; `prepare()` and `execute_plan()` are its two halves,
which `astra plan` and `astra analyse` use; `collect_inputs()` gathers what an invocation names
(manifests included) and `status()` counts what is done.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from astra_cli.backends import Backend
from astra_cli.errors import UsageError
from astra_cli.identifiers import (
    IdentifierResolver,
    Observation,
    identifier_sources,
    observation_from_path,
)
from astra_cli.manifest import BadRowsError, ManifestRequests, read_manifests
from astra_cli.methods.base import Method
from astra_cli.methods.registry import load_method
from astra_cli.planner import Plan, RequestSet, make_plan, sweep
from astra_cli.progress import Progress
from astra_cli.runner import execute_plan
from astra_cli.store import DEFAULT_OUTPUT_DIR, STORE_FILENAME, ResultsStore
from astra_cli.summary import Summary

__all__ = ["collect_inputs", "collect_observations", "execute_plan", "prepare", "run", "status"]


@dataclass
class Prepared:
    """A plan and what it takes to execute it."""

    method_class: type[Method]
    plan: Plan
    store: ResultsStore
    bad_rows: int = 0
    """Manifest rows left out as bad (--skip-bad-rows): the invocation cannot exit 0."""


@dataclass
class Inputs:
    """Everything an invocation names, read and resolved, before any planning."""

    observations: list[Observation]
    """Named by path, --obs and per-key options: they take the command line's option values."""
    manifests: ManifestRequests = field(default_factory=ManifestRequests)
    """The rows of --from-file manifests, by the option values they give."""


def default_jobs() -> int:
    """Every core this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def collect_observations(
    paths: Iterable[str | os.PathLike[str]] = (),
    obs_options: Sequence[str] = (),
    per_key: Mapping[str, Sequence[str]] | None = None,
    identifiers: Iterable[Mapping[str, str]] = (),
    *,
    data_root: str | os.PathLike[str] | None = None,
    kind: str | None = None,
    resolver: IdentifierResolver | None = None,
) -> list[Observation]:
    """Observations from paths, `--obs` texts, per-key options and identifier mappings.

    kind
        The sdss-access product every identifier names; None infers apStar or apVisit.
    """
    observations = [observation_from_path(path) for path in paths]
    sources = identifier_sources(obs_options, per_key or {})
    sources += [(f"identifier {i}", dict(ident)) for i, ident in enumerate(identifiers, 1)]
    resolver = resolver or IdentifierResolver(data_root)
    observations += [resolver.resolve(ident, source, kind=kind) for source, ident in sources]
    return observations


def collect_inputs(
    method: str | type[Method],
    paths: Iterable[str | os.PathLike[str]] = (),
    obs_options: Sequence[str] = (),
    per_key: Mapping[str, Sequence[str]] | None = None,
    from_file: Sequence[str] = (),
    *,
    data_root: str | os.PathLike[str] | None = None,
    kind: str | None = None,
    file_format: str | None = None,
    hdu: int | str | None = None,
    skip_bad_rows: bool = False,
    stdin: BinaryIO | None = None,
) -> Inputs:
    """Observations from every source an invocation may name: paths, `--obs`, per-key options
    and manifests (`from_file`, `-` for standard input).

    With manifests, a per-key option given once fills its key in every row that lacks it (an
    allStar file has no release or apred column: `--release dr17 --apred dr17` gives them);
    per-key options given several times still name observations of their own.

    Raises BadRowsError (exit code 2) when a manifest has bad rows, unless skip_bad_rows: then
    they are listed in `inputs.manifests.problems` and the other rows are kept.
    """
    method_class = load_method(method) if isinstance(method, str) else method
    resolver = IdentifierResolver(data_root)
    given = {key: list(values) for key, values in (per_key or {}).items() if values}
    defaults = {key: values[0] for key, values in given.items() if len(values) == 1}
    if from_file and len(defaults) == len(given):
        given = {}  # each given once: they complete the manifests' rows, not an observation
    observations = collect_observations(paths, obs_options, given, kind=kind, resolver=resolver)
    if not from_file:
        return Inputs(observations)
    manifests = read_manifests(
        list(from_file),
        method_class.params,
        resolver,
        kind=kind,
        defaults=defaults,
        file_format=file_format,
        hdu=hdu,
        stdin=stdin,
    )
    if manifests.problems and not skip_bad_rows:
        raise BadRowsError(manifests.problems)
    return Inputs(observations, manifests)


def prepare(
    method: str | type[Method],
    observations: Sequence[Observation],
    option_values: Mapping[str, Sequence[Any]],
    *,
    manifests: ManifestRequests | None = None,
    output_dir: str | os.PathLike[str] = DEFAULT_OUTPUT_DIR,
    jobs: int | None = None,
    chunk_size: int | None = None,
    force: bool = False,
    retry_failed: bool = False,
) -> Prepared:
    """Validate the request and plan it against the store; nothing runs.

    manifests
        Manifest rows (see `collect_inputs`): an option value a row gives replaces the
        command line's values of that option for that row.

    Raises UsageError (exit code 2) for anything wrong with the request: no observations, an
    unknown option or bad value, a required file that does not exist.
    """
    method_class = load_method(method) if isinstance(method, str) else method
    request_sets = _request_sets(method_class, observations, option_values, manifests)
    distinct = {tuple(sorted(r.options.items())): r.options for r in request_sets}
    _check_prerequisites(method_class, list(distinct.values()))
    store = ResultsStore(output_dir)
    plan = make_plan(
        method_class,
        request_sets,
        store.statuses,
        jobs=jobs or default_jobs(),
        chunk_size=chunk_size,
        force=force,
        retry_failed=retry_failed,
    )
    return Prepared(method_class, plan, store, len(manifests.problems) if manifests else 0)


def status(
    method: str | type[Method],
    observations: Sequence[Observation],
    option_values: Mapping[str, Sequence[Any]],
    *,
    manifests: ManifestRequests | None = None,
    output_dir: str | os.PathLike[str] = DEFAULT_OUTPUT_DIR,
) -> Plan:
    """The requested runs by group, from one query of the store: `already_done` (ok),
    `skipped_failed` (failed) and, in `observations`, the pending ones (not in the store).

    A store that does not exist yet is not created: every run is then pending.
    """
    method_class = load_method(method) if isinstance(method, str) else method
    request_sets = _request_sets(method_class, observations, option_values, manifests)
    if not (Path(output_dir) / STORE_FILENAME).is_file():
        return make_plan(method_class, request_sets, lambda keys: {})
    with ResultsStore(output_dir) as store:
        return make_plan(method_class, request_sets, store.statuses)


def _request_sets(
    method_class: type[Method],
    observations: Sequence[Observation],
    option_values: Mapping[str, Sequence[Any]],
    manifests: ManifestRequests | None,
) -> list[RequestSet]:
    """One request set per combination of swept option values, and for manifest rows one per
    combination and distinct option values of the rows: ten sets for a million rows holding
    ten values, however many observations."""
    by_options = manifests.by_options if manifests else {}
    if not observations and not by_options:
        if manifests and manifests.rows:
            raise UsageError("no observations to plan: every row of --from-file is bad")
        raise UsageError(
            "no observations given: name files, or use --from-file FILE, --obs KEY=VAL,... or "
            "the per-key options (--release --apred --telescope --field --obj ...)"
        )
    combinations = sweep(option_values, method_class) or [{}]
    request_sets = [RequestSet(options, observations) for options in combinations if observations]
    for row_options, rows in by_options.items():
        request_sets += [
            RequestSet({**options, **dict(row_options)}, rows) for options in combinations
        ]
    return request_sets


def _check_prerequisites(method_class: type[Method], combinations: list[dict]) -> None:
    """Every required file exists and passes the method's own checks, before anything runs."""
    for options in combinations:
        method = method_class(**options)
        for required in method.requires():
            if not Path(required).is_file():
                raise UsageError(_missing_file(method, Path(required)))
        method.validate()


def _missing_file(method: Method, required: Path) -> str:
    """Which file is missing, which option named it, and where to look next."""
    flags = [
        param.flag
        for name, param in method.params.items()
        if param.type is Path and str(getattr(method, name)) == str(required)
    ]
    given = f" (given as {flags[0]})" if flags else ""
    state = "is not a file" if required.exists() else "does not exist"
    return (
        f"{method.name} needs {required}{given}, which {state}: check the path "
        f"(`astra analyse {method.name} --help` says what the file holds)"
    )


def run(
    method: str | type[Method],
    observations: Iterable[str | os.PathLike[str] | Mapping[str, str] | Observation],
    *,
    output_dir: str | os.PathLike[str] = DEFAULT_OUTPUT_DIR,
    data_root: str | os.PathLike[str] | None = None,
    jobs: int | None = None,
    backend: str = "loky",
    chunk_size: int | None = None,
    force: bool = False,
    retry_failed: bool = False,
    wait: bool = False,
    scheduler: str | None = None,
    scheduler_file: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> Summary:
    """Analyse observations with a method, exactly as `astra analyse` does.

    observations
        Paths to apStar/apVisit files, identifier mappings (`{"release": "dr17", "apred":
        "dr17", "telescope": "apo25m", "field": "218-04", "obj": "2M0644..."}`), or both.
    options
        The method's options. A list or tuple of values is a sweep: the runs are every
        observation times every combination of swept values.

    wait
        Wait for groups that another invocation is running instead of skipping them.
    backend, scheduler, scheduler_file
        A joblib backend (loky, threading, sequential) or "dask": with a scheduler address or
        file, or neither for a local cluster of `jobs` workers.

    Returns the Summary; results are in the store under `output_dir`.

    Example::

        import astra_cli
        summary = astra_cli.run("snr", ["apVisit-r13-5095-55844-128.fits"], jobs=1)
    """
    paths, identifiers, given = [], [], []
    for item in observations:
        if isinstance(item, Observation):
            given.append(item)
        elif isinstance(item, Mapping):
            identifiers.append(item)
        else:
            paths.append(item)
    found = given + collect_observations(paths, identifiers=identifiers, data_root=data_root)
    option_values = {
        name: list(value) if isinstance(value, (list, tuple)) else [value]
        for name, value in options.items()
    }
    prepared = prepare(
        method,
        found,
        option_values,
        output_dir=output_dir,
        jobs=jobs,
        chunk_size=chunk_size,
        force=force,
        retry_failed=retry_failed,
    )
    chosen = Backend(
        backend,
        jobs or default_jobs(),
        scheduler,
        os.fspath(scheduler_file) if scheduler_file else None,
    )
    try:
        return execute_plan(
            prepared,
            backend=chosen,
            progress=progress,
            wait=wait,
            force=force,
            retry_failed=retry_failed,
        )
    finally:
        prepared.store.close()
