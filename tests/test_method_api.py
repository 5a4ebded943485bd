"""The Method API: typed options, their coercion, and how methods are found by name."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from astra_cli.errors import UsageError
from astra_cli.methods.base import REQUIRED, Method, Param
from astra_cli.methods.registry import load_method, method_names, method_path, resolve_method


class Fit(Method):
    """A method with one option of each kind."""

    name = "fit"
    order = Param(5, help="Polynomial order.")
    scale = Param(1.5)
    model = Param(Path("grid.fits"), help="The model grid.")
    mode = Param("fast", choices=("fast", "exact"))
    verbose = Param(False, significant=False)
    n_threads = Param(1, significant=False)


def param(name: str) -> Param:
    return Fit.params[name]


# --- Param ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("default", "expected"),
    [(5, int), (0.5, float), (True, bool), ("x", str), (Path("m.fits"), Path)],
)
def test_param_type_is_inferred_from_the_default(default, expected):
    assert Param(default).type is expected


def test_param_without_default_needs_a_type():
    with pytest.raises(TypeError, match="type="):
        Param()
    with pytest.raises(TypeError, match="type="):
        Param(None)


def test_param_without_default_is_required():
    assert Param(type=int).required
    assert Param(REQUIRED, type=str).required
    assert not Param(None, type=str).required
    assert not Param(0).required


@pytest.mark.parametrize("kwargs", [{"default": [1, 2]}, {"type": list}, {"default": 1j}])
def test_unsupported_param_type_is_refused(kwargs):
    with pytest.raises(TypeError):
        Param(**kwargs)


def test_flag_spells_underscores_as_dashes():
    assert param("n_threads").flag == "--n-threads"
    assert param("order").flag == "--order"


# --- coercion ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("order", "10", 10),
        ("order", " -3 ", -3),
        ("order", 7.0, 7),
        ("scale", "2.5", 2.5),
        ("scale", "1e-3", 0.001),
        ("scale", 3, 3.0),
        ("mode", "exact", "exact"),
    ],
)
def test_coerce_converts_strings_and_numbers(name, value, expected):
    coerced = param(name).coerce(value)

    assert coerced == expected
    assert type(coerced) is type(expected)


@pytest.mark.parametrize("text", ["yes", "Yes", "true", "TRUE", "1", "on", "y", " true "])
def test_coerce_true_spellings(text):
    assert param("verbose").coerce(text) is True


@pytest.mark.parametrize("text", ["no", "false", "False", "0", "off", "n"])
def test_coerce_false_spellings(text):
    assert param("verbose").coerce(text) is False


def test_coerce_keeps_booleans():
    assert param("verbose").coerce(True) is True
    assert param("verbose").coerce(False) is False


def test_path_becomes_an_absolute_string(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    coerced = param("model").coerce("models/grid.fits")

    assert isinstance(coerced, str)
    assert coerced == str(tmp_path / "models" / "grid.fits")
    assert param("model").coerce(tmp_path / "models" / "grid.fits") == coerced


def test_one_file_named_two_ways_is_one_value(tmp_path, monkeypatch):
    """Path values are made absolute so that one file named two ways is one group."""
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path / "models")

    direct = param("model").coerce("grid.fits")

    assert param("model").coerce("./grid.fits") == direct
    assert param("model").coerce("../models/grid.fits") == direct
    assert param("model").coerce(f"{tmp_path}/models/../models/grid.fits") == direct


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("order", "five"),
        ("order", "2.5"),
        ("order", 2.5),
        ("order", ""),
        ("scale", "abc"),
        ("verbose", "maybe"),
        ("verbose", "2"),
    ],
)
def test_bad_value_is_a_usage_error_naming_the_option(words, name, value):
    with pytest.raises(UsageError, match=re.escape(f"option {words.option(name)}:")):
        param(name).coerce(value)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "Infinity", float("nan"), float("inf")])
def test_non_finite_float_is_refused(words, value):
    with pytest.raises(UsageError, match=re.escape(words.option("scale"))):
        param("scale").coerce(value)


def test_choices_are_enforced(words):
    with pytest.raises(UsageError) as raised:
        param("mode").coerce("slow")

    message = str(raised.value)
    assert words.option("mode") in message
    assert "fast" in message
    assert "exact" in message


def test_numeric_choices_compare_coerced_values():
    level = Param(1, choices=(1, 2, 3))

    assert level.coerce("2") == 2
    with pytest.raises(UsageError):
        level.coerce("4")


# --- Method --------------------------------------------------------------------------------


class Base(Method):
    name = "base"
    zeta = Param(1)
    alpha = Param("a")


class Child(Base):
    name = "child"
    middle = Param(2.0)
    zeta = Param(10)


def test_params_are_in_declaration_order_inherited_first():
    assert list(Fit.params) == ["order", "scale", "model", "mode", "verbose", "n_threads"]
    assert list(Child.params) == ["zeta", "alpha", "middle"]


def test_subclass_overrides_and_does_not_leak_into_its_base():
    assert Child().zeta == 10
    assert Base().zeta == 1
    assert list(Base.params) == ["zeta", "alpha"]


def test_instance_holds_coerced_values(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    fit = Fit(order="10", scale="0.25", model="other.fits", mode="exact", verbose="yes")

    assert (fit.order, fit.scale, fit.mode, fit.verbose) == (10, 0.25, "exact", True)
    assert fit.model == str(tmp_path / "other.fits")


def test_defaults_are_applied(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    fit = Fit()

    assert fit.options == {
        "order": 5,
        "scale": 1.5,
        "model": str(tmp_path / "grid.fits"),
        "mode": "fast",
        "verbose": False,
        "n_threads": 1,
    }


def test_unknown_option_suggests_the_closest(words):
    with pytest.raises(UsageError) as raised:
        Fit(ordr=3)

    message = str(raised.value)
    assert f"no option {words.option('ordr')}" in message
    assert "did you mean 'order'" in message


def test_bad_option_value_is_a_usage_error(words):
    with pytest.raises(UsageError, match=re.escape(words.option("order"))):
        Fit(order="many")


class NeedsModel(Method):
    name = "needs-model"
    model = Param(type=Path, help="The model grid.")
    order = Param(5)


def test_missing_required_option_names_it(words):
    with pytest.raises(UsageError, match=re.escape(f"needs {words.option_value('model', 'FILE')}")):
        NeedsModel(order=3)


def test_required_option_given(tmp_path):
    assert NeedsModel(model=tmp_path / "g.fits").model == str(tmp_path / "g.fits")


def test_significant_options_leave_out_insignificant_ones():
    fit = Fit(verbose=True, n_threads=8)

    assert set(fit.significant_options) == {"order", "scale", "model", "mode"}
    assert fit.options["n_threads"] == 8


def test_requires_lists_path_options(tmp_path):
    class TwoFiles(Method):
        name = "two-files"
        grid = Param(Path("grid.fits"))
        mask = Param(None, type=Path)
        lines = Param(type=Path)
        order = Param(5)
        label = Param("x")

    method = TwoFiles(grid=tmp_path / "g.fits", lines=tmp_path / "l.txt")

    assert method.requires() == [tmp_path / "g.fits", tmp_path / "l.txt"]


def test_requires_nothing_without_path_options():
    assert Base().requires() == []


def test_analyse_batch_loops_over_analyse_in_order():
    seen = []

    class PerSpectrum(Method):
        name = "per-spectrum"

        def analyse(self, model, spectrum):
            seen.append(model)
            return {"value": spectrum * 2}

    results = PerSpectrum().analyse_batch("the model", [1, 2, 3])

    assert results == [{"value": 2}, {"value": 4}, {"value": 6}]
    assert seen == ["the model"] * 3


def test_method_without_analysis_names_its_class():
    class Nothing(Method):
        name = "nothing"

    with pytest.raises(NotImplementedError, match="Nothing"):
        Nothing().analyse_batch(None, ["spectrum"])
    with pytest.raises(NotImplementedError, match="Nothing"):
        Nothing().analyse(None, "spectrum")


# --- registry ------------------------------------------------------------------------------


def test_builtin_method_is_listed():
    names = method_names()

    assert "snr" in names
    assert names == sorted(names)


def test_load_method_by_name():
    method_class = load_method("snr")

    assert isinstance(method_class, type)
    assert issubclass(method_class, Method)
    assert method_class.name == "snr"


def test_unknown_method_suggests_the_closest_and_lists_installed():
    with pytest.raises(UsageError) as raised:
        load_method("snrr")

    message = str(raised.value)
    assert "did you mean 'snr'" in message
    assert "installed methods:" in message
    assert all(name in message for name in method_names())


def test_a_worker_gets_the_class_the_invoking_process_found():
    found = load_method("snr")

    assert method_path(found) == "astra_cli.methods.snr:SignalToNoise"
    assert resolve_method("snr", method_path(found)) is found
    assert found.name == "snr"


def test_a_worker_finds_its_method_without_reading_package_metadata():
    """What a worker process imports to run a method: not importlib.metadata (about 20 ms of
    each worker's start, and a read of every installed package's metadata)."""
    code = (
        "import sys\n"
        "import astra_cli.engine.worker\n"
        "from astra_cli.methods.registry import resolve_method\n"
        "resolve_method('snr', 'astra_cli.methods.snr:SignalToNoise')\n"
        "print('importlib.metadata' in sys.modules)\n"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("astra_cli.methods.no_such_module:Method", "failed to import: ModuleNotFoundError"),
        ("astra_cli.methods.snr:NoSuchClass", "failed to import: AttributeError"),
        ("astra_cli.methods.base:Param", "is not an astra_cli.Method"),
    ],
)
def test_a_method_a_worker_cannot_import_is_named_with_its_path(path, says):
    with pytest.raises(UsageError) as raised:
        resolve_method("lost", path)

    assert str(raised.value).startswith(f"method 'lost' ({path}) ")
    assert says in str(raised.value)
