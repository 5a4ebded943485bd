"""What loky's resource tracker runs when astra starts it (`backends.start_loky_tracker`):
loky's own `main`, imported without joblib's packages' code.

Before its first worker, loky starts a resource tracker, a process that removes the
semaphores and temporary folders of workers that die before they can. loky starts it as
`python -c "from <main's module> import main; main(fd)"`, and importing loky's module runs
the code of the packages it sits in first: joblib's `__init__` imports all of joblib (numpy,
asyncio, cloudpickle, psutil...) and loky's its executor. The tracker needs none of it: it
reads names of semaphores and folders from a pipe, using loky's `backend` package alone. It
took 0.17 to 0.2 s of CPU with numpy, 0.12 to 0.16 s without, and takes 0.06 to 0.09 s with
`backend` alone (in runs of 2,000 demo stars on 2 workers), while the workers start on the
cores they need.

So `joblib`, `joblib.externals` and `joblib.externals.loky` are put in `sys.modules` as the
import system finds them, their code not run (`_packages_unrun`), and loky's tracker module is
imported within them. That is safe only in a process that will import nothing else of joblib:
`main` is looked up only when asked for, by the tracker's interpreter (a process that imported
joblib already gets loky's module as it is). Should a joblib to come need its packages' code
for that import, the tracker imports loky's module as usual, numpy hidden
(`import_without_numpy`, which the invoking process uses too).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

TRACKER_MODULE = "joblib.externals.loky.backend.resource_tracker"
PACKAGES = ("joblib", "joblib.externals", "joblib.externals.loky")
"""The packages that hold loky's `backend`, outermost first."""


def _packages_unrun() -> Callable[..., None]:
    """loky's tracker `main`, imported with PACKAGES in `sys.modules` as found, not run (each
    found on its parent's `__path__`, so no parent runs either)."""
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None:
            raise ImportError(f"no module named {name!r}", name=name)
        sys.modules[name] = importlib.util.module_from_spec(spec)
    return importlib.import_module(TRACKER_MODULE).main


def import_without_numpy(name: str) -> ModuleType:
    """Import a module of joblib's with numpy made to look absent, as where it is not
    installed: joblib runs without it, needing it only to pass arrays through memory maps. A
    numpy imported already is left as it is."""
    hidden = "numpy" not in sys.modules
    if hidden:
        sys.modules["numpy"] = None  # type: ignore[assignment]
    try:
        return importlib.import_module(name)
    finally:
        if hidden:
            del sys.modules["numpy"]


def _with_numpy_hidden() -> Callable[..., None]:
    """loky's tracker `main`, imported as usual, numpy hidden, after dropping what
    `_packages_unrun` left (whole packages or not)."""
    for name in [name for name in sys.modules if name.partition(".")[0] == "joblib"]:
        del sys.modules[name]
    return import_without_numpy(TRACKER_MODULE).main


def tracker_main() -> Callable[..., None]:
    """loky's tracker `main`, imported at the least cost this joblib allows; as it is, in a
    process that imported joblib already."""
    if "joblib" in sys.modules:
        return importlib.import_module(TRACKER_MODULE).main
    try:
        return _packages_unrun()
    except (ImportError, AttributeError):  # a joblib whose tracker needs its packages' code
        return _with_numpy_hidden()


def __getattr__(name: str) -> Any:
    """`main`, imported the first time the tracker's command asks for it (`from ... import
    main`), so that importing this module changes nothing."""
    if name != "main":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    main = globals()["main"] = tracker_main()
    return main
