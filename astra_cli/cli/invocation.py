"""What the user typed, sorted into typed parts: the observations named, the method's option
values, and how to plan, run and report. Commands read attributes, not string keys, so a
renamed option is a type error rather than a KeyError at run time.

A command that lacks an option (`astra status` has no `--backend`) gets its default.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from astra_cli.cli.options import IDENTIFIER_PREFIX
from astra_cli.engine.backends import DEFAULT_DASK_TIMEOUT
from astra_cli.io.store import DEFAULT_OUTPUT_DIR

T = TypeVar("T")

METHOD_PREFIX = "method__"
"""Parameter names of a method's own options: `method__continuum_order`, ..."""


@dataclass(frozen=True)
class InputOptions:
    """The observations an invocation names, and how to read its manifests."""

    paths: list[Path] = field(default_factory=list)
    obs: list[str] = field(default_factory=list)
    from_file: list[str] = field(default_factory=list)
    per_key: dict[str, list[str]] = field(default_factory=dict)
    data_root: Path | None = None
    kind: str | None = None
    manifest_format: str | None = None
    hdu: str | None = None
    skip_bad_rows: bool = False

    @property
    def hdu_index(self) -> int | str | None:
        """--hdu as a number where it is one, else a name."""
        return int(self.hdu) if self.hdu is not None and self.hdu.isdigit() else self.hdu


@dataclass(frozen=True)
class PlanningOptions:
    output_dir: Path = Path(DEFAULT_OUTPUT_DIR)
    jobs: int | None = None
    chunk_size: int | None = None
    force: bool = False
    retry_failed: bool = False
    checksum: bool = False


@dataclass(frozen=True)
class RunOptions:
    backend: str = "loky"
    scheduler: str | None = None
    scheduler_file: Path | None = None
    dask_timeout: float = DEFAULT_DASK_TIMEOUT
    wait: bool = False
    log_file: Path | None = None
    slurm_partition: str | None = None
    slurm_jobs: int | None = None
    slurm_cores: int | None = None
    slurm_memory: str | None = None
    slurm_walltime: str | None = None
    slurm_account: str | None = None
    slurm_extra: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ReportOptions:
    json: bool = False
    quiet: bool = False
    verbose: bool = False


@dataclass(frozen=True)
class Invocation:
    inputs: InputOptions
    method_options: dict[str, list[Any]]
    """Each given option's values: several values are a sweep."""
    planning: PlanningOptions
    running: RunOptions
    report: ReportOptions


def split_arguments(values: dict[str, Any]) -> Invocation:
    """Sort a command's keyword arguments into an Invocation."""
    per_key: dict[str, list[str]] = {}
    method_options: dict[str, list[Any]] = {}
    common: dict[str, Any] = {}
    for name, value in values.items():
        if name.startswith(IDENTIFIER_PREFIX):
            per_key[name.removeprefix(IDENTIFIER_PREFIX)] = value or []
        elif name.startswith(METHOD_PREFIX):
            if value is not None:
                option = name.removeprefix(METHOD_PREFIX)
                given = value if isinstance(value, list) else [value]
                method_options[option] = [_plain(item) for item in given]
        elif value is not None:
            common[name] = value
    return Invocation(
        inputs=_given(InputOptions, common, per_key=per_key),
        method_options=method_options,
        planning=_given(PlanningOptions, common),
        running=_given(RunOptions, common),
        report=_given(ReportOptions, common),
    )


def _plain(value: Any) -> Any:
    """An option value as the method takes it: the value of an Enum member (choices)."""
    return value.value if isinstance(value, enum.Enum) else value


def _given(kind: type[T], values: dict[str, Any], **extra: Any) -> T:
    """An instance of the dataclass `kind` from the values it has fields for."""
    names = [f.name for f in fields(kind)]  # type: ignore[arg-type]
    return kind(**{name: values[name] for name in names if name in values}, **extra)
