"""The Method API: how an analysis declares its options, loads its model once, and analyses
spectra.

It mirrors the seed's `BaseTask`: the expensive set-up (`load_model`) is separated from the
per-observation work (`analyse`), so the executor can load a model once per group per worker and
loop through that group's observations, exactly as `get_batch_tasks()` did. A method knows
nothing of joblib, SQLite or the command line.

Example::

    from astra_cli import Method, Param

    class Continuum(Method):
        '''Median flux of each spectrum above a threshold.'''

        threshold = Param(0.0, help="Ignore pixels below this flux.")
        n_threads = Param(1, significant=False, help="Threads for the fit.")

        def load_model(self):
            return load_expensive_model()          # once per group per worker

        def analyse(self, model, spectrum):
            return {"median_flux": ...}            # once per observation
"""

from __future__ import annotations

import builtins
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, overload

from astra_cli.errors import UsageError, did_you_mean, spelling

if TYPE_CHECKING:
    from collections.abc import Sequence

    from astra_cli.io.spectra import Spectrum


class _Required:
    """Marks a `Param` without a default: the user must give a value."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

_SCALAR_TYPES = (bool, int, float, str, Path)
_METAVARS: dict[type, str] = {Path: "FILE", int: "N", float: "NUMBER", str: "TEXT"}


@dataclass(frozen=True)
class Param:
    """A typed option of a method.

    significant
        Whether the option changes the result. Significant options (the default) split runs
        into separate groups and are part of each run's identity in the results store, so
        changing one reruns the analysis. Insignificant ones (thread counts, verbosity) do
        neither: runs that differ only in them share one group and one model.
    type
        `int`, `float`, `str`, `bool` or `pathlib.Path`; taken from the default when omitted.
        Path values are made absolute, so one file named two ways is one group.
    choices
        The allowed values, when there is a short list of them.
    min, max
        Bounds of a number, inclusive: a value beyond them is refused before any work
        (from the command line and from manifests alike), and help shows them.
    example
        A value to show in the examples of the method's help, for an option users must give
        (`cannon.fits`); by default one is made up from the option's name and type.
    """

    default: Any = REQUIRED
    significant: bool = True
    help: str = ""
    type: type | None = None
    choices: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None
    example: Any = None
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.type is None:
            if self.default is REQUIRED or self.default is None:
                raise TypeError("Param needs type= when it has no default")
            inferred = Path if isinstance(self.default, Path) else type(self.default)
            object.__setattr__(self, "type", inferred)
        if self.type not in _SCALAR_TYPES:
            raise TypeError(f"Param type must be one of {_SCALAR_TYPES}, not {self.type!r}")
        if (self.min is not None or self.max is not None) and self.type not in (int, float):
            raise TypeError("Param min= and max= bound numbers: the type must be int or float")

    def __set_name__(self, owner: builtins.type, name: str) -> None:
        object.__setattr__(self, "name", name)

    @overload
    def __get__(self, instance: None, owner: builtins.type) -> Param: ...

    @overload
    def __get__(self, instance: object, owner: builtins.type) -> Any: ...

    def __get__(self, instance: object | None, owner: builtins.type) -> Any:
        """On the class, the declaration; on an instance, its value (set by Method.__init__,
        which shadows this descriptor), so that type checkers read `self.order` as a value."""
        if instance is None:
            return self
        raise AttributeError(f"option {self.name!r} has no value on {instance!r}")

    @property
    def value_type(self) -> builtins.type:
        """The type of the option's values (inferred from the default when not given)."""
        assert self.type is not None  # set in __post_init__
        return self.type

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def bounds(self) -> str:
        """`0 to 12`, `at least 1`, `at most 5`, or "" when unbounded: for help and errors."""
        if self.min is not None and self.max is not None:
            return f"{self.min:g} to {self.max:g}"
        if self.min is not None:
            return f"at least {self.min:g}"
        return f"at most {self.max:g}" if self.max is not None else ""

    @property
    def flag(self) -> str:
        """The command-line spelling of this option."""
        return "--" + self.name.replace("_", "-")

    @property
    def metavar(self) -> str:
        """What its value is, in help and errors, in the placeholders every astra command
        uses: FILE, N, NUMBER, TEXT, or CHOICE (its values are listed in its help)."""
        if self.choices is not None:
            return "CHOICE"
        return _METAVARS.get(self.value_type, self.value_type.__name__.upper())

    def coerce(self, value: Any) -> Any:
        """Convert a value (often a string from a command line or manifest) to this type.

        Returns JSON-friendly values (paths become absolute strings) because option values
        are hashed into group keys and stored in the results store.
        """
        kind = self.value_type
        try:
            if kind is bool:
                converted: Any = _parse_bool(value)
            elif kind is Path:
                converted = os.path.abspath(os.path.expanduser(os.fspath(value)))
            elif kind is float:
                converted = float(value)
                if not math.isfinite(converted):
                    raise ValueError("not a finite number")
            elif kind is int:
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError("not a whole number")
                converted = int(value)
            else:
                converted = str(value)
        except (TypeError, ValueError) as error:
            raise UsageError(
                f"option {spelling().option(self.name)}: {value!r} is not a valid "
                f"{kind.__name__} ({error})"
            ) from None
        below = self.min is not None and converted < self.min
        if below or (self.max is not None and converted > self.max):
            raise UsageError(
                f"option {spelling().option(self.name)}: {value!r} is out of range; it must be "
                f"{self.bounds}"
            )
        if self.choices is not None and converted not in self.choices:
            allowed = ", ".join(map(str, self.choices))
            raise UsageError(
                f"option {spelling().option(self.name)}: {value!r} is not one of {allowed}"
            )
        return converted


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "y", "on"}:
        return True
    if text in {"0", "false", "no", "n", "off"}:
        return False
    raise ValueError("expected true or false")


@dataclass(frozen=True)
class Upstream:
    """A result column of another method, for the same observation, that a method needs: the
    planner looks it up in the store and runs the other method first where it is missing."""

    column: str
    """The column it needs (`v_rad`), handed to the method as `spectrum.inputs[column]`."""
    method: str
    """The method that computes it (`rv`)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Its options."""
    observed_frame_only: bool = True
    """Only observed-frame spectra (apVisit) need it: apStar spectra are at rest."""
    flags_column: str | None = None
    """The other method's flags column: when the run that gave the value flagged it, the
    method finds the flags as `spectrum.inputs[column + "_flags"]`."""


class Method:
    """Base class of every analysis method.

    Subclasses declare options as class attributes (`order = Param(5)`), and implement
    `analyse` (or `analyse_batch`) and, when they have one, `load_model`. An instance holds one
    set of option values: the options are attributes (`self.order`).
    """

    name: ClassVar[str] = ""
    """The name users type (`astra analyse NAME`); set from the entry point when loaded."""

    version: ClassVar[str] = "1"
    """Part of every run's identity: bump it when a change to the method changes its results,
    so that stored results of the old version are not taken for new ones."""

    params: ClassVar[dict[str, Param]] = {}
    """Every declared option, in declaration order, inherited ones first."""

    inputs: ClassVar[dict[str, type]] = {}
    """Values an observation may bring beside its file, by name (`{"v_rad": float}`): a
    manifest column of that name gives them, and the method finds them in
    `spectrum.inputs`. They are part of the run: another value is another run. A name
    ending in `*` stands for every column that starts with what precedes it (`"fix_*"`:
    fix_logg, fix_teff, ...); `check_inputs` says which of those the method can use."""

    flags: ClassVar[dict[int, str]] = {}
    """The bits of the result's `flags` column and what each says about the result (`{1: "at
    the grid's edge"}`): `--help` lists them, exported tables carry them, and
    `astra_cli.testing.check_method` refuses a result that sets a bit not declared here."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        params: dict[str, Param] = {}
        for klass in reversed(cls.__mro__):
            params.update({k: v for k, v in vars(klass).items() if isinstance(v, Param)})
        cls.params = params

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.params))
        if unknown:
            hint = did_you_mean(unknown[0], list(self.params))
            raise UsageError(
                f"method {self.name!r} has no option {spelling().option(unknown[0])}{hint}"
            )
        for param_name, param in self.params.items():
            if param_name in options and options[param_name] is not None:
                value = param.coerce(options[param_name])
            elif param.required:
                about = f" ({param.help.rstrip('.')})" if param.help else ""
                needed = spelling().option_value(param_name, param.metavar)
                raise UsageError(f"method {self.name!r} needs {needed}{about}")
            else:
                value = param.default if param.default is None else param.coerce(param.default)
            setattr(self, param_name, value)

    @classmethod
    def summary(cls) -> str:
        """The first line of the docstring: what `astra methods` shows."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    @property
    def options(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.params}

    @property
    def significant_options(self) -> dict[str, Any]:
        """The options that define the group (and the model) a run belongs to."""
        return {n: getattr(self, n) for n, p in self.params.items() if p.significant}

    def requires(self) -> list[Path]:
        """Files that must exist before anything runs (checked once, in the invoking process).

        By default, the value of every `Path` option.
        """
        return [
            Path(getattr(self, name))
            for name, param in self.params.items()
            if param.type is Path and getattr(self, name) is not None
        ]

    def model_files(self) -> list[Path]:
        """The files whose contents the results depend on besides the observation: a run
        made with other contents of any of them is stale and runs again. By default what
        `requires` returns; add the files a model file names (a FERRE header's data)."""
        return self.requires()

    def validate(self) -> None:
        """Checks before any run: read a model file's header, say, so that a wrong file stops
        the invocation (exit code 2) instead of failing every run. Raise
        `astra_cli.errors.UsageError` with a message naming the file. With loky workers it is
        made in a worker, before that loads the model (`engine.warmstart`), and made again in
        the invoking process if it did not pass there, to say why: it may run twice, and
        must not depend on the process it runs in. A pass is remembered in the store until the
        model files change (`engine.modelchecks`)."""

    def check_inputs(self, names: set[str]) -> None:
        """Refuse the input columns a manifest gave that these options cannot use (a label
        the grid does not have, say): raise `astra_cli.errors.UsageError` naming the column.
        Called once per option set, with every input name its observations bring."""

    def upstream(self) -> list[Upstream]:
        """Columns of other methods this one needs for the same observations (see Upstream);
        their method and options become part of this method's groups."""
        return []

    def plan_notes(self) -> list[str]:
        """Lines about how this group will be analysed, for `astra plan` (a grid's search, say).
        Read headers only."""
        return []

    def describe_columns(self) -> dict[str, str]:
        """One line about result columns whose names do not say enough (the grid label a
        column holds, say), for `astra results` to write beside them. Read headers only: it is
        called when exporting, not in the workers."""
        return {"flags": describe_flags(self.flags)} if self.flags else {}

    def column_units(self) -> dict[str, str]:
        """Units of result columns (astropy's spelling: `K`, `km/s`), for exported tables.
        Read headers only, as `describe_columns`."""
        return {}

    def load_model(self) -> Any:
        """Load whatever is expensive (a grid, a trained model). Called once per group per
        worker process; the value is passed to every `analyse` call of that group."""
        return None

    def read_observation(self, path: str) -> Spectrum:
        """Read one observation; override for products other than apStar and apVisit."""
        from astra_cli.io.spectra import read_spectrum

        return read_spectrum(path)

    def analyse(self, model: Any, spectrum: Spectrum) -> dict[str, Any]:
        """Analyse one spectrum; return the result columns (name -> number, string or bool)."""
        raise NotImplementedError(
            f"{type(self).__name__} implements neither analyse nor analyse_batch"
        )

    def analyse_batch(self, model: Any, spectra: Sequence[Spectrum]) -> list[dict[str, Any]]:
        """Analyse many spectra at once: override where the work vectorises across spectra
        (a chi-square over a grid for B spectra is one matrix product, not B loops).

        If this raises, the executor retries the spectra one at a time, so one bad spectrum
        fails alone.
        """
        return [self.analyse(model, spectrum) for spectrum in spectra]


def describe_flags(flags: dict[int, str]) -> str:
    """`1 at the grid's edge; 2 did not converge`: the flag bits in one line."""
    return "; ".join(f"{bit} {meaning}" for bit, meaning in sorted(flags.items()))
