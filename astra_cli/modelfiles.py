"""Opening model files safely: FITS, `.npz` without pickles, FERRE text grids.

A model file may come from anywhere, so loading one must never execute code from it: pickles
are refused outright (however they are named), and `.npz` archives are read with
`allow_pickle=False`, which refuses object arrays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from astra_cli.errors import UsageError

PICKLE_SUFFIXES = (".pkl", ".pickle", ".pck", ".joblib")
FITS_SUFFIXES = (".fits", ".fit", ".fits.gz", ".fit.gz", ".fts")
_PICKLE_MAGIC = b"\x80"  # protocol 2+ pickles start with PROTO (0x80)
_ZIP_MAGIC = b"PK\x03\x04"


class ModelFileError(UsageError):
    """A model file that cannot be used; the message names it and says why."""


def file_kind(path: str | Path) -> str:
    """'fits', 'npz' or 'text', from the name and the first bytes; refuses pickles."""
    path = Path(path)
    name = path.name.lower()
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    with open(path, "rb") as handle:
        head = handle.read(8)
    if name.endswith(PICKLE_SUFFIXES) or head.startswith(_PICKLE_MAGIC):
        raise ModelFileError(
            f"{path} is a pickle; astra never unpickles model files, because loading a pickle "
            "runs code from it. Save the model as FITS or as .npz of plain arrays."
        )
    if name.endswith(FITS_SUFFIXES) or head.startswith(b"SIMPLE"):
        return "fits"
    if name.endswith(".npz") or head.startswith(_ZIP_MAGIC):
        return "npz"
    return "text"


def load_npz(path: str | Path) -> dict[str, Any]:
    """Every array of an .npz archive; object arrays (which would need unpickling) refused."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise ModelFileError(
                f"{path} holds object arrays, which only unpickling could read; astra refuses "
                "them. Save plain numeric and string arrays."
            ) from None
        raise ModelFileError(f"cannot read {path}: {error}") from None
    except OSError as error:
        raise ModelFileError(f"cannot read {path}: {error}") from None
