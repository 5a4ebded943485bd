"""Neural-network emulators of model spectra, The Payne's way: labels in, a spectrum out, with
the exact derivatives by the labels (what a fit needs).

Two layouts, both `.npz` archives of plain arrays (read with allow_pickle=False), labels scaled
as s = (x - x_min) / (x_max - x_min) - 0.5:

per-pixel (El-Badry et al. 2018; the networks in The Payne's early history)
    for every pixel p, one hidden layer of H sigmoid units: `w_array_0` (P, H, L),
    `b_array_0` (P, H), `w_array_1` (P, H), `b_array_1` (P);
    flux_p = sum_j w1[p, j] sigmoid(sum_k w0[p, j, k] s_k + b0[p, j]) + b1[p].
dense (Ting et al. 2019)
    two hidden layers of H units with a leaky ReLU (slope 0.01): `w_array_0` (H, L),
    `b_array_0` (H), `w_array_1` (H, H), `b_array_1` (H), `w_array_2` (P, H), `b_array_2` (P).

Both hold `x_min`, `x_max` (L). The wavelengths (vacuum Angstrom) are an array `wavelength` (P)
in the archive; a network without one is taken for The Payne's APOGEE layout only when it has
its 7,214 pixels (apStar pixels 322-3241, 3648-6047, 6412-8305: the chips without their gaps).
Label names are an array `label_names` in the archive, or given by the user; the El-Badry
networks' (4 or 5 labels, none named in their files) are known.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from astra_cli.io.modelfiles import ModelFileError, file_kind, load_npz
from astra_cli.science.wavelength import APSTAR_CDELT1, APSTAR_CRVAL1

APOGEE_CHIP_PIXELS = ((322, 3242), (3648, 6048), (6412, 8306))
"""The apStar pixels of The Payne's 7,214-pixel APOGEE spectra: each chip without its gaps."""
LEAKY_SLOPE = 0.01
EL_BADRY_LABELS = {
    4: ("teff", "logg", "fe_h", "alpha_fe"),
    5: ("teff", "logg", "fe_h", "alpha_fe", "vmacro"),
}
"""Label names of the per-pixel networks of El-Badry et al. (2018), in their order."""


def apogee_payne_wavelength() -> np.ndarray:
    pixels = np.concatenate([np.arange(a, b) for a, b in APOGEE_CHIP_PIXELS])
    return np.asarray(10.0 ** (APSTAR_CRVAL1 + APSTAR_CDELT1 * pixels))


@dataclass(frozen=True)
class Network:
    """A spectral emulator: `evaluate(labels)` is the spectrum and its Jacobian."""

    kind: str
    """"per-pixel" or "dense"."""
    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    x_min: np.ndarray
    x_max: np.ndarray
    wavelength: np.ndarray
    label_names: tuple[str, ...]
    path: str = ""

    @property
    def lower(self) -> np.ndarray:
        return self.x_min

    @property
    def upper(self) -> np.ndarray:
        return self.x_max

    @property
    def npix(self) -> int:
        return int(self.wavelength.size)

    def _scaled(self, labels: np.ndarray) -> np.ndarray:
        return (np.asarray(labels, dtype=float) - self.x_min) / (self.x_max - self.x_min) - 0.5

    def spectra(self, labels: np.ndarray) -> np.ndarray:
        """Spectra (B, P) of label vectors (B, L)."""
        s = np.atleast_2d(self._scaled(labels))
        if self.kind == "per-pixel":
            w0, w1 = self.weights
            b0, b1 = self.biases
            inside = np.einsum("pjk,bk->bpj", w0, s) + b0
            return np.einsum("pj,bpj->bp", w1, _sigmoid(inside)) + b1
        w0, w1, w2 = self.weights
        b0, b1, b2 = self.biases
        hidden = _leaky(s @ w0.T + b0)
        hidden = _leaky(hidden @ w1.T + b1)
        return np.asarray(hidden @ w2.T + b2)

    def evaluate(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The spectrum (P) at one label vector and its derivatives by each label (P, L)."""
        s = self._scaled(labels)
        scale = 1.0 / (self.x_max - self.x_min)
        if self.kind == "per-pixel":
            w0, w1 = self.weights
            b0, b1 = self.biases
            sigma = _sigmoid(np.einsum("pjk,k->pj", w0, s) + b0)
            flux = np.einsum("pj,pj->p", w1, sigma) + b1
            slope = w1 * sigma * (1.0 - sigma)  # (P, H)
            return flux, np.einsum("pj,pjk->pk", slope, w0) * scale
        w0, w1, w2 = self.weights
        b0, b1, b2 = self.biases
        a0 = w0 @ s + b0
        h0 = _leaky(a0)
        a1 = w1 @ h0 + b1
        flux = w2 @ _leaky(a1) + b2
        # d flux / d s = w2 diag(leaky'(a1)) w1 diag(leaky'(a0)) w0
        inner = (w1 * _leaky_slope(a0)) @ w0  # (H, L)
        return flux, (w2 * _leaky_slope(a1)) @ inner * scale


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def _leaky(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, LEAKY_SLOPE * x)


def _leaky_slope(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, 1.0, LEAKY_SLOPE)


def read_network(
    path: str | os.PathLike[str], label_names: tuple[str, ...] | None = None
) -> Network:
    """A network from an .npz; ModelFileError names the file and what is wrong."""
    if file_kind(path) != "npz":
        raise ModelFileError(f"{path} is not an .npz archive; networks are .npz of plain arrays")
    arrays = load_npz(path)
    try:
        return _network(path, arrays, label_names)
    except KeyError as missing:
        raise ModelFileError(
            f"network {path} has no array {missing}: not a per-pixel or dense network "
            "(README, 'Model files')"
        ) from None


def is_network(path: str | os.PathLike[str]) -> bool:
    """Whether a model file is an .npz holding a network's arrays (rather than a grid)."""
    if file_kind(path) != "npz":
        return False
    with np.load(path, allow_pickle=False) as archive:
        return "w_array_0" in archive.files


def _network(
    path: str | os.PathLike[str], arrays: dict[str, np.ndarray], label_names: tuple[str, ...] | None
) -> Network:
    x_min = np.asarray(arrays["x_min"], dtype=float)
    x_max = np.asarray(arrays["x_max"], dtype=float)
    labels = x_min.size
    if x_min.shape != x_max.shape or x_min.ndim != 1 or not np.all(x_max > x_min):
        raise ModelFileError(f"network {path}: x_min and x_max must be L values with x_max > x_min")
    if "w_array_2" in arrays:
        kind = "dense"
        weights = tuple(np.asarray(arrays[f"w_array_{i}"], dtype=np.float64) for i in range(3))
        biases = tuple(np.asarray(arrays[f"b_array_{i}"], dtype=np.float64) for i in range(3))
        hidden = weights[0].shape[0]
        npix = weights[2].shape[0]
        expected: list[tuple[int, ...]] = [(hidden, labels), (hidden, hidden), (npix, hidden)]
        expected_bias: list[tuple[int, ...]] = [(hidden,), (hidden,), (npix,)]
    else:
        kind = "per-pixel"
        weights = tuple(np.asarray(arrays[f"w_array_{i}"], dtype=np.float64) for i in range(2))
        biases = tuple(np.asarray(arrays[f"b_array_{i}"], dtype=np.float64) for i in range(2))
        npix, hidden = weights[0].shape[:2]
        expected = [(npix, hidden, labels), (npix, hidden)]
        expected_bias = [(npix, hidden), (npix,)]
    for name, array, shape in (
        *((f"w_array_{i}", w, e) for i, (w, e) in enumerate(zip(weights, expected, strict=True))),
        *(
            (f"b_array_{i}", b, e)
            for i, (b, e) in enumerate(zip(biases, expected_bias, strict=True))
        ),
    ):
        if array.shape != shape:
            raise ModelFileError(
                f"network {path}: {name} has shape {array.shape}, the {kind} layout needs {shape}"
            )
        if not np.all(np.isfinite(array)):
            raise ModelFileError(f"network {path}: {name} holds NaN or infinite values")
    if "wavelength" in arrays:
        wavelength = np.asarray(arrays["wavelength"], dtype=float)
        if wavelength.shape != (npix,) or not np.all(np.diff(wavelength) > 0):
            raise ModelFileError(
                f"network {path}: wavelength must be {npix} increasing values (Angstrom)"
            )
    elif npix == sum(b - a for a, b in APOGEE_CHIP_PIXELS):
        wavelength = apogee_payne_wavelength()
    else:
        raise ModelFileError(
            f"network {path} has {npix} pixels and no `wavelength` array: add one (vacuum Angstrom)"
        )
    names = label_names or _label_names(arrays, kind, labels)
    if names is None:
        raise ModelFileError(
            f"network {path} does not name its {labels} labels: add a `label_names` array, or "
            "give them with --labels"
        )
    if len(names) != labels:
        raise ModelFileError(f"network {path} has {labels} labels; {len(names)} names given")
    return Network(kind, weights, biases, x_min, x_max, wavelength, tuple(names), os.fspath(path))


def _label_names(arrays: dict[str, np.ndarray], kind: str, labels: int) -> tuple[str, ...] | None:
    if "label_names" in arrays:
        return tuple(str(name).strip().lower() for name in np.atleast_1d(arrays["label_names"]))
    return EL_BADRY_LABELS.get(labels) if kind == "per-pixel" else None
