"""`snr`: signal-to-noise, bad-pixel fraction and median flux of each spectrum.

The quick health check run before any science method: it needs no model, so its `load_model`
is the default no-op, and it shows the batch machinery at its cheapest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from astra_cli.methods.base import Method

if TYPE_CHECKING:
    from astra_cli.io.spectra import Spectrum


class SignalToNoise(Method):
    """Median S/N, fraction of bad pixels and median flux of each spectrum.

    S/N is the median of flux x sqrt(ivar) over usable pixels; bad pixels are those with any
    of APOGEE_PIXMASK bits 0-7 or 14 set.
    """

    def analyse(self, model: Any, spectrum: Spectrum) -> dict[str, Any]:
        import numpy as np

        from astra_cli.io.spectra import BAD_PIXEL_BITS

        good = ~spectrum.bad
        n_good = int(good.sum())
        if n_good == 0:
            raise ValueError(f"{spectrum.path}: every pixel is masked or has zero inverse variance")
        flux = spectrum.flux[good]
        return {
            "snr": float(np.median(flux * np.sqrt(spectrum.ivar[good]))),
            "bad_pixel_fraction": float(np.mean((spectrum.mask & BAD_PIXEL_BITS) != 0)),
            "median_flux": float(np.median(flux)),
            "n_pixels": n_good,
        }
