"""Per-run files of a fit (`--save-spectra`): the observed spectrum normalised, its error, the
continuum and the best-fit model on the pixels the fit used, so that anyone can look at a fit
(the aspcapStar idea).

A method returns a `FittedSpectrum` as the value of a result column; the worker writes it to
OUTPUT_DIR/spectra/METHOD/GROUP/NAME.fits and stores the path, relative to the output
directory, in that column. The file: HDU0 header `METHOD`, `GROUP`, `OBSKEY` (the run's
observation), `INPUT` (the file read); HDU "FIT", a table of WAVELENGTH (rest frame, Angstrom),
FLUX and ERROR (observed / continuum), CONTINUUM (observed units) and MODEL (normalised), one
row per pixel that has a continuum (ERROR is infinite where a pixel took no part).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

SPECTRA_DIRECTORY = "spectra"
COLUMNS = ("wavelength", "flux", "error", "continuum", "model")


@dataclass
class FittedSpectrum:
    """One fit, pixel by pixel: arrays of one length."""

    wavelength: np.ndarray
    """Rest-frame wavelength, Angstrom."""
    flux: np.ndarray
    """Observed flux divided by the fitted continuum."""
    error: np.ndarray
    """Its error (infinite where a pixel has no data)."""
    continuum: np.ndarray
    """The fitted continuum, in the observed flux's units."""
    model: np.ndarray
    """The best-fit model, normalised."""


def spectrum_path(method: str, group_key: str, observation_key: str) -> Path:
    """Where a run's file goes, relative to the output directory. The name is readable (the
    observation's own name, reduced to safe characters) and unique (a hash of its key), and
    has no separator, so no identifier or path can lead it out of the directory."""
    kind, _, rest = observation_key.split("|", 1)[0].partition(":")
    if kind == "path":
        name = rest.rsplit("/", 1)[-1].removesuffix(".fits")
    else:  # apStar:apred=dr17,field=...: the kind and the values
        name = "-".join([kind, *(pair.partition("=")[2] for pair in rest.split(","))])
    readable = re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("._")[:80] or "run"
    digest = hashlib.sha256(observation_key.encode()).hexdigest()[:12]
    return Path(SPECTRA_DIRECTORY) / method / group_key / f"{readable}-{digest}.fits"


def write_fitted_spectrum(spectrum: FittedSpectrum, path: Path, header: dict[str, str]) -> None:
    """Write atomically: a reader never sees half a file, and a rerun replaces the old one."""
    import numpy as np
    from astropy.io import fits

    columns = [
        fits.Column(name=name.upper(), format="D", array=np.asarray(getattr(spectrum, name)))
        for name in COLUMNS
    ]
    primary = fits.PrimaryHDU()
    for key, value in header.items():
        primary.header[key] = value
    table = fits.BinTableHDU.from_columns(columns, name="FIT")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".part")
    os.close(handle)
    try:
        fits.HDUList([primary, table]).writeto(temporary, overwrite=True)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_fitted_spectrum(path: str | Path) -> FittedSpectrum:
    from astropy.io import fits

    with fits.open(path) as hdus:
        data = hdus["FIT"].data
        return FittedSpectrum(*(data[name.upper()].astype(float) for name in COLUMNS))
