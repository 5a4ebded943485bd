"""Find methods through the `astra_cli.methods` entry-point group.

Built-in methods register exactly as plugins do (see pyproject.toml), so a separately
installed package adds a method by declaring, in its own pyproject.toml::

    [project.entry-points."astra_cli.methods"]
    mymethod = "mypackage.module:MyMethod"

Listing names reads only package metadata, so shell completion stays fast; loading a method
imports its module, which must not import numpy or astropy at module level.

Worker processes are not made to find a method again: the invoking process tells them where
its class is (`method_path`), and they import it from there (`resolve_method`).
"""

from __future__ import annotations

import functools
import pkgutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from astra_cli.errors import UsageError, did_you_mean
from astra_cli.methods.base import Method

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

ENTRY_POINT_GROUP = "astra_cli.methods"


@functools.cache
def _entry_points() -> dict[str, EntryPoint]:
    # importlib.metadata costs `astra --help` 11 ms, and only method names need it.
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def method_names() -> list[str]:
    """Names of every installed method, sorted, without importing any of them."""
    return sorted(_entry_points())


@functools.cache
def load_method(name: str) -> type[Method]:
    """The method class registered under `name`.

    Raises UsageError for an unknown name (with the closest known name) or for a plugin that
    fails to import or is not a Method subclass.
    """
    entry_point = _entry_points().get(name)
    if entry_point is None:
        known = method_names()
        raise UsageError(
            f"unknown method {name!r}{did_you_mean(name, known)}; "
            f"installed methods: {', '.join(known) or 'none'} (see `astra methods`)"
        )
    return _imported(name, entry_point.value, entry_point.load)


def method_path(method_class: type[Method]) -> str:
    """Where a method's class is defined, as `module:Class`: what the invoking process tells
    its workers (`resolve_method`)."""
    return f"{method_class.__module__}:{method_class.__qualname__}"


@functools.cache
def resolve_method(name: str, path: str) -> type[Method]:
    """The method class at `path` (`method_path`), registered under `name`, as `load_method`
    gives it in the invoking process. Imported from there, without reading every installed
    package's metadata to find it again: importlib.metadata's import and that read took 17 to
    19 ms of each worker's start here, a read of as many files as packages are installed.

    Raises UsageError for a class the worker's environment cannot import or that is not a
    Method subclass (a worker installed otherwise than the invoking process).
    """
    return _imported(name, path, functools.partial(pkgutil.resolve_name, path))


def _imported(name: str, where: str, load: Callable[[], Any]) -> type[Method]:
    """The class `load` imports from `where`, checked to be a Method and named `name`; a
    UsageError saying which method and where, for one that fails to import or is not a
    Method subclass."""
    try:
        method_class = load()
    except Exception as error:
        raise UsageError(
            f"method {name!r} ({where}) failed to import: {type(error).__name__}: {error}"
        ) from error
    if not (isinstance(method_class, type) and issubclass(method_class, Method)):
        raise UsageError(f"method {name!r} ({where}) is not an astra_cli.Method")
    method_class.name = name
    return method_class
