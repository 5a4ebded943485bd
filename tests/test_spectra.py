"""`read_spectrum`: the real apVisit files, synthetic apStar files, and unreadable inputs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from astropy.io import fits
from conftest import REAL_DATA
from fits_factory import APSTAR_PIXELS, CDELT1, CRVAL1, write_apstar

from astra_cli.io.spectra import SpectrumReadError, read_spectrum

APVISIT_PIXELS = 3 * 4096


def write_custom_apstar(path, flux, error, mask, *, crval=CRVAL1, cdelt=CDELT1, crpix=1):
    """An apStar file with the given rows (2-D arrays: one row per spectrum, combined first)."""
    flux, error, mask = (np.asarray(a) for a in (flux, error, mask))
    nvisits = 1 if flux.ndim == 1 else flux.shape[0] - 2
    header = fits.Header({"CRVAL1": crval, "CDELT1": cdelt, "CRPIX1": crpix})
    primary = fits.PrimaryHDU()
    primary.header["NVISITS"] = nvisits
    hdus = [primary] + [fits.ImageHDU(data, header=header.copy()) for data in (flux, error, mask)]
    fits.HDUList(hdus).writeto(path)
    return path


def apstar_wavelength(n, crval=CRVAL1, cdelt=CDELT1, crpix=1):
    return 10.0 ** (crval + cdelt * (np.arange(n) + 1.0 - crpix))


# --- the real apVisit files --------------------------------------------------------------------


def test_real_apvisit_shape_and_wavelength_range(real_apvisits):
    for path in real_apvisits:
        spectrum = read_spectrum(path)
        assert spectrum.wavelength.size == APVISIT_PIXELS
        assert spectrum.flux.size == spectrum.ivar.size == spectrum.mask.size == APVISIT_PIXELS
        assert np.all(np.diff(spectrum.wavelength) > 0), "wavelength must be strictly ascending"
        assert 15100 < spectrum.wavelength[0] < 15200
        assert 16900 < spectrum.wavelength[-1] < 17000
        assert np.all(np.isfinite(spectrum.ivar)) and np.all(spectrum.ivar >= 0)
        assert spectrum.mask.dtype == np.int64
        assert spectrum.meta["kind"] == "apVisit"
        assert spectrum.path == str(path)


def test_real_apvisit_values_match_the_hdus_after_sorting(real_apvisits):
    for path in real_apvisits:
        with fits.open(path) as hdus:
            flux, error, mask, wavelength = (
                np.asarray(hdus[i].data, dtype=float).ravel() for i in (1, 2, 3, 4)
            )
            snr = hdus[0].header["SNR"]
        spectrum = read_spectrum(path)
        assert np.array_equal(spectrum.wavelength, np.sort(wavelength))
        for i in (0, 1, 2047, 4095, 4096, 6000, 8191, 8192, 12287):
            (j,) = np.flatnonzero(wavelength == spectrum.wavelength[i])
            assert spectrum.flux[i] == flux[j]
            assert spectrum.ivar[i] == pytest.approx(error[j] ** -2, rel=1e-12)
            assert spectrum.mask[i] == mask[j]
        assert spectrum.meta["SNR"] == snr


def test_renamed_apvisit_is_recognised_by_layout(real_apvisits, tmp_path):
    renamed = tmp_path / "visit.fits"
    shutil.copy(real_apvisits[0], renamed)
    spectrum = read_spectrum(renamed)
    original = read_spectrum(real_apvisits[0])
    assert spectrum.meta["kind"] == "apVisit"
    assert np.array_equal(spectrum.wavelength, original.wavelength)
    assert np.array_equal(spectrum.flux, original.flux)


# --- synthetic apStar files ---------------------------------------------------------------------


def test_apstar_single_row_file(tmp_path):
    path = write_apstar(tmp_path / "apStar-one.fits", nvisits=1)
    spectrum = read_spectrum(path)
    with fits.open(path) as hdus:
        assert hdus[1].data.ndim == 1
        flux, error = hdus[1].data.astype(float), hdus[2].data.astype(float)
    assert spectrum.meta["kind"] == "apStar"
    assert spectrum.flux.size == spectrum.ivar.size == spectrum.mask.size == APSTAR_PIXELS
    assert np.array_equal(spectrum.flux, flux)
    assert np.allclose(spectrum.ivar, error**-2, rtol=1e-12)
    assert np.allclose(spectrum.wavelength, apstar_wavelength(APSTAR_PIXELS), rtol=1e-12)


def test_apstar_multi_visit_file_uses_row_zero(tmp_path):
    rows, n = 5, 100  # NVISITS=3: two combined spectra then three visits
    flux = np.array([np.full(n, 100.0 * (row + 1)) for row in range(rows)], dtype=np.float32)
    error = np.array([np.full(n, row + 1.0) for row in range(rows)], dtype=np.float32)
    mask = np.ones((rows, n), dtype=np.int16)  # BADPIX everywhere but in row 0
    mask[0] = 0
    path = write_custom_apstar(tmp_path / "apStar-visits.fits", flux, error, mask)
    spectrum = read_spectrum(path)
    assert spectrum.meta["NVISITS"] == 3
    assert spectrum.flux.size == n
    assert np.all(spectrum.flux == 100.0)
    assert np.all(spectrum.ivar == 1.0)
    assert np.all(spectrum.mask == 0)
    assert not spectrum.bad.any()


def test_apstar_factory_multi_visit_uses_row_zero(tmp_path):
    path = write_apstar(tmp_path / "apStar-three.fits", nvisits=3)
    with fits.open(path) as hdus:
        rows = hdus[1].data.astype(float)
    assert rows.shape == (5, APSTAR_PIXELS)
    spectrum = read_spectrum(path)
    assert np.array_equal(spectrum.flux, rows[0])
    assert not np.array_equal(spectrum.flux, rows[1])


@pytest.mark.parametrize("flux_dtype", [np.float32, np.float64])
def test_apstar_flux_dtypes(tmp_path, flux_dtype):
    path = write_apstar(tmp_path / "apStar-dtype.fits", flux_dtype=flux_dtype)
    with fits.open(path) as hdus:
        assert hdus[1].data.dtype == np.dtype(flux_dtype).newbyteorder(">")
        flux, error = hdus[1].data.astype(float), hdus[2].data.astype(float)
    spectrum = read_spectrum(path)
    assert spectrum.flux.dtype == np.float64
    assert np.array_equal(spectrum.flux, flux)
    assert np.allclose(spectrum.ivar, error**-2, rtol=1e-12)


@pytest.mark.parametrize("mask_dtype", [np.int16, np.int64])
def test_apstar_mask_dtypes(tmp_path, mask_dtype):
    path = write_apstar(tmp_path / "apStar-mask.fits", mask_dtype=mask_dtype, bad_pixels=10)
    spectrum = read_spectrum(path)
    assert spectrum.mask.dtype == np.int64
    assert np.all(spectrum.mask[:10] == 1) and np.all(spectrum.mask[10:] == 0)
    assert spectrum.bad[:10].all() and not spectrum.bad[10:].any()


@pytest.mark.parametrize("wcs_in_primary", [False, True])
def test_apstar_wavelength_from_hdu1_or_primary_header(tmp_path, wcs_in_primary):
    path = write_apstar(tmp_path / "apStar-wcs.fits", wcs_in_primary=wcs_in_primary)
    with fits.open(path) as hdus:
        assert ("CRVAL1" in hdus[0].header) is wcs_in_primary
        assert ("CRVAL1" in hdus[1].header) is not wcs_in_primary
    spectrum = read_spectrum(path)
    assert spectrum.wavelength[0] == pytest.approx(10**CRVAL1, rel=1e-12)
    assert np.allclose(spectrum.wavelength, apstar_wavelength(APSTAR_PIXELS), rtol=1e-12)
    assert np.all(np.diff(spectrum.wavelength) > 0)


def test_apstar_reference_pixel_other_than_one(tmp_path):
    n, crpix = 50, 11
    path = write_custom_apstar(
        tmp_path / "apStar-crpix.fits", np.ones(n), np.ones(n), np.zeros(n, np.int16), crpix=crpix
    )
    spectrum = read_spectrum(path)
    assert spectrum.wavelength[crpix - 1] == pytest.approx(10**CRVAL1, rel=1e-12)
    assert spectrum.wavelength[0] == pytest.approx(10 ** (CRVAL1 - 10 * CDELT1), rel=1e-12)
    assert np.allclose(spectrum.wavelength, apstar_wavelength(n, crpix=crpix), rtol=1e-12)


def test_apstar_not_named_apstar_is_recognised_by_layout(tmp_path):
    path = write_apstar(tmp_path / "combined-spectrum.fits", nvisits=3)
    spectrum = read_spectrum(path)
    assert spectrum.meta["kind"] == "apStar"
    assert spectrum.flux.size == APSTAR_PIXELS
    assert np.allclose(spectrum.wavelength, apstar_wavelength(APSTAR_PIXELS), rtol=1e-12)


# --- unreadable inputs -------------------------------------------------------------------------


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "apStar-missing.fits"
    with pytest.raises(SpectrumReadError) as raised:
        read_spectrum(path)
    message = str(raised.value)
    assert message.startswith("missing input:")
    assert str(path) in message


def test_random_bytes_name_the_path(tmp_path):
    path = tmp_path / "apStar-garbage.fits"
    path.write_bytes(np.random.default_rng(1).bytes(5000))
    with pytest.raises(SpectrumReadError, match="cannot read") as raised:
        read_spectrum(path)
    assert str(path) in str(raised.value)


@pytest.mark.parametrize("fraction", [0.001, 0.05, 0.5, 0.99])
def test_truncated_apstar_names_the_path(tmp_path, fraction):
    whole = write_apstar(tmp_path / "whole.fits", nvisits=3).read_bytes()
    path = tmp_path / "apStar-truncated.fits"
    path.write_bytes(whole[: int(len(whole) * fraction)])
    with pytest.raises(SpectrumReadError) as raised:
        read_spectrum(path)
    assert str(path) in str(raised.value)
    if fraction >= 0.05:  # its first headers are whole: they say how long the file should be
        assert "the file is truncated: HDU" in str(raised.value)
        assert f"the file has {int(len(whole) * fraction):,} (a copy" in str(raised.value)


@pytest.mark.parametrize(
    ("name", "kept", "said"),
    [
        ("apVisit-r13-5095-55844-128", 20000, "HDU1 needs 63,360 bytes, the file has 20,000"),
        ("apStar-dr17-2M17335483-2753043", 20000, "HDU1 needs 360,000 bytes, the file has 20,000"),
        # Cut in a header: astropy leaves HDU4 out, and the file looks like no known layout.
        ("apVisit-r13-5095-55844-128", 0.3, "it ends inside HDU4's header, 1,728 bytes past HDU3"),
    ],
)
def test_a_truncated_real_file_is_said_to_be_truncated(real_apvisits, tmp_path, name, kept, said):
    data = (REAL_DATA / f"{name}.fits").read_bytes()
    path = tmp_path / f"{name}.fits"
    path.write_bytes(data[: kept if isinstance(kept, int) else int(len(data) * kept)])
    with pytest.raises(SpectrumReadError) as raised:
        read_spectrum(path)
    assert str(raised.value) == (
        f"cannot read {path}: the file is truncated: {said} (a copy or download that stopped "
        "short?)"
    )


@pytest.mark.parametrize(
    "hdus",
    [
        pytest.param(lambda: [fits.PrimaryHDU(np.zeros((10, 10)))], id="primary-image-only"),
        pytest.param(lambda: [fits.PrimaryHDU(), fits.ImageHDU(np.zeros(10))], id="image-no-wcs"),
        pytest.param(
            lambda: [fits.PrimaryHDU(), fits.BinTableHDU.from_columns([fits.Column("A", "E")])],
            id="table",
        ),
    ],
)
def test_unrecognised_fits_layout_is_explained(tmp_path, hdus):
    path = tmp_path / "image.fits"
    fits.HDUList(hdus()).writeto(path)
    with pytest.raises(SpectrumReadError) as raised:
        read_spectrum(path)
    message = str(raised.value)
    assert path.name in message
    # says which layouts it expected, not a bare Python exception
    rest = message.replace(str(path), "").replace(path.name, "")
    assert "apStar" in rest and "apVisit" in rest


# --- unusable pixels ---------------------------------------------------------------------------


def test_non_finite_flux_and_bad_errors_have_zero_ivar(tmp_path):
    flux = np.array([10.0, np.nan, np.inf, -np.inf, 10.0, 10.0, 10.0, 10.0, 10.0])
    error = np.array([2.0, 1.0, 1.0, 1.0, 0.0, -1.0, np.nan, np.inf, 1.0])
    path = write_custom_apstar(tmp_path / "apStar-nan.fits", flux, error, np.zeros(9, np.int16))
    spectrum = read_spectrum(path)
    assert spectrum.ivar.tolist() == [0.25, 0, 0, 0, 0, 0, 0, 0, 1.0]
    assert spectrum.bad.tolist() == [False] + [True] * 7 + [False]
    assert np.all(np.isfinite(spectrum.flux))
    assert spectrum.flux[0] == 10.0


def test_bad_mask_bits_set_bad_and_others_do_not(tmp_path):
    bits = list(range(16))
    mask = np.array([1 << bit for bit in bits] + [0], dtype=np.int32)
    n = mask.size
    path = write_custom_apstar(tmp_path / "apStar-bits.fits", np.ones(n), np.ones(n), mask)
    spectrum = read_spectrum(path)
    assert spectrum.mask.tolist() == mask.tolist()
    expected = [bit in {0, 1, 2, 3, 4, 5, 6, 7, 14} for bit in bits] + [False]
    assert spectrum.bad.tolist() == expected
    assert not spectrum.bad[bits.index(9)]
