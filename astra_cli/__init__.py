"""astra: analyse large batches of SDSS APOGEE spectra, grouping requests by their significant
options so that each model is loaded once per worker.

Public API::

    from astra_cli import Method, Param, Spectrum, Upstream, results, run
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from astra_cli.api import run
    from astra_cli.io.spectra import Spectrum
    from astra_cli.methods.base import Method, Param, Upstream
    from astra_cli.tables import results
    from astra_cli.version import __version__

__all__ = ["Method", "Param", "Spectrum", "Upstream", "__version__", "results", "run"]


def __getattr__(name: str) -> Any:
    # run() and Spectrum pull in the planner, executor and store, the version reads package
    # metadata (20 ms), and even the Method API's dataclasses cost `astra --help` a few ms it
    # does not need: each is imported when first used.
    if name in ("Method", "Param", "Upstream"):
        from astra_cli.methods import base

        return getattr(base, name)
    if name == "__version__":
        from astra_cli.version import __version__

        return __version__
    if name == "run":
        from astra_cli.api import run

        return run
    if name == "results":
        from astra_cli.tables import results

        return results
    if name == "Spectrum":
        from astra_cli.io.spectra import Spectrum

        return Spectrum
    raise AttributeError(f"module 'astra_cli' has no attribute {name!r}")
