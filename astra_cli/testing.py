"""A conformance check for method authors: `check_method(MyMethod, **options)` uses a method the
way astra will, on synthetic spectra, and says in one sentence what breaks the Method API.

In a plugin's own test suite::

    from astra_cli.testing import check_method

    def test_conforms():
        check_method(LineDepth)                        # options with defaults
        check_method(MyFit, model="tests/model.fits")  # required options given

It checks that every option's default is a valid value of its type; that the method constructs
with the given options, and that those options survive pickling (workers receive them so) and
JSON (group keys and the store are made of them); that `requires()` names files that exist and
`validate()` accepts them; that `load_model()` loads; that `analyse` (through `analyse_batch`,
as the workers call it) returns one dict of storable columns per spectrum; and that a batch
gives the same columns and values as the same spectra one at a time.
"""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path
from typing import Any

from astra_cli.engine.worker import clean_result
from astra_cli.errors import UsageError
from astra_cli.io.spectra import Spectrum
from astra_cli.methods.base import Method

BATCH_RELATIVE_TOLERANCE = 1e-6
"""How closely a batch must reproduce one-at-a-time results (floating-point reordering)."""


class MethodCheckError(AssertionError):
    """A method that breaks the Method API; the message names the method and what is wrong."""


def check_method(method_class: type[Method], **options: Any) -> None:
    """Raise MethodCheckError if `method_class` would not work as an astra method.

    options
        Values for its required options (model files, say), and any others to check with.
    """
    if not (isinstance(method_class, type) and issubclass(method_class, Method)):
        raise MethodCheckError(f"{method_class!r} is not a subclass of astra_cli.Method")
    _Check(method_class).run(options)


class _Check:
    def __init__(self, method_class: type[Method]) -> None:
        self.method_class = method_class
        self.what = f"{method_class.__module__}.{method_class.__qualname__}"

    def fail(self, message: str) -> MethodCheckError:
        return MethodCheckError(f"{self.what}: {message}")

    def run(self, options: dict[str, Any]) -> None:
        self.defaults()
        try:
            method = self.method_class(**options)
        except UsageError as error:
            raise self.fail(f"cannot be constructed with {options}: {error}") from None
        self.options_travel(method)
        for required in method.requires():
            if not Path(required).is_file():
                raise self.fail(f"requires() names {required}, which is not a file")
        try:
            method.validate()
            model = method.load_model()
        except Exception as error:
            name = type(error).__name__
            raise self.fail(f"validate() or load_model() raised {name}: {error}") from None
        self.results(method, model)

    def defaults(self) -> None:
        for name, param in self.method_class.params.items():
            if param.required or param.default is None:
                continue
            try:
                param.coerce(param.default)
            except UsageError as error:
                message = f"the default of option {name!r} is not a valid value: {error}"
                raise self.fail(message) from None

    def options_travel(self, method: Method) -> None:
        try:
            travelled = pickle.loads(pickle.dumps(method.options))
        except Exception as error:
            raise self.fail(f"its options cannot be pickled for the workers: {error}") from None
        if travelled != method.options:
            raise self.fail(f"its options change when pickled: {method.options} -> {travelled}")
        try:
            json.dumps(method.significant_options, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise self.fail(f"its significant options are not plain JSON values: {error}") from None

    def results(self, method: Method, model: Any) -> None:
        spectra = synthetic_spectra(3)
        singles = [self.analysed(method, model, [spectrum])[0] for spectrum in spectra]
        columns = list(singles[0])
        if not columns:
            raise self.fail("analyse returned no result columns")
        for result in singles[1:]:
            if list(result) != columns:
                raise self.fail(f"two spectra give different columns: {columns}, {list(result)}")
        self.flags_declared(singles)
        batch = self.analysed(method, model, spectra)
        for index, (alone, together) in enumerate(zip(singles, batch, strict=True)):
            if list(together) != columns:
                raise self.fail(f"analyse_batch gives columns {list(together)}, alone {columns}")
            for column in columns:
                if not _same(alone[column], together[column]):
                    raise self.fail(
                        f"spectrum {index}: {column} is {together[column]!r} in a batch but "
                        f"{alone[column]!r} alone; a batch must give the same answers"
                    )

    def flags_declared(self, results: list[dict[str, Any]]) -> None:
        """A `flags` column is documented: every bit it sets is one of `Method.flags`."""
        declared = self.method_class.flags
        not_bits = [bit for bit in declared if bit <= 0 or bit & (bit - 1)]
        if not_bits:
            raise self.fail(f"Method.flags keys must be powers of two, not {not_bits}")
        for result in results:
            if "flags" not in result:
                continue
            if not declared:
                raise self.fail("it returns a flags column but declares no Method.flags")
            value = result["flags"]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise self.fail(f"its flags must be a non-negative int, not {value!r}")
            unknown = value & ~sum(declared)  # distinct powers of two: the sum is their union
            if unknown:
                raise self.fail(f"its flags set bit(s) {unknown} Method.flags does not declare")

    def analysed(self, method: Method, model: Any, spectra: list[Spectrum]) -> list[dict[str, Any]]:
        """Results as the workers get them: through analyse_batch, checked by clean_result."""
        try:
            results = method.analyse_batch(model, spectra)
        except Exception as error:
            message = f"a synthetic apStar spectrum raised {type(error).__name__}: {error}"
            raise self.fail(message) from None
        if not isinstance(results, list) or len(results) != len(spectra):
            count = len(results) if isinstance(results, list) else type(results).__name__
            raise self.fail(f"analyse_batch returned {count} result(s) for {len(spectra)} spectra")
        cleaned = []
        for result in results:
            try:
                cleaned.append(clean_result(result))
            except TypeError as error:
                raise self.fail(f"its result cannot be stored: {error}") from None
        return cleaned


def _same(alone: Any, together: Any) -> bool:
    if isinstance(alone, float) and isinstance(together, float):
        return math.isclose(alone, together, rel_tol=BATCH_RELATIVE_TOLERANCE, abs_tol=1e-12)
    return bool(alone == together)


def synthetic_spectra(count: int, *, snr: float = 100.0, seed: int = 0) -> list[Spectrum]:
    """apStar-like spectra of a K giant (astra's demo line model on the 8575-pixel apStar grid,
    a sloped continuum, noise at `snr`, a few bad pixels, the chip gaps empty), each with its
    own noise."""
    import numpy as np

    from astra_cli.demo.synthesis import normalised_flux
    from astra_cli.science.wavelength import apstar_wavelength, chip_index

    rng = np.random.default_rng(seed)
    wavelength = apstar_wavelength()
    on_chip = chip_index(wavelength) >= 0
    continuum = np.where(on_chip, 1000.0 * (1.0 + 0.1 * (wavelength - 16000.0) / 1000.0), 0.0)
    clean = normalised_flux(wavelength, np.array([[4800.0, 2.5, -0.2]]))[0] * continuum
    spectra = []
    for _ in range(count):
        error = np.where(on_chip, continuum / snr, 0.0)
        flux = clean + rng.normal(size=wavelength.size) * error
        mask = np.where(on_chip, 0, 1).astype(np.int64)
        bad = rng.choice(np.flatnonzero(on_chip), 20, replace=False)
        mask[bad] |= 1
        ivar = np.where(error > 0, 1.0 / np.where(error > 0, error, 1.0) ** 2, 0.0)
        ivar[bad] = 0.0
        spectra.append(
            Spectrum(wavelength, flux, ivar, mask, {"kind": "apStar"}, path="synthetic.fits")
        )
    return spectra
