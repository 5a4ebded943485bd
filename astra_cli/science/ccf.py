"""Radial velocities by cross-correlation with template spectra on a log-wavelength grid.

On a grid uniform in log(wavelength) a Doppler shift is a shift by a constant number of
pixels, so one FFT cross-correlation per template finds it for every velocity at once. The best
template is the one with the highest correlation peak; the peak is located to a fraction of a
pixel with a Gaussian (a parabola in log CCF) through its three highest points, and its
uncertainty follows Zucker (2003, MNRAS 342, 1291) from the curvature of the peak.

Templates file (FITS): HDU0 the template spectra (T x NPIX, continuum-normalised, rest frame)
with `CRVAL1`, `CDELT1` (log10 Angstrom) and `ASTRATPL = 1`; HDU "LABELS", a table with one row
per template (its labels, e.g. teff, logg, m_h).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from astra_cli.io.modelfiles import ModelFileError, file_kind, fits_headers
from astra_cli.science.continuum import normalise
from astra_cli.science.wavelength import SPEED_OF_LIGHT_KMS, resample, velocity_from_factor

MAX_VELOCITY_KMS = 1000.0
"""Velocities searched: +-1000 km/s covers every star in the Galaxy and its neighbours."""
FLAG_PEAK_AT_EDGE = 1
FLAG_NO_PEAK = 2


@dataclass(frozen=True)
class Templates:
    flux: np.ndarray
    """(T, P) continuum-normalised rest-frame spectra."""
    crval: float
    cdelt: float
    labels: dict[str, np.ndarray]

    @property
    def wavelength(self) -> np.ndarray:
        return 10.0 ** (self.crval + self.cdelt * np.arange(self.flux.shape[1]))

    @property
    def kms_per_pixel(self) -> float:
        return SPEED_OF_LIGHT_KMS * np.log(10.0) * self.cdelt


def measure(
    templates: Templates,
    wavelength: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
    *,
    continuum_order: int,
) -> dict[str, float | int | str]:
    """v_rad of one spectrum (any wavelength grid, observed frame)."""
    grid = templates.wavelength
    on_grid, ivar_on = resample(wavelength, flux, ivar, grid)
    normalised, weight = normalise(grid, on_grid, ivar_on, order=continuum_order)
    used = weight[0] > 0
    n_pixels = int(used.sum())
    depth = np.where(used, 1.0 - normalised[0], 0.0)
    depth[used] -= depth[used].mean()
    depth /= np.sqrt(np.sum(depth**2)) or 1.0

    template_depth = 1.0 - templates.flux
    template_depth = template_depth - template_depth.mean(axis=1, keepdims=True)
    template_depth /= np.sqrt(np.sum(template_depth**2, axis=1, keepdims=True))
    size = 1 << int(np.ceil(np.log2(2 * grid.size)))
    spectrum_fft = np.fft.rfft(depth, size)
    ccf = np.fft.irfft(np.conj(np.fft.rfft(template_depth, size)) * spectrum_fft, size)
    max_lag = int(np.ceil(MAX_VELOCITY_KMS / templates.kms_per_pixel))
    lags = np.arange(-max_lag, max_lag + 1)
    ccf = ccf[:, lags % size]  # (T, lags): ccf[k] = sum spectrum[i + k] template[i]

    best_template = int(np.argmax(ccf.max(axis=1)))
    curve = ccf[best_template]
    peak = int(np.argmax(curve))
    flags = 0
    if peak in (0, len(lags) - 1) or curve[peak] <= 0:
        flags |= FLAG_PEAK_AT_EDGE if curve[peak] > 0 else FLAG_NO_PEAK
        offset, curvature = 0.0, np.nan
    else:
        offset, curvature = _peak(curve[peak - 1 : peak + 2])
    lag = lags[peak] + offset
    height = float(curve[peak])
    v_rad = float(velocity_from_factor(10.0 ** (lag * templates.cdelt)))
    error = _zucker_error(height, curvature, n_pixels) * templates.kms_per_pixel
    width = _fwhm(curve[peak - 1 : peak + 2]) * templates.kms_per_pixel if not flags else np.nan
    result: dict[str, float | int | str] = {
        "v_rad": v_rad,
        "e_v_rad": float(error),
        "ccf_peak": height,
        "ccf_fwhm": float(width),
        "template": best_template,
    }
    for name, values in templates.labels.items():
        result[f"template_{name}"] = float(values[best_template])
    result.update(n_pixels=n_pixels, flags=flags)
    return result


def _peak(three: np.ndarray) -> tuple[float, float]:
    """Sub-pixel offset of the maximum (Gaussian through three points, parabola if any is not
    positive) and the curvature of the CCF there (per pixel squared)."""
    left, centre, right = three
    denominator = left - 2 * centre + right
    if min(three) > 0:
        logs = np.log(three)
        log_denominator = logs[0] - 2 * logs[1] + logs[2]
        offset = 0.5 * (logs[0] - logs[2]) / log_denominator if log_denominator < 0 else 0.0
    else:
        offset = 0.5 * (left - right) / denominator if denominator < 0 else 0.0
    return float(np.clip(offset, -1, 1)), float(denominator)


def _fwhm(three: np.ndarray) -> float:
    if min(three) <= 0:
        return np.nan
    logs = np.log(three)
    second = logs[0] - 2 * logs[1] + logs[2]
    return float(2.3548 * np.sqrt(-1.0 / second)) if second < 0 else np.nan


def _zucker_error(height: float, curvature: float, n_pixels: int) -> float:
    """sigma^2 = -[N C''/C * C^2 / (1 - C^2)]^-1, in pixels."""
    if not np.isfinite(curvature) or curvature >= 0 or not 0 < height < 1 or n_pixels < 2:
        return np.nan
    return float(np.sqrt(-1.0 / (n_pixels * curvature / height * height**2 / (1 - height**2))))


def write_templates(templates: Templates, path: str | Path) -> None:
    from astropy.io import fits
    from astropy.table import Table

    primary = fits.PrimaryHDU(templates.flux.astype(np.float32))
    primary.header["ASTRATPL"] = (1, "astra RV template set format version")
    primary.header["CRVAL1"] = templates.crval
    primary.header["CDELT1"] = templates.cdelt
    primary.header["LOGW"] = 1
    table = fits.table_to_hdu(Table(templates.labels))
    table.name = "LABELS"
    fits.HDUList([primary, table]).writeto(path, overwrite=True)


def read_templates(path: str | Path) -> Templates:
    from astropy.io import fits

    check_templates(path)
    try:
        with fits.open(path, memmap=False) as hdus:
            header = hdus[0].header
            flux = np.asarray(hdus[0].data, dtype=np.float64)
            table = hdus["LABELS"].data
            labels = {name.lower(): np.asarray(table[name], dtype=float) for name in table.names}
            return Templates(
                np.atleast_2d(flux), float(header["CRVAL1"]), float(header["CDELT1"]), labels
            )
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise ModelFileError(f"cannot read RV templates {path}: {error}") from None


def check_templates(path: str | Path) -> None:
    if file_kind(path) != "fits":
        raise ModelFileError(f"{path} is not a FITS file; RV template sets are FITS files")
    header = fits_headers(path, "RV templates", required=("LABELS",))[0]
    if "ASTRATPL" not in header:
        raise ModelFileError(f"{path} is not an astra RV template set (no ASTRATPL keyword)")
