"""Training data-driven models from labelled spectra: read the manifest, read and normalise the
spectra, fit, save. The Cannon is the one model trained here (`astra train cannon`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from astra_cli.errors import UsageError
from astra_cli.io.identifiers import IdentifierResolver
from astra_cli.methods.base import Param
from astra_cli.science.cannon import CannonModel
from astra_cli.vocabulary import StageProgress

MIN_TRAINING_SPECTRA = 20


def _silent(stage: str, done: int, total: int) -> None:
    pass


@dataclass(frozen=True)
class LabelledSpectra:
    paths: list[str]
    labels: np.ndarray
    """(N, D), in the order of `label_names`."""
    label_names: tuple[str, ...]


def read_labelled(
    sources: Sequence[str],
    label_names: Sequence[str],
    *,
    data_root: str | os.PathLike[str] | None = None,
    kind: str | None = None,
    file_format: str | None = None,
    hdu: int | str | None = None,
) -> LabelledSpectra:
    """Spectra and their labels from manifests: observation columns (path or identifier keys)
    and one column per label; every row needs every label."""
    from astra_cli.io.manifest import BadRowsError, read_manifests

    params = {name: Param(type=float, name=name) for name in label_names}
    requests = read_manifests(
        sources, params, IdentifierResolver(data_root), kind=kind, file_format=file_format, hdu=hdu
    )
    if requests.problems:
        raise BadRowsError(requests.problems)
    paths, labels, unlabelled, missing = [], [], 0, set()
    for options, observations in requests.by_options.items():
        values = dict(options)
        if len(values) < len(label_names):
            unlabelled += len(observations)
            missing |= set(label_names) - set(values)
            continue
        for observation in observations:
            paths.append(observation.path)
            labels.append([values[name] for name in label_names])
    where = ", ".join(sources)
    if unlabelled:
        raise UsageError(
            f"{where}: {unlabelled} row(s) have no value of {', '.join(sorted(missing))}; "
            "every training spectrum needs every label"
        )
    if len(paths) < MIN_TRAINING_SPECTRA:
        raise UsageError(
            f"{where}: {len(paths)} training spectra; the Cannon needs at least "
            f"{MIN_TRAINING_SPECTRA} (and many more than its {_terms(len(label_names))} terms)"
        )
    return LabelledSpectra(paths, np.array(labels, dtype=float), tuple(label_names))


def train_cannon(
    training: LabelledSpectra,
    output: str | Path,
    *,
    continuum_order: int = 4,
    progress: StageProgress = _silent,
) -> CannonModel:
    """Read and normalise the spectra, train the Cannon, write the model to `output`.

    The time goes into reading the spectra and fitting every pixel once per candidate
    scatter; `progress` hears of both, step by step."""
    from astra_cli.io.spectra import SpectrumReadError, read_spectrum
    from astra_cli.science import cannon
    from astra_cli.science.continuum import normalise

    spectra = []
    reading = f"reading {len(training.paths)} spectra"
    progress(reading, 0, len(training.paths))
    for count, path in enumerate(training.paths, start=1):
        try:
            spectra.append(read_spectrum(path))
        except SpectrumReadError as error:
            raise UsageError(f"training spectrum {error}") from None
        progress(reading, count, len(training.paths))
    wavelength = spectra[0].wavelength
    for spectrum in spectra:
        if spectrum.wavelength.shape != wavelength.shape or not np.allclose(
            spectrum.wavelength, wavelength
        ):
            raise UsageError(
                f"training spectrum {spectrum.path} is on another wavelength grid than "
                f"{spectra[0].path}; train on apStar files (one common grid)"
            )
    flux = np.stack([spectrum.flux for spectrum in spectra])
    ivar = np.stack([np.where(spectrum.bad, 0.0, spectrum.ivar) for spectrum in spectra])
    progress("normalising", 0, 1)
    normalised, weight = normalise(wavelength, flux, ivar, order=continuum_order)
    progress("normalising", 1, 1)
    trials = len(cannon.SCATTER_GRID)
    fitting = f"fitting {flux.shape[1]} pixels at {trials} trial scatters"
    progress(fitting, 0, trials)
    model = cannon.train(
        training.labels,
        normalised,
        weight,
        label_names=training.label_names,
        wavelength=wavelength,
        continuum_order=continuum_order,
        progress=lambda done, total: progress(fitting, done, total),
    )
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    # Written beside and moved into place: an invocation using the old model never reads a
    # half-written file.
    partial = output.with_name(f".{output.name}.partial")
    cannon.write_cannon(model, partial)
    os.replace(partial, output)
    return model


def _terms(dims: int) -> int:
    return 1 + dims + dims * (dims + 1) // 2
