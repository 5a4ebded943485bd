"""`cannon`: stellar labels from a trained Cannon model (train one with `astra train cannon`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from astra_cli.methods.base import Method, Param, Upstream
from astra_cli.methods.restframe import (
    VELOCITY_FLAGS,
    frame_flags,
    rest_wavelength,
    rv_templates_option,
    velocity_option,
    velocity_source,
)
from astra_cli.methods.units import label_units

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np

    from astra_cli.io.spectra import Spectrum


class Cannon(Method):
    """Labels by fitting a trained Cannon model (Ness et al. 2015) to each spectrum.

    Each spectrum is continuum-normalised as the training spectra were, then the labels that
    minimise chi-square against the model's quadratic-in-labels spectra are found for the whole
    chunk at once. Observed-frame spectra (apVisit) are moved to the rest frame by their v_rad,
    from a manifest column or from `rv`, run first where the store has none. Columns: one per
    label and its error (e_<label>), chi2, rchi2, n_pixels and flags.
    """

    inputs: ClassVar[dict[str, type]] = {"v_rad": float}
    flags: ClassVar[dict[int, str]] = {
        2: "the fit did not converge",
        **VELOCITY_FLAGS,
    }

    model = Param(
        type=Path,
        example="cannon.fits",
        help="Cannon model (FITS) written by `astra train cannon`.",
    )
    velocity = velocity_option()
    rv_templates = rv_templates_option()

    def upstream(self) -> list[Upstream]:
        return velocity_source(self.velocity, self.rv_templates)

    def column_units(self) -> dict[str, str]:
        from astra_cli.science.cannon import read_cannon

        return label_units(read_cannon(self.model).label_names)

    def validate(self) -> None:
        from astra_cli.science.cannon import check_cannon

        check_cannon(self.model)

    def load_model(self) -> Any:
        from astra_cli.science.cannon import read_cannon

        return read_cannon(self.model)

    def analyse_batch(self, model: Any, spectra: Sequence[Spectrum]) -> list[dict[str, Any]]:
        from astra_cli.science.cannon import fit

        flux, ivar = normalised_on_model_grid(model, spectra)
        results = fit(model, flux, ivar)
        for spectrum, result in zip(spectra, results, strict=True):
            result["flags"] = int(result["flags"]) | frame_flags(spectrum)
        return results


def normalised_on_model_grid(
    model: Any, spectra: Sequence[Spectrum]
) -> tuple[np.ndarray, np.ndarray]:
    """Continuum-normalised flux and ivar (B, P) of spectra on the model's wavelengths."""
    import numpy as np

    from astra_cli.science.continuum import normalise
    from astra_cli.science.wavelength import resample

    target = model.wavelength
    flux = np.empty((len(spectra), target.size))
    ivar = np.empty_like(flux)
    for i, spectrum in enumerate(spectra):
        good_ivar = np.where(spectrum.bad, 0.0, spectrum.ivar)
        wavelength = rest_wavelength(spectrum)
        if wavelength.shape == target.shape and np.allclose(wavelength, target):
            flux[i], ivar[i] = spectrum.flux, good_ivar
        else:
            flux[i], ivar[i] = resample(wavelength, spectrum.flux, good_ivar, target)
    return normalise(target, flux, ivar, order=model.continuum_order)
