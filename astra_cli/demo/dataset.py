"""The demo data set: APOGEE-shaped files with known labels and velocities, and the models that
the science methods need, written under one directory.

    DIR/sas/dr17/apogee/spectro/redux/dr17/stars/apo25m/FIELD/apStar-dr17-OBJ.fits
        test stars, rest frame (as the pipeline writes apStar files), one visit each
    DIR/sas/dr17/apogee/spectro/redux/dr17/visit/apo25m/FIELD/PLATE/MJD/apVisit-...fits
        one visit of each test star, in the observed frame: shifted by its radial velocity
    DIR/sas/.../stars/apo25m/TRAIN/...     the Cannon's training stars (a different set)
    DIR/models/grid.fits, grid.ferre       the model grid, astra FITS and FERRE formats
    DIR/models/cannon.fits                 a Cannon model trained on the training stars
    DIR/models/rv-templates.fits           RV templates
    DIR/stars.csv, visits.csv              manifests of the test stars and visits, with truth
                                           (visits.csv names each visit's star in `star`;
                                           the true velocity is `true_v_rad`, since a
                                           `v_rad` column gives grid and cannon the velocity)
    DIR/training.csv                       the training stars and their labels

Labels of test stars fall between grid nodes across the grid's interior.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from astra_cli.demo.synthesis import LABEL_NAMES, normalised_flux
from astra_cli.io.grids import GridData, write_grid
from astra_cli.io.grids.model import LOGW_LOG10, Section
from astra_cli.io.identifiers import IdentifierResolver
from astra_cli.science.ccf import Templates, write_templates
from astra_cli.science.wavelength import (
    APSTAR_CDELT1,
    APSTAR_CRVAL1,
    CHIPS,
    apstar_wavelength,
    chip_index,
    doppler_factor,
)
from astra_cli.training import LabelledSpectra, train_cannon

RELEASE, APRED, TELESCOPE = "dr17", "dr17", "apo25m"
FIELDS = ("120+12", "000+14", "218-04", "M67")
GRID_LLIMITS = (4000.0, 1.0, -1.5)
GRID_STEPS = (250.0, 0.5, 0.25)
GRID_SHAPE = (11, 9, 9)
INTERIOR = ((4250.0, 6250.0), (1.5, 4.5), (-1.25, 0.25))
"""Where test labels are drawn: inside the grid by at least one step."""
TRAINING_RANGE = ((4000.0, 6500.0), (1.0, 5.0), (-1.5, 0.5))
TEMPLATE_LABELS = [
    (teff, logg, m_h)
    for teff in (4250, 5000, 5750, 6250)
    for logg in (2.0, 4.0)
    for m_h in (-1.0, 0.0)
]
VELOCITY_RANGE = (-300.0, 300.0)
MANIFEST_NAMES = {"v_rad": "true_v_rad"}
"""Truth columns named otherwise in the manifests: a `v_rad` column would be read as the
velocity that grid and cannon move observed-frame spectra by, handing them the answer."""
VISIT_PIXELS = 4096
BAD_PIXEL_FRACTION = 0.003
TRAINING_SNR = 200.0


@dataclass(frozen=True)
class DemoConfig:
    n_stars: int = 100
    n_train: int = 300
    snr: float = 100.0
    seed: int = 42


@dataclass
class DemoFiles:
    directory: Path
    data_root: Path
    grid_fits: Path
    grid_ferre: Path
    cannon_model: Path
    templates: Path
    stars_manifest: Path
    visits_manifest: Path
    training_manifest: Path
    stars: list[dict] = field(default_factory=list)
    visits: list[dict] = field(default_factory=list)


def write_demo(directory: str | Path, config: DemoConfig = DemoConfig()) -> DemoFiles:
    """Write the whole demo data set; returns where everything is and the truth."""
    directory = Path(directory)
    models = directory / "models"
    models.mkdir(parents=True, exist_ok=True)
    files = DemoFiles(
        directory=directory,
        data_root=directory / "sas",
        grid_fits=models / "grid.fits",
        grid_ferre=models / "grid.ferre",
        cannon_model=models / "cannon.fits",
        templates=models / "rv-templates.fits",
        stars_manifest=directory / "stars.csv",
        visits_manifest=directory / "visits.csv",
        training_manifest=directory / "training.csv",
    )
    rng = np.random.default_rng(config.seed)
    resolver = IdentifierResolver(files.data_root)
    wavelength = apstar_wavelength()

    grid = model_grid(wavelength)
    write_grid(grid, files.grid_fits, "astra")
    write_grid(grid, files.grid_ferre, "ferre-ascii")
    template_labels = np.array(TEMPLATE_LABELS, dtype=float)
    write_templates(
        Templates(
            normalised_flux(wavelength, template_labels), APSTAR_CRVAL1, APSTAR_CDELT1,
            dict(zip(LABEL_NAMES, template_labels.T, strict=True)),
        ),
        files.templates,
    )  # fmt: skip

    labels = _draw_labels(rng, INTERIOR, config.n_stars)
    velocities = rng.uniform(*VELOCITY_RANGE, config.n_stars)
    for index, (star_labels, velocity) in enumerate(zip(labels, velocities, strict=True)):
        identifier = _identifier(index, rng)
        observation = resolver.resolve(identifier)
        write_apstar(
            Path(observation.path), star_labels, config.snr, rng, identifier["obj"], velocity
        )
        truth = dict(zip(LABEL_NAMES, map(float, star_labels), strict=True))
        files.stars.append({**identifier, **truth, "v_rad": float(velocity), "snr": config.snr})
        visit = {key: value for key, value in identifier.items() if key != "obj"}
        visit.update(
            plate=str(9000 + index // 300), mjd=str(59000 + index % 7), fiber=str(1 + index % 300)
        )
        write_apvisit(
            Path(resolver.resolve(visit).path),
            star_labels,
            velocity,
            config.snr,
            rng,
            identifier["obj"],
        )
        files.visits.append(
            {
                **visit,
                "star": identifier["obj"],  # the apStar obj; apVisit identifiers have none
                **truth,
                "v_rad": float(velocity),
                "snr": config.snr,
            }
        )

    training_labels = _draw_labels(rng, TRAINING_RANGE, config.n_train)
    training_rows = []
    for index, star_labels in enumerate(training_labels):
        identifier = {**_identifier(index, rng), "field": "TRAIN"}
        path = Path(resolver.resolve(identifier).path)
        write_apstar(path, star_labels, TRAINING_SNR, rng, identifier["obj"], 0.0)
        training_rows.append(
            {"path": str(path), **dict(zip(LABEL_NAMES, map(float, star_labels), strict=True))}
        )

    training_paths = [str(row["path"]) for row in training_rows]
    training = LabelledSpectra(training_paths, training_labels, LABEL_NAMES)
    train_cannon(training, files.cannon_model)
    _write_csv(files.stars_manifest, files.stars)
    _write_csv(files.visits_manifest, files.visits)
    _write_csv(files.training_manifest, training_rows)
    return files


def model_grid(wavelength: np.ndarray) -> GridData:
    """The demo's grid on the apStar wavelengths (log-linear, vacuum), one section."""
    llimits, steps = np.array(GRID_LLIMITS), np.array(GRID_STEPS)
    axes = np.meshgrid(
        *(llimits[d] + steps[d] * np.arange(GRID_SHAPE[d]) for d in range(3)), indexing="ij"
    )
    nodes = np.stack([axis.ravel() for axis in axes], axis=1)
    return GridData(
        path="",
        format="astra demo",
        labels=LABEL_NAMES,
        llimits=llimits,
        steps=steps,
        shape=GRID_SHAPE,
        sections=(Section(0, wavelength.size, (APSTAR_CRVAL1, APSTAR_CDELT1), LOGW_LOG10),),
        values=normalised_flux(wavelength, nodes).astype(np.float32),
        vacuum=True,
        metadata={"ID": "astra demo grid"},
    )


def write_apstar(
    path: Path,
    labels: np.ndarray,
    snr: float,
    rng: np.random.Generator,
    obj: str,
    velocity: float,
) -> None:
    """An apStar file: rest frame, one visit (a single row), flux/error/mask in HDUs 1-3."""
    from astropy.io import fits

    wavelength = apstar_wavelength()
    flux, error, mask = _observe(wavelength, wavelength, labels, snr, rng)
    primary = fits.PrimaryHDU()
    primary.header.update({
        "OBJID": obj, "APOGEEID": obj, "TELESCOP": TELESCOPE, "NVISITS": 1, "SNR": snr,
        "VHELIO": velocity, "ORIGIN": "astra demo (synthetic)",
    })  # fmt: skip
    wcs = {
        "CRVAL1": APSTAR_CRVAL1,
        "CDELT1": APSTAR_CDELT1,
        "CRPIX1": 1,
        "CTYPE1": "LOG-LINEAR",
        "DC-FLAG": 1,
    }
    hdus = [primary]
    for name, data in (
        ("FLUX", flux.astype(np.float32)),
        ("ERROR", error.astype(np.float32)),
        ("MASK", mask),
    ):
        hdu = fits.ImageHDU(data, name=name)
        hdu.header.update(wcs)
        hdus.append(hdu)
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList(hdus).writeto(path, overwrite=True)


def write_apvisit(
    path: Path,
    labels: np.ndarray,
    velocity: float,
    snr: float,
    rng: np.random.Generator,
    obj: str,
) -> None:
    """An apVisit file: 3 chips x 4096 pixels, wavelength decreasing along each row (red chip
    first), observed frame."""
    from astropy.io import fits

    rows = [np.linspace(end - 2.0, start + 2.0, VISIT_PIXELS) for start, end in reversed(CHIPS)]
    wavelength = np.stack(rows)
    flux, error, mask = _observe(
        wavelength.ravel(), wavelength.ravel() / doppler_factor(velocity), labels, snr, rng
    )
    primary = fits.PrimaryHDU()
    primary.header.update({
        "OBJID": obj, "TELESCOP": TELESCOPE, "SNR": snr, "VREL": velocity,
        "ORIGIN": "astra demo (synthetic)",
    })  # fmt: skip
    shape = wavelength.shape
    hdus = [
        primary,
        fits.ImageHDU(flux.reshape(shape).astype(np.float32), name="FLUX"),
        fits.ImageHDU(error.reshape(shape).astype(np.float32), name="ERROR"),
        fits.ImageHDU(mask.reshape(shape), name="MASK"),
        fits.ImageHDU(wavelength, name="WAVELENGTH"),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList(hdus).writeto(path, overwrite=True)


def _observe(
    observed: np.ndarray,
    rest: np.ndarray,
    labels: np.ndarray,
    snr: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flux, error and mask of a star seen at `observed` wavelengths (rest-frame `rest`):
    lines x a smooth continuum that differs per chip, Gaussian noise at `snr`, a few bad pixels
    (flagged BADPIX, with garbage flux) and nothing in the chip gaps."""
    chips = chip_index(observed)
    x = (observed - 16000.0) / 1000.0
    tilt = rng.normal(0.0, 0.1)
    throughput = np.array([0.9, 1.0, 1.08, 0.0])[chips]
    continuum = 800.0 * throughput * (1.0 + tilt * x + 0.08 * x**2)
    flux = normalised_flux(rest, np.atleast_2d(labels))[0] * continuum
    error = np.where(chips >= 0, continuum / snr, 0.0)
    flux += rng.normal(size=flux.size) * error
    mask = np.zeros(flux.size, dtype=np.int16)
    bad = (rng.random(flux.size) < BAD_PIXEL_FRACTION) & (chips >= 0)
    mask[bad] = 1
    flux[bad] = rng.choice([0.0, 5e4], bad.sum())
    return flux, error, mask


def _draw_labels(
    rng: np.random.Generator, ranges: Sequence[tuple[float, float]], count: int
) -> np.ndarray:
    return np.column_stack([rng.uniform(low, high, count) for low, high in ranges])


def _identifier(index: int, rng: np.random.Generator) -> dict[str, str]:
    ra, dec = rng.uniform(0, 24), rng.uniform(-30, 80)
    hours, minutes, seconds = int(ra), int(ra * 60) % 60, (ra * 3600) % 60
    sign = "+" if dec >= 0 else "-"
    dd, dm, ds = int(abs(dec)), int(abs(dec) * 60) % 60, (abs(dec) * 3600) % 60
    obj = f"2M{hours:02d}{minutes:02d}{seconds * 100:04.0f}{sign}{dd:02d}{dm:02d}{ds * 10:03.0f}"
    return {"release": RELEASE, "apred": APRED, "telescope": TELESCOPE,
            "field": FIELDS[index % len(FIELDS)], "obj": obj}  # fmt: skip


def _write_csv(path: Path, rows: list[dict]) -> None:
    renamed = [{MANIFEST_NAMES.get(key, key): value for key, value in row.items()} for row in rows]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(renamed[0]))
        writer.writeheader()
        writer.writerows(renamed)
