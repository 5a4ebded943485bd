"""The worker side of execution: one chunk in, its outcomes out, inside a worker process.

In each worker process a small cache keyed by the group holds the loaded model, so a group's
model is loaded at most once per worker, however many of its chunks that worker runs. An
exception in one observation fails that run only. Everything the worker does is written to the
chunk's journal as it goes, so that if the process dies the invoking side (`pool`) can tell
what finished, what was in hand and what never started.
"""

from __future__ import annotations

import atexit
import gc
import math
import os
import threading
import time
import traceback
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from astra_cli.engine.fingerprints import files_state
from astra_cli.engine.journal import ChunkJournal
from astra_cli.io.spectra import MissingInputError, Spectrum, SpectrumReadError
from astra_cli.methods.base import Method
from astra_cli.methods.registry import resolve_method
from astra_cli.vocabulary import FAULT_ENVIRONMENT, FAULT_RUN, Outcome

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
"""What a table's integer column (and SQLite's) holds."""

T = TypeVar("T")

MODEL_CACHE_SIZE = 2
"""Models kept per worker. Chunks are handed out group by group, so a worker needs the model
of the group it is on and, at a boundary, the one before; more would only hold memory."""


@dataclass(frozen=True)
class WorkItem:
    """One observation of a chunk: its key, its file, and the values it brings to the method
    (a manifest's v_rad, or the v_rad another method measured)."""

    key: str
    path: str
    inputs: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class ChunkTask:
    """Everything a worker needs for one chunk, as plain picklable data."""

    chunk_id: str
    group_key: str
    method: str
    method_path: str
    """Where the method's class is (`registry.method_path`), for the worker to import it."""
    options: Mapping[str, Any]
    observations: tuple[WorkItem, ...]
    journal: str
    output_dir: str
    """The results' directory: a run's own files (`FittedSpectrum` values) go under it."""
    model_files_state: str = ""
    """The model files' sizes and modification times when the plan took their digest: a
    chunk that finds them otherwise, before or after its work, fails rather than store
    results of another model under that digest."""


@dataclass
class ChunkResult:
    """A chunk's outcomes, as they come back to the invoking process."""

    chunk_id: str
    group_key: str
    outcomes: list[Outcome]
    model_loaded: bool = False
    """This chunk loaded the group's model (the cache did not have it)."""
    slurm_job: str | None = None
    """The SLURM job the worker ran in (its SLURM_JOB_ID), if any: which job did what."""


@dataclass
class _CachedModel:
    model: Any = None
    error: str | None = None
    """Why loading failed, so later chunks of the group fail at once instead of reloading."""
    fault: str = FAULT_RUN


_models: OrderedDict[str, _CachedModel] = OrderedDict()
_models_lock = threading.Lock()
_group_locks: dict[str, threading.Lock] = {}


class ModelLoadError(RuntimeError):
    """The chunk cannot use the group's model; `fault` says whose fault that is."""

    def __init__(self, message: str, fault: str = FAULT_RUN) -> None:
        super().__init__(message)
        self.fault = fault


PARENT_POLL_SECONDS = 0.5
"""How often a worker looks whether the invoking process is still there."""

WORKER_MEMORY_LIMIT = "0"
"""The memory limit of the dask workers astra starts (a local cluster's, SLURM jobs'): none.
dask holds a worker to its resident memory, where the pages of a memory-mapped grid that its
fits have read count in full in every worker, though the workers share them: with a grid
larger than a worker's share of the memory, dask would pause the worker, then restart it (the
model loaded again), over and over. astra's workers keep no dask data to spill (every result
goes straight back); as with loky's leak guard (`start_worker`), the machine's limits
are theirs (SLURM's, for a job)."""


HEAP_KEPT_BYTES = 256 * 2**20
"""Free memory the heap of a process that analyses chunks keeps for the next
(`keep_freed_heap`)."""

HEAP_LARGEST_BLOCK = 32 * 2**20
"""Blocks up to this size come from that heap; larger ones are mapped on their own (the
largest glibc itself would take from the heap)."""

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
"""glibc's `mallopt` parameters (malloc.h)."""


def start_worker(parent: int) -> None:
    """A loky worker process's initializer: it ends with its parent (`watch_parent`), keeps the
    models it loaded, keeps the memory of one chunk for the next (`keep_freed_heap`), spares
    its collector what it imported, and exits quickly.

    Keeps its models: loky's leak guard restarts a worker whose resident memory grew by 300 MB
    since its first task, and the pages of a memory-mapped grid count in it once fits have
    read them (400 spectra on a 0.97 GB grid restarted a worker, which loaded the grid again:
    bench_grid_memory.py). They are the page cache's, not a leak; what a worker holds is
    bounded by astra itself (MODEL_CACHE_SIZE models, a chunk's spectra). The guard looks at
    most once a second, between tasks; now it never looks, so it never makes the full garbage
    collection it makes there without psutil either (12 to 20 ms each time with numpy,
    astropy and a grid loaded; 6 or 7 of them per worker in 2,000 runs of `grid`).

    Spares its collector what it imported: what joblib, numpy and astra put in memory before
    the first task stays as long as the process, yet every full collection went through it
    again. Frozen (`gc.freeze`) here, it is left out of them; what is made later, models and
    spectra, is not, so a model evicted from the cache is freed as before. A worker's
    collections in 2,000 runs of `grid` on 2 workers took 60 to 70 ms, 30 to 40 ms frozen
    (timed with `gc.callbacks`).

    Exits quickly: the invoking process waits for its workers to exit before it can, and the
    collection an interpreter makes as it exits, over every object of numpy, astropy and the
    method, costs about 0.1 s and frees nothing the process would miss (the chunks' files are
    closed as each ends)."""
    from joblib.externals.loky import process_executor

    process_executor._MEMORY_LEAK_CHECK_DELAY = math.inf
    keep_freed_heap()
    watch_parent(parent)
    gc.freeze()
    atexit.register(gc.freeze)


def keep_freed_heap() -> None:
    """Have glibc keep up to HEAP_KEPT_BYTES of freed memory in this process's heap, rather
    than hand it back to the kernel after each chunk, where the next chunk's arrays would have
    it zeroed again.

    A chunk's arrays (250 spectra of 8,575 pixels: 17 MB each) are freed as it ends. glibc
    returns the top of its heap to the kernel once more than twice its largest freed mapping
    is free there, and the next chunk faults the memory back in, zeroed by the kernel (in huge
    pages, which numpy asks for). 2,000 runs of `grid` on 2 workers made 700 huge-page faults,
    190 with the heap kept; the run took 0.42 s less CPU and 0.23 s less time (means of 8
    alternating rounds), and its peak summed PSS was the same (807 and 809 MB): a worker holds
    no more at its peak, which each chunk reaches again. Setting either threshold turns off
    glibc's own adjustment of both, so both are set. Elsewhere than glibc nothing changes.

    Called in loky's workers (`start_worker`), in the dask workers astra starts
    (`daskworkers.KeepFreedHeap`), and by `astra analyse` when it analyses the
    chunks itself (`--jobs 1`, threading, sequential: 2,000 runs took 15.02 s where they had
    taken 15.94, means of 4 alternating rounds; the loop alone, 14.4 to 14.9 s), not by
    `astra_cli.run()`, whose process is the caller's.
    """
    try:
        glibc = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):  # no confstr (Windows), or no glibc (macOS)
        return
    if not glibc:
        return
    import ctypes

    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt(_M_MMAP_THRESHOLD, HEAP_LARGEST_BLOCK)
    mallopt(_M_TRIM_THRESHOLD, HEAP_KEPT_BYTES)


def watch_parent(parent: int) -> None:
    """A thread that ends this worker process once its parent, the invoking process, is gone
    (killed with -9, say), so that no worker outlives it."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="astra-parent-watch", daemon=True).start()


def run_chunk(task: ChunkTask) -> ChunkResult:
    """Analyse one chunk in a worker: get the group's model (loading it at most once per
    process), then analyse every observation, journaling as it goes."""
    journal = ChunkJournal(task.journal, task.group_key)
    try:
        method = resolve_method(task.method, task.method_path)(**task.options)
        try:
            _check_model_files(method, task.model_files_state)
            model, loaded = _model_for(task.group_key, method, journal)
        except ModelLoadError as error:
            return _all_failed(task, str(error), error.fault)
        files = _RunFiles(task.output_dir, task.method, task.group_key)
        if type(method).analyse_batch is Method.analyse_batch:
            outcomes = [
                _analyse_one(method, model, item, journal, files) for item in task.observations
            ]
        else:
            outcomes = _analyse_batch(method, model, task.observations, journal, files)
        try:
            _check_model_files(method, task.model_files_state)
        except ModelLoadError as error:
            return _all_failed(task, str(error), error.fault, loaded)
        return ChunkResult(
            task.chunk_id, task.group_key, outcomes, model_loaded=loaded, slurm_job=_slurm_job()
        )
    finally:
        journal.close()


def _check_model_files(method: Method, expected: str) -> None:
    """Refuse to start or to return a chunk when the model files are not what the plan
    fingerprinted (replaced or rewritten since): its results would be stored as another
    model's."""
    if not expected:
        return
    try:
        paths = method.model_files()
        state = files_state(paths)
    except Exception as error:  # a method's model_files() that fails on a file gone
        paths, state = [], f"unknown ({describe_error(error)})"
    if state != expected:
        raise ModelLoadError(
            "the model files changed while this invocation ran (size or modification time: "
            f"{', '.join(map(str, paths)) or state}); not stored, the next invocation runs it "
            "with the new model",
            FAULT_ENVIRONMENT,
        )


def _all_failed(task: ChunkTask, error: str, fault: str, model_loaded: bool = False) -> ChunkResult:
    now = time.time()
    outcomes = [Outcome(o.key, None, error, now, 0.0, fault) for o in task.observations]
    return ChunkResult(task.chunk_id, task.group_key, outcomes, model_loaded, _slurm_job())


def _slurm_job() -> str | None:
    return os.environ.get("SLURM_JOB_ID") or None


WorkerCheck = tuple[str, str, str, Mapping[str, Any]]
"""A check of the request for a worker to make (`Method.validate`): the key a pass is
remembered under, the method's name and `method_path`, its options."""


@dataclass(frozen=True)
class Primed:
    """What a task of the warm start did (`prime` or `make_checks`): whether it loaded the
    model now (for the invoking process to count), how many checks it made, the keys of
    those that passed, and the warnings of what passed, for the invoking process to show,
    each once, if it accepts the request (`WarmStart.finish`)."""

    loaded: bool
    checked: int = 0
    passed: tuple[str, ...] = ()
    warned: tuple[str, ...] = ()


def prime(
    method_name: str,
    method_path: str,
    options: Mapping[str, Any],
    group_key: str,
    model_files_state: str,
) -> Primed:
    """Load a group's model into this worker's cache before its first chunk comes (see
    `engine.warmstart`).

    Trouble is left for the chunks to meet and report: a model that cannot be loaded is cached
    as such (as a chunk would have), and anything else is the chunk's to run into.
    """

    def load() -> bool:
        method = resolve_method(method_name, method_path)(**options)
        _check_model_files(method, model_files_state)
        return _model_for(group_key, method, None)[1]

    try:
        loaded, warned = _warnings_if_it_passes(load)
    except Exception:
        return Primed(False)
    return Primed(loaded, warned=warned)


def make_checks(checks: Sequence[WorkerCheck]) -> Primed:
    """Make the request's checks given (`WorkerCheck`) in this worker (see
    `engine.warmstart`). A check that does not pass is made again by the invoking process,
    which says why in its own words."""
    passed: list[str] = []
    warned: list[str] = []
    for key, checked_method, path, check_options in checks:
        try:
            method = resolve_method(checked_method, path)
            warned += _warnings_if_it_passes(_validate, method, check_options)[1]
        except Exception:
            continue
        passed.append(key)
    return Primed(False, len(checks), tuple(passed), tuple(warned))


def _validate(method: type[Method], options: Mapping[str, Any]) -> None:
    method(**options).validate()


def _warnings_if_it_passes(action: Callable[..., T], *args: Any) -> tuple[T, tuple[str, ...]]:
    """What `action(*args)` returns, and the warnings it gave, as Python would print them;
    when it raises, its warnings are dropped with it. A load or check of the warm start that
    fails is the invoking process's to report, in one line (a Cannon model cut short made
    every worker print astropy's `File may have been truncated` before that line); one that
    passes has its warnings shown by the invoking process, once each, if the request is
    accepted (the same Cannon model loaded in one worker, though its check refused it)."""
    # astropy's logger takes over `warnings.showwarning` when astropy is imported: imported
    # inside the block, it would print the warnings this block is to record.
    import astropy  # noqa: F401

    with warnings.catch_warnings(record=True) as caught:  # what the filters let through
        result = action(*args)
    shown = (
        warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line) for w in caught
    )
    return result, tuple(dict.fromkeys(shown))


def _model_for(group_key: str, method: Method, journal: ChunkJournal | None) -> tuple[Any, bool]:
    # Workers outlive invocations (a notebook's loky pool, a standing dask cluster): a model
    # file rewritten since it was cached must be loaded again, so its state is in the key.
    key = f"{group_key}:{files_state(method.model_files())}"
    with _models_lock:
        group_lock = _group_locks.setdefault(group_key, threading.Lock())
    with group_lock:
        with _models_lock:
            cached = _models.get(key)
            if cached is not None:
                _models.move_to_end(key)
        if cached is None:
            if journal is not None:
                journal.loading()
            try:
                cached = _CachedModel(model=method.load_model())
            except Exception as error:
                # A file gone or unreadable, memory short: the machine's trouble, not the
                # model's; the next invocation tries again.
                transient = isinstance(error, (OSError, MemoryError))
                fault = FAULT_ENVIRONMENT if transient else FAULT_RUN
                cached = _CachedModel(error=f"load_model failed: {describe_error(error)}")
                cached.fault = fault
            if journal is not None:
                journal.loaded()
            if cached.fault == FAULT_RUN:  # a passing trouble is not remembered: load again
                with _models_lock:
                    _models[key] = cached
                    while len(_models) > MODEL_CACHE_SIZE:
                        _models.popitem(last=False)
            # A method without a model (the base class's load_model) loads nothing.
            loaded_now = cached.error is None and type(method).load_model is not Method.load_model
        else:
            loaded_now = False
    if cached.error is not None:
        raise ModelLoadError(cached.error, cached.fault)
    return cached.model, loaded_now


def _read(method: Method, item: WorkItem) -> Spectrum:
    """The observation's spectrum with its inputs; one without a usable pixel fails here, so
    that no method stores a fit of nothing as ok."""
    spectrum = method.read_observation(item.path)
    bad = spectrum.bad
    if not bad.size or bad.all():
        raise SpectrumReadError(
            f"{item.path}: no usable pixel (every pixel is flagged bad or has no inverse variance)"
        )
    spectrum.inputs = dict(item.inputs)
    return spectrum


@dataclass(frozen=True)
class _RunFiles:
    """Where a chunk's runs write the files their results hold (`FittedSpectrum` values)."""

    output_dir: str
    method: str
    group_key: str

    def store(self, result: Any, item: WorkItem) -> Any:
        """The result with each FittedSpectrum written to its file and replaced by the file's
        path relative to the output directory (what the store keeps)."""
        if not isinstance(result, Mapping):
            return result
        from astra_cli.io.fitfiles import FittedSpectrum, spectrum_path, write_fitted_spectrum

        stored = dict(result)
        for name, value in result.items():
            if isinstance(value, FittedSpectrum):
                relative = spectrum_path(self.method, self.group_key, item.key)
                header = {
                    "METHOD": self.method,
                    "GROUP": self.group_key,
                    "OBSKEY": item.key,
                    "INPUT": item.path,
                }
                write_fitted_spectrum(value, Path(self.output_dir) / relative, header)
                stored[name] = str(relative)
        return stored


def _analyse_one(
    method: Method, model: Any, item: WorkItem, journal: ChunkJournal, files: _RunFiles
) -> Outcome:
    journal.started([item.key])
    started = time.time()
    clock = time.perf_counter()
    fault = None
    try:
        spectrum = _read(method, item)
        result = method.analyse_batch(model, [spectrum])[0]
        result, error = clean_result(files.store(result, item)), None
    except Exception as exception:
        result, error, fault = None, describe_error(exception), fault_of(exception)
    outcome = Outcome(item.key, result, error, started, time.perf_counter() - clock, fault)
    journal.finished(outcome)
    return outcome


def _analyse_batch(
    method: Method,
    model: Any,
    observations: Sequence[WorkItem],
    journal: ChunkJournal,
    files: _RunFiles,
) -> list[Outcome]:
    """Read every spectrum, analyse the readable ones in one `analyse_batch` call, and fall
    back to one at a time if the batch raises, so that one bad spectrum fails alone."""
    journal.started([item.key for item in observations])
    outcomes: dict[str, Outcome] = {}
    readable: list[tuple[WorkItem, Any]] = []
    for item in observations:
        started, clock = time.time(), time.perf_counter()
        try:
            readable.append((item, _read(method, item)))
        except Exception as exception:
            outcomes[item.key] = Outcome(
                item.key,
                None,
                describe_error(exception),
                started,
                time.perf_counter() - clock,
                fault_of(exception),
            )
            journal.finished(outcomes[item.key])
    started, clock = time.time(), time.perf_counter()
    try:
        results = method.analyse_batch(model, [spectrum for _, spectrum in readable])
        if len(results) != len(readable):
            raise ValueError(
                f"analyse_batch returned {len(results)} results for {len(readable)} spectra"
            )
        cleaned = [
            clean_result(files.store(result, item))
            for (item, _), result in zip(readable, results, strict=True)
        ]
    except Exception:
        cleaned = None
    if cleaned is None:
        for item, _ in readable:
            outcomes[item.key] = _analyse_one(method, model, item, journal, files)
    else:
        each = (time.perf_counter() - clock) / max(len(readable), 1)
        for (item, _), result in zip(readable, cleaned, strict=True):
            outcomes[item.key] = Outcome(item.key, result, None, started, each)
            journal.finished(outcomes[item.key])
    return [outcomes[item.key] for item in observations]


def clean_result(result: Any) -> dict[str, Any]:
    """Check a method's result and make it storable: a dict of column name -> number, string,
    bool or None; numpy scalars become Python scalars and NaN or infinity becomes None."""
    if not isinstance(result, Mapping):
        raise TypeError(f"the method returned a {type(result).__name__}, not a dict of columns")
    cleaned: dict[str, Any] = {}
    for name, value in result.items():
        if not (isinstance(name, str) and name.isidentifier()):
            raise TypeError(f"result column names must be identifiers, not {name!r}")
        if hasattr(value, "item") and not isinstance(value, (str, bytes)):
            try:
                value = value.item()
            except ValueError:
                raise TypeError(
                    f"result column {name!r} must be one number, string or bool, "
                    f"not an array of shape {getattr(value, 'shape', '?')}"
                ) from None
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise TypeError(
                f"result column {name!r} must be a number, string or bool, "
                f"not {type(value).__name__}"
            )
        if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
            raise TypeError(f"result column {name!r}: {value} does not fit a 64-bit integer")
        cleaned[name] = value
    return cleaned


def fault_of(error: BaseException) -> str:
    """A missing input is not the run's fault (a typo fixed, a disk mounted, and the next
    invocation runs it); anything else a run raises is."""
    return FAULT_ENVIRONMENT if isinstance(error, MissingInputError) else FAULT_RUN


def describe_error(error: BaseException) -> str:
    """One line for the store: the exception and where in the method it was raised."""
    if isinstance(error, SpectrumReadError):
        return str(error)
    message = f"{type(error).__name__}: {error}"
    frames = traceback.extract_tb(error.__traceback__)
    if frames:
        last = frames[-1]
        message += f" (in {last.name}, {Path(last.filename).name}:{last.lineno})"
    return message
