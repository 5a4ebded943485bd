"""`astra_cli.testing.check_method`, the conformance check for method authors: it passes on
every built-in method and the test plugin, and names what is wrong with a broken method."""

from __future__ import annotations

from typing import ClassVar

import pytest
from conftest import ROOT

from astra_cli import Method, Param
from astra_cli.methods.registry import load_method
from astra_cli.testing import MethodCheckError, check_method

NETWORK = ROOT.parent / "shared" / "data" / "payne" / "NN_normalized_spectra.npz"


def test_builtin_methods_conform(demo_files):
    check_method(load_method("snr"))
    check_method(load_method("grid"), grid=demo_files.grid_fits)
    check_method(load_method("grid"), grid=demo_files.grid_ferre, continuum_order=3)
    check_method(load_method("cannon"), model=demo_files.cannon_model)
    check_method(load_method("rv"), templates=demo_files.templates)
    check_method(load_method("payne"), network=NETWORK)


def test_the_test_plugin_conforms(with_plugin):
    check_method(load_method("counting"), a=2)
    check_method(load_method("vectorised"))


class ReturnsList(Method):
    def analyse(self, model, spectrum):
        return [1.0]


class BadColumn(Method):
    def analyse(self, model, spectrum):
        return {"not a name": 1.0}


class ArrayColumn(Method):
    def analyse(self, model, spectrum):
        return {"flux": spectrum.flux}


class ShortBatch(Method):
    def analyse_batch(self, model, spectra):
        return [{"n": 1}]


class BatchDiffers(Method):
    def analyse_batch(self, model, spectra):
        return [{"batch_size": float(len(spectra))} for _ in spectra]


class BadDefault(Method):
    order = Param(5, choices=(1, 2, 3))

    def analyse(self, model, spectrum):
        return {"order": self.order}


class NeedsFile(Method):
    model = Param(type=str, help="Never given.")

    def analyse(self, model, spectrum):
        return {"x": 1}


class UndeclaredFlags(Method):
    def analyse(self, model, spectrum):
        return {"flags": 1}


class FlagNotDeclared(Method):
    flags: ClassVar[dict[int, str]] = {1: "one thing", 2: "another"}

    def analyse(self, model, spectrum):
        return {"flags": 5}


class FlagsNotBits(Method):
    flags: ClassVar[dict[int, str]] = {3: "two things at once"}

    def analyse(self, model, spectrum):
        return {"flags": 0}


class LoadFails(Method):
    def load_model(self):
        raise OSError("the model server is down")


@pytest.mark.parametrize(
    ("method_class", "message"),
    [
        (ReturnsList, "its result cannot be stored: the method returned a list, not a dict"),
        (BadColumn, "result column names must be identifiers, not 'not a name'"),
        (ArrayColumn, "result column 'flux' must be one number, string or bool"),
        (ShortBatch, "analyse_batch returned 1 result(s) for 3 spectra"),
        (BatchDiffers, "batch_size is 3.0 in a batch but 1.0 alone"),
        (BadDefault, "the default of option 'order' is not a valid value"),
        (NeedsFile, "cannot be constructed with {}: method '' needs option 'model'"),
        (LoadFails, "load_model() raised OSError: the model server is down"),
        (UndeclaredFlags, "it returns a flags column but declares no Method.flags"),
        (FlagNotDeclared, "its flags set bit(s) 4 Method.flags does not declare"),
        (FlagsNotBits, "Method.flags keys must be powers of two, not [3]"),
    ],
)
def test_a_broken_method_is_named_with_what_is_wrong(method_class, message):
    with pytest.raises(MethodCheckError) as raised:
        check_method(method_class)

    assert f"{__name__}.{method_class.__qualname__}: " in str(raised.value)
    assert message in str(raised.value)


def test_not_a_method_is_refused():
    with pytest.raises(MethodCheckError, match=r"is not a subclass of astra_cli\.Method"):
        check_method(dict)
