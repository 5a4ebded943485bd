"""`payne`: stellar labels and radial velocity by fitting a neural-network emulator of model
spectra (The Payne, Ting et al. 2019) to each spectrum.

The network is the expensive set-up: read once per group per worker, with the lattice of
spectra the fit starts from.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from astra_cli.methods.base import Method, Param
from astra_cli.methods.continuum_option import continuum_order_option
from astra_cli.methods.units import label_units

if TYPE_CHECKING:
    from astra_cli.io.spectra import Spectrum


class Payne(Method):
    """Labels and v_rad by fitting a neural-network emulator of model spectra (The Payne).

    Labels, radial velocity and a Chebyshev continuum per chip are fitted together by
    Levenberg-Marquardt with the network's exact Jacobian, from the best 2 of a lattice of the
    network's spectra, the first velocity from cross-correlating with them. Works on apStar and
    apVisit (observed-frame) spectra. Columns: one per network label and its error (e_<label>),
    v_rad and e_v_rad (km/s), chi2, rchi2, n_pixels and flags. Errors are marginalised over the
    continuum and scaled by sqrt(rchi2) when it exceeds 1.
    """

    flags: ClassVar[dict[int, str]] = {
        1: "a label ends at the edge of the network's training range: the star may lie outside it",
        2: "the fit did not converge",
        4: "reduced chi-square above 30: the network does not describe the spectrum",
    }

    network = Param(
        type=Path,
        example="network.npz",
        help="Network (.npz): The Payne's per-pixel layout (El-Badry et al. 2018) or dense "
        "layout (Ting et al. 2019).",
    )
    labels = Param(
        "",
        help="Names of the network's labels, comma-separated, when its file does not name them "
        "(the per-pixel networks of 4 and 5 labels are known).",
    )
    continuum_order = continuum_order_option(3, "Chebyshev")

    def _names(self) -> tuple[str, ...] | None:
        names = tuple(name.strip().lower() for name in self.labels.split(",") if name.strip())
        return names or None

    def column_units(self) -> dict[str, str]:
        from astra_cli.science.networks import read_network

        return label_units(read_network(self.network, self._names()).label_names)

    def validate(self) -> None:
        from astra_cli.science.networks import read_network

        read_network(self.network, self._names())

    def load_model(self) -> Any:
        from astra_cli.science.networks import read_network
        from astra_cli.science.payne import PayneModel

        return PayneModel.from_network(read_network(self.network, self._names()))

    def analyse(self, model: Any, spectrum: Spectrum) -> dict[str, Any]:
        import numpy as np

        from astra_cli.science.payne import fit_spectrum

        return fit_spectrum(
            model,
            spectrum.wavelength,
            spectrum.flux,
            np.where(spectrum.bad, 0.0, spectrum.ivar),
            continuum_order=self.continuum_order,
        )
