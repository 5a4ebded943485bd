"""What was asked for, before it is planned: observations times every combination of option
values, and the checks a request must pass before anything runs.

A request set is one combination of option values and the observations it applies to. Values
given on the command line (or to `astra_cli.run()`) are swept: every combination is a set. A
manifest row that gives an option its own value joins the set of that value.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from astra_cli.engine.modelchecks import check_key
from astra_cli.errors import UsageError, spelling
from astra_cli.io.manifest import ManifestRequests
from astra_cli.methods.base import Method
from astra_cli.vocabulary import Observation


@dataclass(frozen=True)
class RequestSet:
    """Observations to analyse with one set of option values (one value per option)."""

    options: Mapping[str, Any]
    observations: Sequence[Observation]


def sweep(
    option_values: Mapping[str, Sequence[Any]], method_class: type[Method]
) -> list[dict[str, Any]]:
    """Every combination of the given option values: an option given several times is a sweep.

    An insignificant option cannot be swept: it would not change the result, so the runs it
    would add are the same runs.
    """
    for name, values in option_values.items():
        param = method_class.params.get(name)
        if param is not None and not param.significant and len(set(values)) > 1:
            raise UsageError(
                f"option {spelling().option(name)} does not change results (it is "
                "insignificant), so it cannot be swept; give it once"
            )
    given = {name: list(values) for name, values in option_values.items() if values}
    names = list(given)
    return [
        dict(zip(names, combination, strict=True))
        for combination in itertools.product(*given.values())
    ]


def request_sets(
    method_class: type[Method],
    observations: Sequence[Observation],
    option_values: Mapping[str, Sequence[Any]],
    manifests: ManifestRequests | None = None,
) -> list[RequestSet]:
    """One request set per combination of swept option values, and for manifest rows one per
    combination and distinct option values of the rows: ten sets for a million rows holding
    ten values, however many observations."""
    by_options = manifests.by_options if manifests else {}
    if not observations and not by_options:
        if manifests and manifests.rows:
            raise UsageError(
                f"no observations to plan: every row of {spelling().argument('from_file')} is bad"
            )
        raise UsageError(f"no observations given: {spelling().observation_sources()}")
    combinations = sweep(option_values, method_class) or [{}]
    sets = [RequestSet(options, observations) for options in combinations if observations]
    for row_options, rows in by_options.items():
        sets += [RequestSet({**options, **dict(row_options)}, rows) for options in combinations]
    return sets


def check_required_files(method_class: type[Method], sets: Sequence[RequestSet]) -> None:
    """Every file a method requires exists, once per distinct set of option values: the cheap
    half of the checks, made before planning (which takes the model files' digest)."""
    for options in _distinct_options(sets):
        method = method_class(**options)
        for required in method.requires():
            if not Path(required).is_file():
                raise UsageError(_missing_file(method, Path(required)))


@dataclass(frozen=True)
class ModelCheck:
    """One set of option values that must pass the method's own check (`Method.validate`),
    and the key a pass is remembered under (None when it is not, see `check_key`)."""

    options: Mapping[str, Any]
    key: str | None


def model_checks(
    method_class: type[Method],
    sets: Sequence[RequestSet],
    passed_before: Callable[[str], bool] = lambda key: False,
) -> list[ModelCheck]:
    """The checks a request needs before anything runs: one per distinct set of option
    values, but those that `passed_before` remembers passing on the same files
    (`engine.modelchecks`)."""
    checks = []
    for options in _distinct_options(sets):
        key = check_key(method_class(**options))
        if key is None or not passed_before(key):
            checks.append(ModelCheck(options, key))
    return checks


def check_models(
    method_class: type[Method],
    checks: Sequence[ModelCheck],
    passed_elsewhere: Set[str] = frozenset(),
) -> list[str]:
    """Make every check here, but those that passed elsewhere (in a worker started meanwhile,
    `engine.warmstart`); the first refusal raises. Returns the keys of the checks that passed,
    for the store to remember."""
    passed = []
    for check in checks:
        if check.key is None or check.key not in passed_elsewhere:
            method_class(**check.options).validate()
        if check.key is not None:
            passed.append(check.key)
    return passed


def _distinct_options(sets: Sequence[RequestSet]) -> list[Mapping[str, Any]]:
    return list({tuple(sorted(s.options.items())): s.options for s in sets}.values())


def _missing_file(method: Method, required: Path) -> str:
    """Which file is missing, which option named it, and where to look next."""
    words = spelling()
    options = [
        name
        for name, param in method.params.items()
        if param.type is Path and str(getattr(method, name)) == str(required)
    ]
    given = f" (given as {words.option(options[0])})" if options else ""
    state = "is not a file" if required.exists() else "does not exist"
    return (
        f"{method.name} needs {required}{given}, which {state}: check the path "
        f"({words.method_help(method.name)} says what the file holds)"
    )
