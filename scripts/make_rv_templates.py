"""Make astra's built-in RV template set, `astra_cli/data/rv-templates.fits`, from a physical
model: the neural-network emulator of Kurucz APOGEE spectra (unnormalised surface flux) of
El-Badry et al. (2018), MIT licence, Copyright 2018 Kareem El-Badry, shipped in the history of
tingyuansen/The_Payne (commit 7d565bf).

    python scripts/make_rv_templates.py ../shared/data/payne/NN_unnormalized_spectra.npz \
        ../shared/data/payne/NN_normalized_spectra.npz

Templates: FGK and early-M giants and dwarfs (Teff 3600-6800 K, logg 1.0-4.5, [Fe/H] 0.0,
-0.5 and -1.0 with [alpha/Fe] 0.0, +0.15 and +0.3), each continuum-normalised per chip the way
astra normalises the spectra it measures, on the apStar wavelengths (vacuum, log-linear); the
chip gaps, where the network has no pixels, are NaN.

The unnormalised emulator's lines sit about 1.4 km/s to the red of the normalised emulator's
(measured here on FGK dwarfs, which both cover), and real rest-frame apStar spectra agree with
the normalised one to 0.3 km/s: templates straight from the unnormalised emulator measure every
star 1.2-1.5 km/s too blue. The script measures that offset with the normalised emulator (the
second argument) and shifts the templates by it.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from astra_cli.science.ccf import Templates, measure, templates_from_model, write_templates
from astra_cli.science.continuum import normalise
from astra_cli.science.networks import APOGEE_CHIP_PIXELS, Network, read_network
from astra_cli.science.wavelength import (
    APSTAR_CDELT1,
    APSTAR_CRVAL1,
    APSTAR_NPIX,
    apstar_wavelength,
    doppler_factor,
)

OUTPUT = Path(__file__).resolve().parent.parent / "astra_cli" / "data" / "rv-templates.fits"
TEFF = (3600.0, 4000.0, 4400.0, 4800.0, 5200.0, 5600.0, 6000.0, 6400.0, 6800.0)
LOGG = {"giant": 1.0, "red clump": 2.5, "subgiant": 3.5, "dwarf": 4.5}
ABUNDANCES = ((0.0, 0.0), (-0.5, 0.15), (-1.0, 0.3))
CALIBRATION_DWARFS = ((5000.0, 4.5, 0.0, 0.0), (5800.0, 4.3, -0.3, 0.0), (4500.0, 4.7, 0.1, 0.0))
"""Labels where both emulators are trained (FGK dwarfs): their zero points are compared here."""


def physical(teff: float, logg: float) -> bool:
    """Stars that exist: giants below 5200 K, subgiants 4800-6000 K, dwarfs from 4000 K."""
    if logg <= 2.5:
        return teff <= 5200.0
    if logg < 4.0:
        return 4800.0 <= teff <= 6000.0
    return teff >= 4000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("network", type=Path, help="NN_unnormalized_spectra.npz")
    parser.add_argument("reference", type=Path, help="NN_normalized_spectra.npz (zero point)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()

    network = read_network(args.network)
    offset = zero_point(network, args.reference)
    print(f"the unnormalised emulator's lines are {offset:+.3f} km/s from the normalised one's")
    labels = np.array(
        [
            (teff, logg, fe_h, alpha_fe)
            for teff, logg, (fe_h, alpha_fe) in itertools.product(TEFF, LOGG.values(), ABUNDANCES)
            if physical(teff, logg)
        ]
    )
    labels = np.clip(labels, network.lower, network.upper)
    flux = np.full((len(labels), APSTAR_NPIX), np.nan)
    pixels = np.concatenate([np.arange(a, b) for a, b in APOGEE_CHIP_PIXELS])
    surface = at_rest(network, network.spectra(labels), offset)
    wavelength = network.wavelength
    ivar = np.full(surface.shape, 1e4) / np.median(surface, axis=1, keepdims=True) ** 2
    normalised, _ = normalise(wavelength, surface, ivar)
    flux[:, pixels] = normalised
    write_templates(
        Templates(
            flux.astype(np.float32),
            APSTAR_CRVAL1,
            APSTAR_CDELT1,
            dict(zip(("teff", "logg", "fe_h", "alpha_fe"), labels.T, strict=True)),
        ),
        args.output,
        origin="the Kurucz APOGEE emulator of El-Badry et al. (2018), MIT licence",
    )
    print(f"wrote {len(labels)} templates, shifted by {-offset:+.3f} km/s: {args.output}")


def zero_point(network: Network, reference: Path) -> float:
    """Mean velocity of the unnormalised emulator's spectra measured against templates from the
    normalised one, on dwarfs both are trained on."""
    templates = templates_from_model(reference)
    wavelength = apstar_wavelength()
    pixels = np.searchsorted(wavelength, network.wavelength - 1e-6)
    velocities = []
    for labels in CALIBRATION_DWARFS:
        flux = np.zeros(wavelength.size)
        ivar = np.zeros(wavelength.size)
        spectrum = network.spectra([labels])[0]
        flux[pixels], ivar[pixels] = spectrum, 1e4 / np.median(spectrum) ** 2
        velocities.append(measure(templates, wavelength, flux, ivar, continuum_order=4)["v_rad"])
    return float(np.mean(velocities))


def at_rest(network: Network, spectra: np.ndarray, offset: float) -> np.ndarray:
    """The spectra with their lines moved back by `offset` km/s, chip by chip."""
    shifted = np.empty_like(spectra)
    factor = doppler_factor(offset)
    start = 0
    for first, last in APOGEE_CHIP_PIXELS:
        chip = slice(start, start + last - first)
        wavelength = network.wavelength[chip]
        for i, spectrum in enumerate(spectra):
            shifted[i, chip] = np.interp(wavelength * factor, wavelength, spectrum[chip])
        start += last - first
    return shifted


if __name__ == "__main__":
    main()
