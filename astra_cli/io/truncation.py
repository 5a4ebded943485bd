"""A FITS file shorter than its headers say: a copy or a download that stopped short.

astropy opens such a file, warns, and fails only where an array is read, with a message about
its shape, or, where the cut falls in a header, leaves that HDU and every later one out, so
that the file looks like another layout. The readers of spectra and of model files ask here
instead, to say what is wrong with the file in its own words.
"""

from __future__ import annotations

from typing import Any


def shortfall(hdus: Any, size: int) -> str | None:
    """What an open `fits.HDUList` of a file of `size` bytes lacks: `HDU1 needs 74,880 bytes,
    the file has 20,000`, or `it ends inside HDU4's header, 1,000 bytes past HDU3`; None when
    the file holds every HDU whole, and nothing after them."""
    end = 0
    for index in range(len(hdus)):
        info = hdus.fileinfo(index)
        end = info["datLoc"] + info["datSpan"]
        if end > size:
            return f"HDU{index} needs {end:,} bytes, the file has {size:,}"
    if len(hdus) and size > end:
        return (
            f"it ends inside HDU{len(hdus)}'s header, {size - end:,} bytes past HDU{len(hdus) - 1}"
        )
    return None
