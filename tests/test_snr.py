"""The `snr` method: S/N, bad-pixel fraction and median flux, on real and synthetic spectra."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from fits_factory import APSTAR_PIXELS, write_apstar

from astra_cli.io.spectra import read_spectrum
from astra_cli.methods.snr import SignalToNoise

APOGEE_BAD_BITS = 16639  # bits 0-7 and 14, written out independently of astra_cli


def analyse(path):
    return SignalToNoise().analyse(None, read_spectrum(path))


def test_real_apvisit_snr_is_within_ten_percent_of_the_pipeline(real_apvisits):
    for path in real_apvisits:
        pipeline_snr = fits.getheader(path, 0)["SNR"]
        result = analyse(path)
        assert result["snr"] == pytest.approx(pipeline_snr, rel=0.10), path.name


def test_real_apvisit_bad_pixel_fraction(real_apvisits):
    for path in real_apvisits:
        mask = fits.getdata(path, 3).astype(np.int64)
        expected = np.count_nonzero(mask & APOGEE_BAD_BITS) / mask.size
        assert expected > 0  # the real files do have flagged pixels
        assert analyse(path)["bad_pixel_fraction"] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("snr", [20.0, 50.0, 200.0])
def test_synthetic_apstar_snr_is_recovered(tmp_path, snr):
    path = write_apstar(tmp_path / "apStar-snr.fits", snr=snr, nvisits=3)
    result = analyse(path)
    assert result["snr"] == pytest.approx(snr, rel=0.02)
    assert result["bad_pixel_fraction"] == 0.0
    assert result["n_pixels"] == APSTAR_PIXELS


def test_bad_pixels_are_left_out_of_snr_and_counted(tmp_path):
    n, n_bad = 1000, 300
    flux = np.full(n, 500.0)
    flux[:n_bad] = 5.0  # flagged pixels far from the rest: they must not pull the medians
    error = np.full(n, 10.0)
    error[-20:] = 0.0  # unusable but not flagged: left out of the S/N, not of the mask fraction
    mask = np.zeros(n, dtype=np.int16)
    mask[:n_bad] = 1 << 0  # BADPIX
    mask[n_bad : n_bad + 50] = 1 << 9  # not a bad bit: those pixels stay usable
    primary = fits.PrimaryHDU()
    header = fits.Header({"CRVAL1": 4.179, "CDELT1": 6e-6, "CRPIX1": 1})
    path = tmp_path / "apStar-masked.fits"
    hdus = [fits.ImageHDU(data, header=header.copy()) for data in (flux, error, mask)]
    fits.HDUList([primary, *hdus]).writeto(path)
    result = analyse(path)
    assert result["snr"] == pytest.approx(50.0)
    assert result["median_flux"] == pytest.approx(500.0)
    assert result["bad_pixel_fraction"] == pytest.approx(n_bad / n)
    assert result["n_pixels"] == n - n_bad - 20


@pytest.mark.parametrize("how", ["masked", "zero-error"])
def test_spectrum_without_usable_pixels_raises_naming_the_file(tmp_path, how):
    path = tmp_path / "apStar-unusable.fits"
    if how == "masked":
        write_apstar(path, bad_pixels=APSTAR_PIXELS)
    else:
        write_apstar(path)
        with fits.open(path, mode="update") as hdus:
            hdus[2].data[:] = 0
    spectrum = read_spectrum(path)
    with pytest.raises(ValueError) as raised:
        SignalToNoise().analyse(None, spectrum)
    assert str(path) in str(raised.value)
