"""A FITS file shorter than its headers say: a copy or a download that stopped short.

astropy opens such a file, warns, and fails only where an array is read, with a message about
its shape. The readers of spectra and of model files ask here instead, to say what is wrong
with the file in its own words.
"""

from __future__ import annotations

from typing import Any


def short_hdu(hdus: Any, size: int) -> tuple[int, int] | None:
    """(index, bytes needed) of the first HDU of an open `fits.HDUList` whose data (with its
    padding) reaches past `size`, the file's length; None when the file holds every HDU."""
    for index in range(len(hdus)):
        info = hdus.fileinfo(index)
        needed = info["datLoc"] + info["datSpan"]
        if needed > size:
            return index, needed
    return None
