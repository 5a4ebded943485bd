"""`rv`: radial velocities by cross-correlation against a set of template spectra."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from astra_cli.methods.base import Method, Param
from astra_cli.methods.continuum_option import continuum_order_option
from astra_cli.methods.units import label_units

if TYPE_CHECKING:
    from astra_cli.io.spectra import Spectrum


class RadialVelocity(Method):
    """Radial velocity by cross-correlation with template spectra on a log-wavelength grid.

    Works on apStar and on apVisit (observed-frame) spectra. The best template is the one with
    the highest correlation peak; the peak is located to a fraction of a pixel. Columns: v_rad
    and e_v_rad (km/s), ccf_peak (correlation at the peak, 0-1), ccf_second_peak (the highest
    other maximum), ccf_fwhm (km/s), template (index) and the best template's labels
    (template_<label>), n_pixels and flags.
    """

    flags: ClassVar[dict[int, str]] = {
        1: "the correlation peak is at the edge of the +-1000 km/s search",
        2: "no positive correlation peak",
        4: "the peak is below 0.1: the templates do not match the spectrum (measured: 0.04-0.07 "
        "for wrong templates on real stars, 0.14-0.84 for the built-in ones)",
        8: "a second peak at least 0.8 of the first: the velocity is ambiguous",
    }

    version = "2"

    templates = Param(
        None,
        type=Path,
        help="Templates: an astra RV template set (FITS), or any grid or network to sample "
        "templates from. Default: the built-in set, 66 FGKM giants and dwarfs made from a "
        "physical model (El-Badry et al. 2018's Kurucz APOGEE emulator).",
    )
    continuum_order = continuum_order_option(4, "polynomial")

    def column_units(self) -> dict[str, str]:
        return label_units(["v_rad"])

    def validate(self) -> None:
        from astra_cli.science.ccf import check_model

        if self.templates is not None:
            check_model(self.templates)

    def load_model(self) -> Any:
        from astra_cli.science.ccf import load_templates

        return load_templates(self.templates)

    def analyse(self, model: Any, spectrum: Spectrum) -> dict[str, Any]:
        import numpy as np

        from astra_cli.science.ccf import measure

        return measure(
            model,
            spectrum.wavelength,
            spectrum.flux,
            np.where(spectrum.bad, 0.0, spectrum.ivar),
            continuum_order=self.continuum_order,
        )
