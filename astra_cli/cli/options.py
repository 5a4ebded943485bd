"""Every option that more than one command takes, declared once: the observations a request
names, and how a request is planned, run and reported.

Commands built per method (`analyse`, `plan`, `status`) take these as signature parameters
(`SharedOption.parameter`); commands written as plain functions (`results`, `train`, `demo`)
use the same declaration as a type annotation (`SharedOption.annotation`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from astra_cli.engine.backends import BACKENDS, DEFAULT_DASK_TIMEOUT
from astra_cli.io.identifiers import IDENTIFIER_KEYS
from astra_cli.io.manifest import FORMATS
from astra_cli.io.store import DEFAULT_OUTPUT_DIR

INPUT_PANEL = "Observations"
COMMON_PANEL = "Execution and output"
SLURM_PANEL = "SLURM (with --backend slurm)"

IDENTIFIER_PREFIX = "id__"
"""Parameter names of the per-key identifier options: `id__release`, ..."""


@dataclass(frozen=True)
class SharedOption:
    """One option's name, type, default and click declaration."""

    name: str
    type: Any
    default: Any
    decls: tuple[str, ...]
    info: dict[str, Any] = field(default_factory=dict)
    panel: str | None = COMMON_PANEL
    argument: bool = False
    """A positional argument rather than an option."""

    def annotation(self, *, panel: str | None = None) -> Any:
        """`Annotated[type, typer.Option(...)]`, in `panel` (none for a plain command)."""
        if self.argument:
            return Annotated[self.type, typer.Argument(**self.info)]
        return Annotated[self.type, typer.Option(*self.decls, rich_help_panel=panel, **self.info)]

    def parameter(self) -> inspect.Parameter:
        """A keyword parameter of a command built at run time, in this option's panel."""
        return inspect.Parameter(
            self.name,
            inspect.Parameter.KEYWORD_ONLY,
            annotation=self.annotation(panel=self.panel),
            default=self.default,
        )

    def but(self, **changes: Any) -> SharedOption:
        """The same option with some of its declaration changed (no short form, say)."""
        info = {**self.info, **changes.pop("info", {})}
        return replace(self, info=info, **changes)


def _option(name: str, type_: Any, default: Any, *decls: str, **info: Any) -> SharedOption:
    panel = info.pop("panel", COMMON_PANEL)
    if default is None:
        info.setdefault("show_default", False)
    return SharedOption(name, type_, default, decls, info, panel)


# --- observations ---------------------------------------------------------------------------

PATHS = SharedOption(
    "paths", list[Path] | None, None, (),
    {"help": "apStar or apVisit files to analyse.", "show_default": False, "metavar": "PATH"},
    argument=True,
)  # fmt: skip
OBS = _option(
    "obs", list[str] | None, None, "--obs", panel=INPUT_PANEL,
    metavar="KEY=VAL,...",
    help="An observation by its identifier, KEY=VAL,KEY=VAL (repeatable).",
)  # fmt: skip
FROM_FILE = _option(
    "from_file", list[str] | None, None, "--from-file", panel=INPUT_PANEL,
    metavar="FILE",
    help="A manifest of observations: paths or identifiers, one per line or row "
    "(txt, lst, csv, tsv, ecsv, fits, jsonl; '-' reads standard input). Columns named "
    "like an option of the method give their row its own value. Repeatable.",
)  # fmt: skip
MANIFEST_FORMAT = _option(
    "manifest_format", Literal[FORMATS] | None, None, "--format",
    panel=INPUT_PANEL, metavar="FORMAT",
    help="Format of every --from-file: text, csv, tsv, ecsv, fits or jsonl (default: "
    "from its extension; text for '-').",
)  # fmt: skip
HDU = _option(
    "hdu", str | None, None, "--hdu", panel=INPUT_PANEL, metavar="N|NAME",
    help="HDU of a FITS manifest, by number or name (default: the first table).",
)  # fmt: skip

KINDS = {
    "apStar": "combined spectrum of a star (the default)",
    "apStar-1m": "combined spectrum from the APO 1m",
    "apVisit": "one visit (the default with plate, mjd, fiber)",
    "apVisit-1m": "one visit with the APO 1m",
    "aspcapStar": "ASPCAP's continuum-normalised spectrum",
}
"""Products offered when completing --kind; any other product sdss-access knows is accepted."""


def complete_kind(incomplete: str) -> list[tuple[str, str]]:
    return [(kind, text) for kind, text in KINDS.items() if kind.startswith(incomplete)]


KIND = _option(
    "kind", str | None, None, "--kind", panel=INPUT_PANEL, metavar="PRODUCT",
    autocompletion=complete_kind,
    help="sdss-access product that identifiers name: apStar, apVisit, ... (default: "
    "apVisit when plate, mjd or fiber are given, else apStar).",
)  # fmt: skip
SKIP_BAD_ROWS = _option(
    "skip_bad_rows", bool, False, "--skip-bad-rows", panel=INPUT_PANEL, metavar="",
    show_default=False,
    help="Plan the good rows of manifests with bad rows (and exit 1 at the end) "
    "instead of stopping before any work.",
)  # fmt: skip

PER_KEY_HELP = {
    "release": "Data release (dr17, dr16, ...).",
    "apred": "Reduction version (dr17, r12, ...).",
    "telescope": "apo25m, lco25m or apo1m.",
    "field": "Field name (218-04, 000+14, ...).",
    "prefix": "ap (APO) or as (LCO); defaults from --telescope.",
    "obj": "APOGEE object id (2M06440890-0610126).",
    "apstar": "apStar directory; defaults to 'stars'.",
    "plate": "Plate (apVisit).",
    "mjd": "MJD of the visit (apVisit).",
    "fiber": "Fiber (apVisit).",
}
PER_KEY = [
    _option(
        IDENTIFIER_PREFIX + key,
        list[str] | None,
        None,
        f"--{key}",
        panel=INPUT_PANEL,
        metavar="TEXT",
        help=PER_KEY_HELP[key] + " Repeatable; zipped with the other keys.",
    )
    for key in IDENTIFIER_KEYS
]

INPUTS = [PATHS, OBS, FROM_FILE, MANIFEST_FORMAT, HDU, KIND, SKIP_BAD_ROWS, *PER_KEY]

# --- planning, running and reporting ----------------------------------------------------------

OUTPUT_DIR = _option(
    "output_dir", Path, Path(DEFAULT_OUTPUT_DIR), "--output-dir", "-o",
    envvar="ASTRA_OUTPUT_DIR", metavar="DIR",
    help="Directory of the results store (created if missing).",
)  # fmt: skip
READ_STORE_DIR = OUTPUT_DIR.but(info={"help": "Directory of the results store."})
"""-o/--output-dir for commands that only read or prune the store (status, show, forget)."""
STORE_DIR = OUTPUT_DIR.but(decls=("--output-dir",), info={"help": "Results store."})
"""--output-dir where -o names something else (the table of `astra results`)."""
DATA_ROOT = _option(
    "data_root", Path | None, None, "--data-root",
    envvar="SAS_BASE_DIR", metavar="DIR",
    help="Local SAS root that identifiers resolve under (sdss-access layout).",
)  # fmt: skip
JOBS = _option(
    "jobs", int | None, None, "--jobs", "-j", metavar="N",
    help="Worker processes (no more than the chunks); -1 is every core, -2 every core but one; "
    "with --backend slurm, SLURM jobs (see --slurm-jobs). \\[default: every core]",
)  # fmt: skip
BACKEND = _option(
    "backend", Literal[BACKENDS], "loky", "--backend", metavar="NAME",
    help="joblib backend: loky (processes), threading, sequential (in this process), dask "
    "(a dask.distributed cluster: --scheduler, --scheduler-file), or slurm (dask workers in "
    "SLURM jobs that astra submits and cancels: the SLURM options).",
)  # fmt: skip
SCHEDULER = _option(
    "scheduler", str | None, None, "--scheduler", metavar="ADDRESS",
    help="With --backend dask: a running scheduler, tcp://host:port.",
)  # fmt: skip
SCHEDULER_FILE = _option(
    "scheduler_file", Path | None, None, "--scheduler-file", metavar="FILE",
    help="With --backend dask: the scheduler's file (dask scheduler --scheduler-file, "
    "dask-jobqueue). With neither, a local cluster of --jobs workers.",
)  # fmt: skip
DASK_TIMEOUT = _option(
    "dask_timeout", float, DEFAULT_DASK_TIMEOUT, "--dask-timeout", metavar="SECONDS",
    help="With --backend dask or slurm: give up (exit code 1, what finished kept) when the "
    "cluster has had no worker for this long (on SLURM: the jobs' queue state is said; "
    "raise it for a busy queue).",
)  # fmt: skip
SLURM_PARTITION = _option(
    "slurm_partition", str | None, None, "--slurm-partition", metavar="NAME", panel=SLURM_PANEL,
    help="Partition of the jobs (#SBATCH -p). \\[default: ASTRA_SLURM_PARTITION, dask-jobqueue's "
    "jobqueue.slurm.queue, else SLURM's default partition]",
)  # fmt: skip
SLURM_JOBS = _option(
    "slurm_jobs", int | None, None, "--slurm-jobs", metavar="N", panel=SLURM_PANEL,
    help="SLURM jobs to run at most, each --slurm-cores worker processes; no more than the "
    "chunks need. \\[default: --jobs, ASTRA_SLURM_JOBS, else 1]",
)  # fmt: skip
SLURM_CORES = _option(
    "slurm_cores", int | None, None, "--slurm-cores", metavar="N", panel=SLURM_PANEL,
    help="Cores of each job, one single-threaded worker process (one model cache) on each. "
    "\\[default: ASTRA_SLURM_CORES, jobqueue.slurm.cores, else 1]",
)  # fmt: skip
SLURM_MEMORY = _option(
    "slurm_memory", str | None, None, "--slurm-memory", metavar="SIZE", panel=SLURM_PANEL,
    help="Memory of each job (4GB, 500MB), shared by its workers. \\[default: "
    "ASTRA_SLURM_MEMORY, jobqueue.slurm.memory, else 2GB per core]",
)  # fmt: skip
SLURM_WALLTIME = _option(
    "slurm_walltime", str | None, None, "--slurm-walltime", metavar="TIME", panel=SLURM_PANEL,
    help="Time limit of each job (HH:MM:SS, D-HH:MM:SS): enough for the whole invocation. "
    "\\[default: ASTRA_SLURM_WALLTIME, else jobqueue.slurm.walltime: 00:30:00 unless set]",
)  # fmt: skip
SLURM_ACCOUNT = _option(
    "slurm_account", str | None, None, "--slurm-account", metavar="NAME", panel=SLURM_PANEL,
    help="Account charged for the jobs (#SBATCH -A). \\[default: ASTRA_SLURM_ACCOUNT, "
    "jobqueue.slurm.account, else none]",
)  # fmt: skip
SLURM_EXTRA = _option(
    "slurm_extra", list[str] | None, None, "--slurm-extra", metavar="OPTION", panel=SLURM_PANEL,
    help="An extra #SBATCH line, such as --constraint=cpu (repeatable). \\[default: "
    "ASTRA_SLURM_EXTRA (shell words), jobqueue.slurm.job-extra-directives]",
)  # fmt: skip
SLURM_OPTIONS = [
    SLURM_PARTITION, SLURM_JOBS, SLURM_CORES, SLURM_MEMORY, SLURM_WALLTIME, SLURM_ACCOUNT,
    SLURM_EXTRA,
]  # fmt: skip
CHUNK_SIZE = _option(
    "chunk_size", int | None, None, "--chunk-size", metavar="N",
    help="Observations per worker call, at least 1. \\[default: enough chunks to keep every "
    "worker busy]",
)  # fmt: skip
FORCE = _option(
    "force", bool, False, "--force", metavar="", help="Rerun runs that are already in the store."
)
RETRY_FAILED = _option(
    "retry_failed", bool, False, "--retry-failed", metavar="",
    help="Rerun runs that failed through their own fault (failures that were not, such as a "
    "missing input or a worker that died, are retried anyway).",
)  # fmt: skip
CHECKSUM = _option(
    "checksum", bool, False, "--checksum", metavar="",
    help="Know inputs by their contents, not their size and modification time: a run is "
    "stale (and reruns) only when its file's bytes changed. Reads every input.",
)  # fmt: skip
WAIT = _option(
    "wait", bool, False, "--wait", metavar="",
    help="Wait for groups that another invocation is running, instead of skipping them.",
)  # fmt: skip
JSON = _option("json", bool, False, "--json", metavar="", help="Print a JSON document on stdout.")
QUIET = _option("quiet", bool, False, "--quiet", "-q", metavar="", help="Print only errors.")
VERBOSE = _option(
    "verbose", bool, False, "--verbose", "-v", metavar="", help="Show tracebacks of errors."
)
LOG_FILE = _option(
    "log_file", Path | None, None, "--log-file", metavar="FILE",
    help="Append timestamped lines (start, each group, each failure, summary) to FILE.",
)  # fmt: skip

PLAN_OPTIONS = [
    OUTPUT_DIR, DATA_ROOT, JOBS, CHUNK_SIZE, FORCE, RETRY_FAILED, CHECKSUM, JSON, VERBOSE
]  # fmt: skip
STATUS_OPTIONS = [OUTPUT_DIR, DATA_ROOT, CHECKSUM, JSON, VERBOSE]
ANALYSE_OPTIONS = [
    OUTPUT_DIR, DATA_ROOT, JOBS, BACKEND, SCHEDULER, SCHEDULER_FILE, DASK_TIMEOUT, CHUNK_SIZE,
    FORCE, RETRY_FAILED, CHECKSUM, WAIT, JSON, QUIET, VERBOSE, LOG_FILE, *SLURM_OPTIONS,
]  # fmt: skip


def complete_method_name(incomplete: str) -> list[str]:
    """Shell completion of a METHOD argument: the installed methods, from entry points alone."""
    from astra_cli.methods.registry import method_names

    return [name for name in method_names() if name.startswith(incomplete)]


def method_argument(whose: str) -> Any:
    """The METHOD argument of a command about one method's runs (`results`, `forget`, `plot
    results`), completed with the installed methods; `whose` ends its help: "results to
    export"."""
    return Annotated[
        str,
        typer.Argument(
            help=f"The method whose {whose}.",
            metavar="METHOD",
            autocompletion=complete_method_name,
        ),
    ]


# Annotations for commands written as plain functions.
StoreDir = STORE_DIR.annotation()
ReadStoreDir = READ_STORE_DIR.annotation()
DataRoot = DATA_ROOT.annotation()
ManifestFormat = MANIFEST_FORMAT.annotation()
Jobs = JOBS.annotation()
Json = JSON.annotation()
Verbose = VERBOSE.annotation()
MethodToExport = method_argument("results to export")
MethodToDraw = method_argument("results to draw")
MethodToForget = method_argument("runs to forget")
