"""Spectra and the readers of APOGEE apStar and apVisit files.

Readers return one `Spectrum` with wavelengths ascending in Angstrom, inverse variances (zero
where a pixel carries no information) and the APOGEE_PIXMASK bits. Methods then need to know
nothing of the file layouts.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from astropy.io import fits

BAD_PIXEL_BITS = sum(1 << bit for bit in (*range(8), 14))
"""APOGEE_PIXMASK bits that make a pixel unusable: BADPIX, CRPIX, SATPIX, UNFIXABLE,
BADDARK, BADFLAT, BADERR, NOSKY (bits 0-7) and SIG_SKYLINE (bit 14): 16639."""

_HEADER_KEYS_DROPPED = {"COMMENT", "HISTORY", ""}


class SpectrumReadError(ValueError):
    """A file that is not a readable apStar or apVisit spectrum; the message names it."""


class MissingInputError(SpectrumReadError):
    """The file is not there (yet): a typo, an unmounted disk, a product not yet reduced."""


@dataclass
class Spectrum:
    """One observed spectrum, ready for analysis.

    wavelength
        Vacuum wavelengths in Angstrom, ascending.
    flux
        Flux per pixel; non-finite values are replaced by 0 (and have `ivar` 0).
    ivar
        Inverse variance of the flux; 0 where the pixel carries no information.
    mask
        APOGEE_PIXMASK bit field per pixel (int64).
    meta
        The primary header's keywords, and `kind` ("apStar" or "apVisit").
    """

    wavelength: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    mask: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    path: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)
    """Values the observation brings to the method beside its file: `v_rad` (km/s) from a
    manifest column, or from another method (`rv`) run first."""

    @property
    def observed_frame(self) -> bool:
        """apVisit spectra are in the observed frame; apStar spectra are shifted to rest."""
        return self.meta.get("kind") == "apVisit"

    @property
    def bad(self) -> np.ndarray:
        """Pixels that are flagged by a bad mask bit or carry no information."""
        return ((self.mask & BAD_PIXEL_BITS) != 0) | (self.ivar <= 0)


def read_spectrum(path: str | Path) -> Spectrum:
    """Read an apStar or apVisit file, recognised by its name or, failing that, its layout."""
    from astropy.io import fits
    from astropy.utils.exceptions import AstropyWarning

    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"missing input: {path}")
    try:
        with warnings.catch_warnings():
            # A damaged file fails below with a message naming it; astropy's warnings about
            # it would only be noise on the terminal of every worker.
            warnings.simplefilter("ignore", AstropyWarning)
            with fits.open(path, memmap=False) as hdus:
                reader = _choose_reader(path, hdus)
                return reader(hdus, str(path))
    except Exception as error:
        # A cut file fails in many ways, a layout astra does not know among them: said first.
        short = _truncation(path)
        if short is not None:
            raise SpectrumReadError(
                f"cannot read {path}: the file is truncated: {short} (a copy or download that "
                "stopped short?)"
            ) from error
        if isinstance(error, SpectrumReadError):
            raise
        raise SpectrumReadError(f"cannot read {path}: {type(error).__name__}: {error}") from error


def _truncation(path: Path) -> str | None:
    """What a file that failed to read lacks, when it is shorter than its headers say
    (`io.truncation`); None when it is not that, or its headers are too damaged to say."""
    from astropy.io import fits
    from astropy.utils.exceptions import AstropyWarning

    from astra_cli.io.truncation import shortfall

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            with fits.open(path, memmap=False) as hdus:
                return shortfall(hdus, path)
    except Exception:  # headers too damaged to say what the file should hold
        return None


def _choose_reader(path: Path, hdus: fits.HDUList) -> Callable[[fits.HDUList, str], Spectrum]:
    if path.name.startswith(("apStar", "asStar")):
        return _read_apstar
    if path.name.startswith(("apVisit", "asVisit")):
        return _read_apvisit
    if len(hdus) >= 5 and hdus[4].header.get("NAXIS") == 2 and "CRVAL1" not in hdus[1].header:
        return _read_apvisit
    if len(hdus) >= 4 and ("CRVAL1" in hdus[1].header or "CRVAL1" in hdus[0].header):
        return _read_apstar
    raise SpectrumReadError(
        f"cannot read {path}: neither an apStar (flux, error and mask in HDUs 1-3 with "
        "log-linear CRVAL1/CDELT1 wavelengths) nor an apVisit file (wavelengths in HDU4)"
    )


def _read_apstar(hdus: fits.HDUList, path: str) -> Spectrum:
    """apStar: HDU1 flux, HDU2 error, HDU3 mask; row 0 is the combined spectrum (a file with
    NVISITS=1 holds a single row); log-linear wavelengths from CRVAL1/CDELT1/CRPIX1."""
    import numpy as np

    flux, error, mask = (_first_row(hdus[i].data, path, i) for i in (1, 2, 3))
    header = hdus[1].header if "CRVAL1" in hdus[1].header else hdus[0].header
    try:
        crval, cdelt = float(header["CRVAL1"]), float(header["CDELT1"])
    except KeyError as missing:
        raise SpectrumReadError(f"cannot read {path}: no {missing} in its header") from None
    crpix = float(header.get("CRPIX1", 1.0))
    if not (np.isfinite([crval, cdelt, crpix]).all() and cdelt > 0):
        raise SpectrumReadError(
            f"cannot read {path}: CRVAL1 {crval}, CDELT1 {cdelt}, CRPIX1 {crpix} do not give "
            "increasing wavelengths"
        )
    if not flux.size == error.size == mask.size:
        raise SpectrumReadError(f"cannot read {path}: HDUs 1-3 differ in size")
    pixels = np.arange(flux.size, dtype=float)
    wavelength = 10.0 ** (crval + cdelt * (pixels + 1.0 - crpix))
    return _spectrum(wavelength, flux, error, mask, hdus[0].header, path, "apStar")


def _read_apvisit(hdus: fits.HDUList, path: str) -> Spectrum:
    """apVisit: HDU1 flux, HDU2 error, HDU3 mask, HDU4 wavelength, each 3 chips x 4096 pixels
    with wavelength decreasing along a row; joined and sorted ascending."""
    import numpy as np

    flux, error, mask, wavelength = (_chips(hdus[i].data, path, i) for i in (1, 2, 3, 4))
    if not flux.size == error.size == mask.size == wavelength.size:
        raise SpectrumReadError(f"cannot read {path}: HDUs 1-4 differ in size")
    if not np.isfinite(wavelength).all():
        raise SpectrumReadError(f"cannot read {path}: HDU4 holds non-finite wavelengths")
    order = np.argsort(wavelength, kind="stable")
    return _spectrum(
        wavelength[order], flux[order], error[order], mask[order], hdus[0].header, path, "apVisit"
    )


def _first_row(data: Any, path: str, index: int) -> np.ndarray:
    """An apStar HDU's combined spectrum: row 0, or the only row."""
    array = _at_most_2d(data, path, index, "an apStar holds one spectrum per row")
    return array[0] if array.ndim == 2 else array


def _chips(data: Any, path: str, index: int) -> np.ndarray:
    """An apVisit HDU's chips (3 x 4096) as one row."""
    return _at_most_2d(data, path, index, "an apVisit holds one row per chip").ravel()


def _at_most_2d(data: Any, path: str, index: int, layout: str) -> np.ndarray:
    """An HDU's data, refused when absent or of more than 2 dimensions (never flattened
    into one nonsense spectrum)."""
    import numpy as np

    if data is None:
        raise SpectrumReadError(f"cannot read {path}: HDU{index} holds no data")
    array = np.asarray(data)
    if array.ndim > 2:
        raise SpectrumReadError(
            f"cannot read {path}: HDU{index} has {array.ndim} dimensions {array.shape}; {layout}"
        )
    return array


def _spectrum(
    wavelength: np.ndarray,
    flux: np.ndarray,
    error: np.ndarray,
    mask: np.ndarray,
    header: Any,
    path: str,
    kind: str,
) -> Spectrum:
    import numpy as np

    flux = np.asarray(flux, dtype=np.float64)
    error = np.asarray(error, dtype=np.float64)
    usable = np.isfinite(flux) & np.isfinite(error) & (error > 0)
    ivar = np.zeros_like(flux)
    ivar[usable] = error[usable] ** -2.0
    meta = {key: header[key] for key in header if key not in _HEADER_KEYS_DROPPED}
    meta["kind"] = kind
    return Spectrum(
        wavelength=np.asarray(wavelength, dtype=np.float64),
        flux=np.where(np.isfinite(flux), flux, 0.0),
        ivar=ivar,
        mask=np.asarray(mask, dtype=np.int64),
        meta=meta,
        path=path,
    )
