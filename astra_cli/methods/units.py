"""Units of result columns, for exported tables (FITS TUNIT, ECSV and VOTable units).

Labels are known by the names APOGEE's grids and networks give them; logarithmic quantities
(logg, abundances) have no unit FITS can state, and are left without one.
"""

from __future__ import annotations

from collections.abc import Iterable

LABEL_UNITS = {
    "teff": "K", "t_eff": "K",
    "vmicro": "km/s", "vmic": "km/s", "vturb": "km/s", "vmacro": "km/s", "vmac": "km/s",
    "vsini": "km/s", "vbroad": "km/s", "v_rad": "km/s", "v_rel": "km/s",
}  # fmt: skip
"""Result column of a label -> its unit, as astropy spells it."""


def label_units(columns: Iterable[str]) -> dict[str, str]:
    """The units of these columns and of their errors (`e_teff` as `teff`)."""
    found = {}
    for column in columns:
        unit = LABEL_UNITS.get(column)
        if unit is not None:
            found[column] = found[f"e_{column}"] = unit
    return found
