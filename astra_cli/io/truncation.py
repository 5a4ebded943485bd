"""A FITS file shorter than its headers say: a copy or a download that stopped short.

astropy opens such a file, warns, and fails only where an array is read, with a message about
its shape, or, where the cut falls in a header, leaves that HDU and every later one out, so
that the file looks like another layout. The readers of spectra and of model files ask here
instead, to say what is wrong with the file in its own words.
"""

from __future__ import annotations

import os
from typing import Any


def shortfall(hdus: Any, path: str | os.PathLike[str]) -> str | None:
    """What the file at `path`, open as `hdus` (a `fits.HDUList`), lacks: `HDU1 needs 74,880
    bytes, the file has 20,000`, or `it ends inside HDU4's header, 1,728 bytes past HDU3`;
    None when it holds every HDU whole. Bytes after the last HDU that do not start an
    extension's header (padding some writers leave) are not a cut."""
    size = os.path.getsize(path)
    end = 0
    for index in range(len(hdus)):
        info = hdus.fileinfo(index)
        end = info["datLoc"] + info["datSpan"]
        if end > size:
            return f"HDU{index} needs {end:,} bytes, the file has {size:,}"
    if not len(hdus) or size <= end:
        return None
    with open(path, "rb") as handle:
        handle.seek(end)
        if handle.read(8) != b"XTENSION":
            return None
    return f"it ends inside HDU{len(hdus)}'s header, {size - end:,} bytes past HDU{len(hdus) - 1}"
