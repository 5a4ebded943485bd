"""Opening model files safely: FITS, `.npz` without pickles, FERRE text grids.

A model file may come from anywhere, so loading one must never execute code from it: pickles
are refused outright (however they are named), and `.npz` archives are read with
`allow_pickle=False`, which refuses object arrays.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from astra_cli.errors import UsageError
from astra_cli.io.formats import format_of
from astra_cli.io.truncation import shortfall

_PICKLE_MAGIC = b"\x80"  # protocol 2+ pickles start with PROTO (0x80)
_ZIP_MAGIC = b"PK\x03\x04"


class ModelFileError(UsageError):
    """A model file that cannot be used; the message names it and says why."""


def file_kind(path: str | os.PathLike[str]) -> str:
    """'fits', 'npz' or 'text', from the name and the first bytes; refuses pickles."""
    path = Path(path)
    named = format_of(path.name)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    with open(path, "rb") as handle:
        head = handle.read(8)
    if named == "pickle" or head.startswith(_PICKLE_MAGIC):
        raise ModelFileError(
            f"{path} is a pickle; astra never unpickles model files, because loading a pickle "
            "runs code from it. Save the model as FITS or as .npz of plain arrays."
        )
    if named == "fits" or head.startswith(b"SIMPLE"):
        return "fits"
    if named == "npz" or head.startswith(_ZIP_MAGIC):
        return "npz"
    return "text"


def load_npz(path: str | os.PathLike[str]) -> dict[str, Any]:
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


def fits_headers(
    path: str | os.PathLike[str], what: str, required: Sequence[str] = ()
) -> list[Any]:
    """The headers of every HDU of a FITS model file, once the file is known to hold all the
    data they describe and the `required` extensions: a truncated copy then stops the
    invocation here, before any work, instead of failing every run in the workers."""
    import warnings

    from astropy.io import fits

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # astropy's own note about truncation
            with fits.open(path, lazy_load_hdus=False) as hdus:
                short = shortfall(hdus, path)
                if short is not None:
                    raise ModelFileError(f"{what} {path} is truncated: {short}")
                names = {hdu.name.upper() for hdu in hdus}
                missing = [name for name in required if name.upper() not in names]
                if missing:
                    raise ModelFileError(f"{what} {path} has no {', '.join(missing)} extension")
                return [hdu.header.copy() for hdu in hdus]
    except OSError as error:
        raise ModelFileError(f"cannot read {what} {path}: {error}") from None
