"""Models that passed their method's checks (`Method.validate`), remembered in the store.

A request is checked before anything runs: a grid is read through to see that it is a grid
astra can fit, which costs astropy's and numpy's imports and a read of the file, about half a
second, every night, for a rerun that may have nothing to do. The check's outcome depends only
on the method (name, version, options), astra's version and the model files, so a pass is
remembered under those, with the files known by size and modification time as the workers know
them; a file touched or replaced, another option or another astra version is checked again.
Only passes are remembered: a model that failed is read again, and refused again, each time.
"""

from __future__ import annotations

import json
import os

from astra_cli.engine.fingerprints import MISSING, files_state
from astra_cli.methods.base import Method


def check_key(method: Method) -> str | None:
    """What a pass of `method.validate()` is remembered under; None for a method without
    model files (nothing worth remembering) or with one missing (refused by `requires`)."""
    paths = [os.path.abspath(path) for path in method.model_files()]
    state = files_state(paths)
    if not paths or MISSING in state.split(","):
        return None
    from astra_cli.version import __version__

    options = json.dumps(method.options, sort_keys=True, default=str, separators=(",", ":"))
    return f"{method.name}/{method.version}/astra {__version__}/{options}/{paths}/{state}"
