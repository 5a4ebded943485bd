"""Options shared by the commands that plan or run analyses."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer

from astra_cli.backends import BACKENDS
from astra_cli.cli.method_commands import COMMON_PANEL
from astra_cli.store import DEFAULT_OUTPUT_DIR

_KEYWORD = inspect.Parameter.KEYWORD_ONLY


def _parameter(name: str, annotation: Any, default: Any, *decls: str, **info: Any):
    option = typer.Option(*decls, rich_help_panel=COMMON_PANEL, **info)
    return inspect.Parameter(
        name, _KEYWORD, annotation=Annotated[annotation, option], default=default
    )


OUTPUT_DIR = _parameter(
    "output_dir", Path, Path(DEFAULT_OUTPUT_DIR), "--output-dir", "-o",
    envvar="ASTRA_OUTPUT_DIR", metavar="DIR",
    help="Directory of the results store (created if missing).",
)  # fmt: skip
DATA_ROOT = _parameter(
    "data_root", Optional[Path], None, "--data-root",  # noqa: UP045
    envvar="SAS_BASE_DIR", metavar="DIR", show_default=False,
    help="Local SAS root that identifiers resolve under (sdss-access layout).",
)  # fmt: skip
JOBS = _parameter(
    "jobs", Optional[int], None, "--jobs", "-j", min=1, metavar="N",  # noqa: UP045
    show_default=False, help="Worker processes. \\[default: every core]",
)  # fmt: skip
BACKEND = _parameter(
    "backend", Literal[BACKENDS], "loky", "--backend", metavar="NAME",
    help="joblib backend: loky (processes), threading, sequential (in this process), or dask "
    "(a dask.distributed cluster: --scheduler, --scheduler-file).",
)  # fmt: skip
SCHEDULER = _parameter(
    "scheduler", Optional[str], None, "--scheduler", metavar="ADDRESS",  # noqa: UP045
    show_default=False, help="With --backend dask: a running scheduler, tcp://host:port.",
)  # fmt: skip
SCHEDULER_FILE = _parameter(
    "scheduler_file", Optional[Path], None, "--scheduler-file", metavar="FILE",  # noqa: UP045
    show_default=False,
    help="With --backend dask: the scheduler's file (dask scheduler --scheduler-file, "
    "dask-jobqueue). With neither, a local cluster of --jobs workers.",
)  # fmt: skip
CHUNK_SIZE = _parameter(
    "chunk_size", Optional[int], None, "--chunk-size", min=1, metavar="N",  # noqa: UP045
    show_default=False,
    help="Observations per worker call. \\[default: enough chunks to keep every worker busy]",
)  # fmt: skip
FORCE = _parameter(
    "force", bool, False, "--force", metavar="", help="Rerun runs that are already in the store."
)
RETRY_FAILED = _parameter(
    "retry_failed", bool, False, "--retry-failed", metavar="", help="Rerun runs that failed before."
)
JSON = _parameter(
    "json", bool, False, "--json", metavar="", help="Print a JSON document on stdout."
)
QUIET = _parameter("quiet", bool, False, "--quiet", "-q", metavar="", help="Print only errors.")
VERBOSE = _parameter(
    "verbose", bool, False, "--verbose", "-v", metavar="", help="Show tracebacks of errors."
)

WAIT = _parameter(
    "wait", bool, False, "--wait", metavar="",
    help="Wait for groups that another invocation is running, instead of skipping them.",
)  # fmt: skip
LOG_FILE = _parameter(
    "log_file", Optional[Path], None, "--log-file", metavar="PATH",  # noqa: UP045
    show_default=False,
    help="Append timestamped lines (start, each group, each failure, summary) to PATH.",
)  # fmt: skip

PLAN_OPTIONS = [OUTPUT_DIR, DATA_ROOT, JOBS, CHUNK_SIZE, FORCE, RETRY_FAILED, JSON, VERBOSE]
STATUS_OPTIONS = [OUTPUT_DIR, DATA_ROOT, JSON, VERBOSE]
ANALYSE_OPTIONS = [
    OUTPUT_DIR, DATA_ROOT, JOBS, BACKEND, SCHEDULER, SCHEDULER_FILE, CHUNK_SIZE, FORCE,
    RETRY_FAILED, WAIT, JSON, QUIET, VERBOSE, LOG_FILE,
]  # fmt: skip
