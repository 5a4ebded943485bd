"""The Python API, and the one code path the CLI uses too: collect observations, plan, execute,
store. `run()` is for notebooks and scripts; `prepare()` and `execute_plan()` are its two halves,
which `astra plan` and `astra analyse` use; `collect_inputs()` gathers what an invocation names
(manifests included) and `status()` counts what is done.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from astra_cli.engine.backends import DEFAULT_DASK_TIMEOUT, Backend, resolve_jobs
from astra_cli.engine.fingerprints import Fingerprints
from astra_cli.engine.planner import Plan, make_plan
from astra_cli.engine.progress import Progress
from astra_cli.engine.requests import (
    check_models,
    check_required_files,
    model_checks,
    request_sets,
)
from astra_cli.engine.runner import execute_plan
from astra_cli.engine.slurm import SlurmOptions, slurm_options
from astra_cli.engine.upstream import upstream_plans
from astra_cli.engine.warmstart import WarmStart, first_stage
from astra_cli.io.identifiers import IdentifierResolver, identifier_sources, observation_from_path
from astra_cli.io.manifest import BadRowsError, ManifestRequests, read_manifests
from astra_cli.io.store import (
    DEFAULT_OUTPUT_DIR,
    STORE_FILENAME,
    ResultsStore,
    refuse_a_file_as_directory,
)
from astra_cli.methods.base import Method
from astra_cli.methods.registry import load_method, method_path
from astra_cli.vocabulary import Observation, StoredRun, Summary, numbered

__all__ = ["collect_inputs", "collect_observations", "execute_plan", "prepare", "run", "status"]


@dataclass
class Inputs:
    """Everything an invocation names, read and resolved, before any planning."""

    observations: list[Observation]
    """Named by path, --obs and per-key options: they take the command line's option values."""
    manifests: ManifestRequests = field(default_factory=ManifestRequests)
    """The rows of --from-file manifests, by the option values they give."""


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
    return numbered(observations)


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
    method_class = _method_class(method)
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
        inputs=method_class.inputs,
        first_position=len(observations),
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
    checksum: bool = False,
    backend: Backend | None = None,
) -> Plan:
    """Validate the request and plan it against the store (created if missing); no run starts.

    manifests
        Manifest rows (see `collect_inputs`): an option value a row gives replaces the
        command line's values of that option for that row.
    jobs
        The workers the plan is chunked for (the backend's, else every core, when None).
    checksum
        Know inputs by their contents rather than their size and modification time (see
        `engine.fingerprints`).
    backend
        The backend `execute_plan` will be given: with loky, its workers are started here,
        load the first group's model and check the request (`engine.warmstart`).

    Raises UsageError (exit code 2) for anything wrong with the request: no observations, an
    unknown option or bad value, a required file that does not exist or does not pass the
    method's checks.
    """
    method_class = _method_class(method)
    sets = request_sets(method_class, observations, option_values, manifests)
    check_required_files(method_class, sets)
    if jobs is None and backend is not None:
        jobs = backend.jobs
    # A new store is created only once the request passes its checks: a refused request
    # leaves nothing behind. Until then, there is nothing stored to plan against.
    new_store = not (Path(output_dir) / STORE_FILENAME).is_file()
    refuse_a_file_as_directory(output_dir)
    with contextlib.ExitStack() as stack:
        store = None if new_store else stack.enter_context(ResultsStore(output_dir))
        stored_runs = store.stored_runs if store is not None else _nothing_stored
        fingerprints = Fingerprints(store, checksum=checksum)
        plan = make_plan(
            method_class,
            sets,
            stored_runs,
            fingerprints=fingerprints,
            jobs=resolve_jobs(jobs),
            chunk_size=chunk_size,
            force=force,
            retry_failed=retry_failed,
            output_dir=str(Path(output_dir)),
            bad_rows=len(manifests.problems) if manifests else 0,
        )
        plan.upstream = upstream_plans(
            plan,
            stored_runs,
            fingerprints=fingerprints,
            jobs=resolve_jobs(jobs),
            chunk_size=chunk_size,
            retry_failed=retry_failed,
        )
        # The store, open already, says which checks passed before; a new one knows none.
        checks = model_checks(
            method_class, sets, store.model_check_passed if store is not None else _never
        )
        # The workers make the checks they can (the model's imports and files are theirs to
        # load anyway); those not heard of as passed are made here.
        path = method_path(method_class)
        for_workers = [
            (check.key, method_class.name, path, check.options) for check in checks if check.key
        ]
        warm_start = WarmStart.begin(plan, backend, for_workers) if backend is not None else None
        try:
            passed_there = frozenset[str]()
            if warm_start is not None and for_workers:
                passed_there = warm_start.checks_passed()
            passed = check_models(method_class, checks, passed_there)
            if store is None:
                fingerprints.wait()  # a model file that changed while read: nothing created
                store = stack.enter_context(ResultsStore(output_dir))
                fingerprints.remember(store)
            store.remember_model_checks(passed)
        except Exception:
            if warm_start is not None:
                warm_start.finish(warn=False)  # the refusal says what is wrong
            raise
        except BaseException:  # Ctrl-C: the workers are stopped at once
            if warm_start is not None:
                warm_start.cancel()
            raise
        if warm_start is not None:
            stage = first_stage(plan)
            assert stage is not None
            stage.warm_start = warm_start
        return plan


def _never(key: str) -> bool:
    return False


def _nothing_stored(group_keys: Sequence[str]) -> dict[str, dict[str, StoredRun]]:
    return {key: {} for key in group_keys}


def status(
    method: str | type[Method],
    observations: Sequence[Observation],
    option_values: Mapping[str, Sequence[Any]],
    *,
    manifests: ManifestRequests | None = None,
    output_dir: str | os.PathLike[str] = DEFAULT_OUTPUT_DIR,
    checksum: bool = False,
) -> Plan:
    """The requested runs by group, from one query of the store: `already_done` (ok),
    `skipped_failed` (failed), `stale` (input or model changed) and, in `observations`, the
    ones to do.

    Nothing is written: a store that does not exist yet is not created (every run is then
    pending), and one in a directory this process cannot write is read as it is.
    """
    method_class = _method_class(method)
    sets = request_sets(method_class, observations, option_values, manifests)
    bad_rows = len(manifests.problems) if manifests else 0
    refuse_a_file_as_directory(output_dir)
    if not (Path(output_dir) / STORE_FILENAME).is_file():
        return make_plan(method_class, sets, _nothing_stored, bad_rows=bad_rows)
    with ResultsStore(output_dir, read_only=True) as store:
        fingerprints = Fingerprints(store, checksum=checksum)
        return make_plan(
            method_class, sets, store.stored_runs, fingerprints=fingerprints, bad_rows=bad_rows
        )


def _method_class(method: str | type[Method]) -> type[Method]:
    return load_method(method) if isinstance(method, str) else method


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
    checksum: bool = False,
    wait: bool = False,
    scheduler: str | None = None,
    scheduler_file: str | os.PathLike[str] | None = None,
    dask_timeout: float = DEFAULT_DASK_TIMEOUT,
    slurm: SlurmOptions | Mapping[str, Any] | None = None,
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
    backend, scheduler, scheduler_file, dask_timeout
        A joblib backend (loky, threading, sequential) or "dask": with a scheduler address or
        file, or neither for a local cluster of `jobs` workers; a dask cluster without a
        worker for `dask_timeout` seconds is given up on (NoWorkersError).
    slurm
        With backend "slurm": the jobs to submit, as `engine.slurm.SlurmOptions` or a mapping
        of its fields (`{"partition": "cpu", "jobs": 8, "memory": "8GB"}`); what is not said
        comes from `jobs`, ASTRA_SLURM_* and dask-jobqueue's configuration, as on the command
        line. Checked against the cluster before anything is read or planned.

    Returns the Summary; results are in the store under `output_dir`.

    Example::

        import astra_cli
        summary = astra_cli.run("snr", ["apVisit-r13-5095-55844-128.fits"], jobs=1)
    """
    chosen = Backend.chosen(
        backend, jobs, scheduler, scheduler_file, dask_timeout, slurm_options(slurm)
    )
    paths: list[str | os.PathLike[str]] = []
    identifiers: list[Mapping[str, str]] = []
    given: list[Observation] = []
    for item in observations:
        if isinstance(item, Observation):
            given.append(item)
        elif isinstance(item, Mapping):
            identifiers.append(item)
        else:
            paths.append(item)
    found = numbered(
        given + collect_observations(paths, identifiers=identifiers, data_root=data_root)
    )
    option_values = {
        name: list(value) if isinstance(value, (list, tuple)) else [value]
        for name, value in options.items()
    }
    plan = prepare(
        method,
        found,
        option_values,
        output_dir=output_dir,
        jobs=chosen.jobs,
        chunk_size=chunk_size,
        force=force,
        retry_failed=retry_failed,
        checksum=checksum,
        backend=chosen,
    )
    return execute_plan(plan, backend=chosen, progress=progress, wait=wait)
