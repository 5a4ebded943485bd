"""Command-line values converted to their Python types by astra, not by pydantic.

Typer 0.29 converts every value with a pydantic TypeAdapter, one built for each parameter of
the command: importing pydantic and building the adapters cost each invocation about 0.1 s
before anything is done, a third of a rerun with nothing to do, and time that `astra analyse`
makes its workers wait before it starts them. astra's parameters take few types (str, int,
float, bool, Path, a choice given as a Literal or an Enum, and lists of these), which
`PlainValues` converts, saying a mistake in astra's words ("'x' is not a whole number");
`cli.usage` puts the option's name and the help to read around it. A parameter of any other
type keeps Typer's conversion.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from astra_cli.cli.clickparts import BadParameter, RuntimeParam

TRUE_WORDS = frozenset({"1", "on", "t", "true", "y", "yes"})
FALSE_WORDS = frozenset({"0", "off", "f", "false", "n", "no"})
"""What a yes-or-no value may be spelt as, in any case (pydantic's words, as Typer took)."""


class ValueMistake(BadParameter):
    """A value that is not of its parameter's type: the message is the whole complaint."""


@dataclass(frozen=True)
class PlainValues(RuntimeParam):
    """Converts a parameter's value (or each of its values) to the parameter's type."""

    def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
        kind: Any = self.annotation
        try:
            if get_origin(kind) is list:
                (item_kind,) = get_args(kind)
                items = value if isinstance(value, (list, tuple)) else [value]
                return [convert(item, item_kind) for item in items]
            return convert(value, kind)
        except ValueError as mistake:
            raise ValueMistake(str(mistake), ctx=ctx, param=param) from None


def convertible(kind: Any) -> bool:
    """Whether `PlainValues` converts values of this annotation."""
    if get_origin(kind) is list:
        args = get_args(kind)
        return len(args) == 1 and convertible(args[0])
    return kind in (str, int, float, bool, Path) or _choices(kind) is not None


def convert(value: Any, kind: Any) -> Any:
    """`value` (a command-line string, or a default already of its type) as a `kind`;
    ValueError, in plain words, when it is not one."""
    choices = _choices(kind)
    if choices is not None:
        return _choice(value, choices)
    if kind is bool:
        return _yes_or_no(value)
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        return _whole_number(value)
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        try:
            return float(str(value).strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
    if kind is Path:
        return value if isinstance(value, Path) else Path(value)
    return str(value)


def _whole_number(value: Any) -> int:
    """An int from `3`, or from `3.0` as pydantic took it; `3.5` or `x` is refused."""
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if number.is_integer():
        return int(number)
    raise ValueError(f"{value!r} is not a whole number")


def _yes_or_no(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS or word == "":
        return False
    raise ValueError(f"{value!r} is neither yes nor no (true, false, 1, 0)")


def _choices(kind: Any) -> Sequence[Any] | None:
    """A choice parameter's choices: a Literal's values or an Enum's members."""
    if get_origin(kind) is Literal:
        return get_args(kind)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return list(kind)
    return None


def _choice(value: Any, choices: Sequence[Any]) -> Any:
    for choice in choices:
        if value is choice:  # a default
            return choice
        spelt = choice.value if isinstance(choice, enum.Enum) else choice
        if str(spelt) == str(value):
            return choice
    names = ", ".join(str(c.value if isinstance(c, enum.Enum) else c) for c in choices)
    raise ValueError(f"{value!r} is not one of {names}")
