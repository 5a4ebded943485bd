"""Observed-frame spectra for methods that fit at rest (grid, cannon): where their v_rad comes
from, how it moves their wavelengths, and the flags that say when it could not be trusted.

apVisit spectra are in the observed frame; apStar spectra were shifted to rest by the pipeline.
A method that compares with rest-frame models declares `inputs = {"v_rad": float}` and returns
`velocity_source(...)` from `upstream()`: the planner then takes v_rad from a manifest column
or runs `rv` first.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from astra_cli.methods.base import Param, Upstream

if TYPE_CHECKING:
    from astra_cli.io.spectra import Spectrum

FLAG_AT_REST_ASSUMED = 16
"""An observed-frame spectrum fitted without a velocity, as if at rest."""
FLAG_VELOCITY_FLAGGED = 32
"""The v_rad the spectrum was moved by is flagged by the `rv` run that measured it."""

VELOCITY_FLAGS = {
    FLAG_AT_REST_ASSUMED: "an observed-frame (apVisit) spectrum fitted without a velocity, as "
    "if at rest: its labels are likely wrong",
    FLAG_VELOCITY_FLAGGED: "the v_rad the spectrum was moved to rest by came from an rv run "
    "that flagged it",
}
"""The flags of a method that fits observed-frame spectra at rest."""


def velocity_option() -> Param:
    """The `velocity` option: where observed-frame spectra get their v_rad."""
    return Param(
        "rv",
        choices=("rv", "manifest"),
        help="Where observed-frame (apVisit) spectra get their v_rad: rv (a manifest column "
        "v_rad, else `rv`, run first where the store has none), or manifest (the column only; "
        "without it they are fitted as if at rest, and flagged 16).",
    )


def rv_templates_option() -> Param:
    """The `rv_templates` option: the templates of the `rv` run that gives the velocities."""
    return Param(
        None,
        type=Path,
        help="Templates for the `rv` run that gives observed-frame spectra their v_rad "
        "(default: rv's built-in set).",
    )


def velocity_source(velocity: str, templates: Path | None) -> list[Upstream]:
    """v_rad (and rv's flags) from `rv` with these templates, unless the method was told to
    take velocities from the manifest alone."""
    if velocity != "rv":
        return []
    options: dict[str, Any] = {} if templates is None else {"templates": templates}
    return [Upstream("v_rad", "rv", options, flags_column="flags")]


def rest_wavelength(spectrum: Spectrum) -> Any:
    """The spectrum's wavelengths in its rest frame: an observed-frame spectrum's moved by its
    v_rad (when it has one); an apStar spectrum's as they are."""
    from astra_cli.science.wavelength import doppler_factor

    v_rad = spectrum.inputs.get("v_rad")
    if v_rad is None or not spectrum.observed_frame:
        return spectrum.wavelength
    return spectrum.wavelength / doppler_factor(float(v_rad))


def frame_flags(spectrum: Spectrum) -> int:
    """The flags a fit at rest adds for this spectrum's velocity."""
    if not spectrum.observed_frame:
        return 0
    if "v_rad" not in spectrum.inputs:
        return FLAG_AT_REST_ASSUMED
    return FLAG_VELOCITY_FLAGGED if spectrum.inputs.get("v_rad_flags") else 0
