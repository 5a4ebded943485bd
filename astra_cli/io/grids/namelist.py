"""FERRE's grid header: `&SYNTH ... /` blocks read by the rules of a Fortran namelist, as FERRE
reads them (it hands the header to the compiler's namelist reader).

What the rules allow, and this reader with them: names in any case, in any order, repeated
(the last wins); values separated by blanks, commas or new lines; several assignments on one
line; `NAME(i) = v` and `NAME(i:j) = v w` element assignments; `r*value` repeat counts and null
values (`, ,` or `r*`), which leave an element as it was; `D` or `E` exponents; strings in
single or double quotes (a doubled quote is one character); `!` comments; `&SYNTH` or
`$SYNTH`, ended by `/`, `&END` or `$END`. Values carry over from one block to the next: a
block that leaves out a keyword keeps the value the previous block gave it.

Like FERRE, a keyword FERRE does not know is refused (its namelist read would fail), and so is
any value this reader cannot read exactly (an unquoted string, a real for an integer).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

MAX_DIMENSIONS = 20
"""FERRE's maxndim: N_P, LLIMITS, STEPS and LABEL hold 20 elements."""
MAX_PCA_SECTIONS = 1000

_KEYWORDS: dict[str, tuple[str, int]] = {
    # name: (kind, array length; 0 for a scalar)
    "N_OF_DIM": ("int", 0), "NPIX": ("int", 0), "LOGW": ("int", 0), "VACUUM": ("int", 0),
    "MULTI": ("int", 0), "TRANSPOSED": ("int", 0), "MODO": ("int", 0),
    "N_P": ("int", MAX_DIMENSIONS), "NPCA": ("int", MAX_PCA_SECTIONS),
    "RESOLUTION": ("real", 0), "ORIGINAL_SAMPLING": ("real", 0), "INVALID_CODE": ("real", 0),
    "CONSTANT": ("real", 0),
    "LLIMITS": ("real", MAX_DIMENSIONS), "STEPS": ("real", MAX_DIMENSIONS), "WAVE": ("real", 2),
    "CONTINUUM": ("real", 4), "PRECONTINUUM": ("real", 4),
    "LABEL": ("str", MAX_DIMENSIONS),
    "ID": ("str", 0), "DATE": ("str", 0), "SYNTHFILE_INTERNAL": ("str", 0), "SYNSPEC": ("str", 0),
    "FILE_DATA19": ("str", 0), "FILE_DATA20": ("str", 0), "SPECLIB_VERS": ("str", 0),
    **{f"COMMENTS{i}": ("str", 0) for i in range(1, 15)},
}  # fmt: skip
"""Every keyword of FERRE's &SYNTH namelist (read_f.f90), its type and size."""

_TOKEN = re.compile(
    r"""(?P<space>[ \t\r\n]+)
      | (?P<comment>![^\n]*)
      | (?P<string>'(?:[^']|'')*'|"(?:[^"]|"")*")
      | (?P<open>[&$][A-Za-z_][A-Za-z0-9_]*)
      | (?P<equals>=)
      | (?P<comma>,)
      | (?P<slash>/)
      | (?P<subscript>\(\s*\d+\s*(?::\s*\d+\s*)?\))
      | (?P<word>[^ \t\r\n,=/'"()!&$]+)
      | (?P<other>.)""",
    re.VERBOSE,
)
_INTEGER = re.compile(r"[+-]?\d+")
_REAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[EeDd][+-]?\d+)?")
_REPEAT = re.compile(r"(\d+)\*(.*)")


class NamelistError(ValueError):
    """A header that is not a namelist FERRE would read, or one this reader cannot read
    exactly; the message says what and where."""


@dataclass
class Block:
    """The keyword values after one block (with what earlier blocks set), and the keywords
    this block set itself."""

    values: dict[str, Any]
    given: set[str] = field(default_factory=set)

    def get(self, name: str, default: Any = None) -> Any:
        value = self.values.get(name)
        return default if value is None else value

    def array(self, name: str) -> list[Any]:
        """The elements set so far, up to the last one given."""
        elements = list(self.values.get(name) or [])
        while elements and elements[-1] is None:
            elements.pop()
        return elements


@dataclass
class Token:
    kind: str
    text: str
    line: int


def tokens(text: str, first_line: int = 1) -> Iterator[Token]:
    line = first_line
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup or "other"
        value = match.group()
        if kind not in ("space", "comment"):
            yield Token(kind, value, line)
        line += value.count("\n")


def read_blocks(text: str, group: str = "SYNTH", count: int | None = None) -> list[Block]:
    """The `&group` blocks of `text`, in order (at most `count`), with values carried over."""
    state: dict[str, Any] = {}
    blocks: list[Block] = []
    stream = _Peekable(tokens(text))
    while count is None or len(blocks) < count:
        start = _find_group(stream, group)
        if start is None:
            break
        given = _read_assignments(stream, state, start.line)
        blocks.append(Block(copy.deepcopy(state), given))
    return blocks


class _Peekable:
    def __init__(self, items: Iterable[Token]) -> None:
        self._items = iter(items)
        self._ahead: list[Token] = []

    def peek(self, depth: int = 0) -> Token | None:
        while len(self._ahead) <= depth:
            item = next(self._items, None)
            if item is None:
                return None
            self._ahead.append(item)
        return self._ahead[depth]

    def next(self) -> Token | None:
        found = self.peek()
        if found is not None:
            self._ahead.pop(0)
        return found


def _find_group(stream: _Peekable, group: str) -> Token | None:
    """Skip to `&group`; other groups are skipped whole, like a namelist read does."""
    while (token := stream.next()) is not None:
        if token.kind == "open" and token.text[1:].upper() == group:
            return token
    return None


def _ends_block(token: Token | None) -> bool:
    return token is not None and (
        token.kind == "slash" or (token.kind == "open" and token.text[1:].upper() == "END")
    )


def _read_assignments(stream: _Peekable, state: dict[str, Any], start: int) -> set[str]:
    given: set[str] = set()
    while True:
        token = stream.next()
        if token is None:
            raise NamelistError(f"line {start}: the &SYNTH block has no closing '/'")
        if _ends_block(token):
            return given
        if token.kind == "comma":
            continue
        if token.kind != "word" or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", token.text):
            raise NamelistError(f"line {token.line}: expected a keyword, found {token.text!r}")
        name = token.text.upper()
        if name not in _KEYWORDS:
            raise NamelistError(
                f"line {token.line}: {name} is not a keyword of FERRE's &SYNTH header "
                "(FERRE itself refuses it)"
            )
        kind, size = _KEYWORDS[name]
        first, last = 1, size or 1
        following = stream.next()
        if following is not None and following.kind == "subscript":
            if not size:
                raise NamelistError(f"line {token.line}: {name} is not an array")
            bounds = [int(part) for part in following.text.strip("() ").split(":")]
            first, last = bounds[0], bounds[-1]
            if not 1 <= first <= last <= size:
                raise NamelistError(
                    f"line {token.line}: {name}{following.text} is outside 1..{size}"
                )
            following = stream.next()
        if following is None or following.kind != "equals":
            raise NamelistError(f"line {token.line}: expected '=' after {name}")
        values = _read_values(stream, name, kind, token.line)
        if len(values) > last - first + 1:
            raise NamelistError(
                f"line {token.line}: {len(values)} values for {name}, which holds "
                f"{last - first + 1}"
            )
        if size:
            elements = state.setdefault(name, [None] * size)
            for offset, value in enumerate(values):
                if value is not None:
                    elements[first - 1 + offset] = value
        elif values and values[0] is not None:
            state[name] = values[0]
        given.add(name)


def _is_next_name(stream: _Peekable) -> bool:
    """The values end where the next `NAME =` or `NAME(i) =` starts."""
    token = stream.peek()
    if token is None or token.kind != "word":
        return False
    after = stream.peek(1)
    if after is not None and after.kind == "subscript":
        after = stream.peek(2)
    return after is not None and after.kind == "equals"


def _read_values(stream: _Peekable, name: str, kind: str, line: int) -> list[Any]:
    """Values up to the next name or the end of the block; None stands for a null value."""
    values: list[Any] = []
    since_separator = False
    while True:
        token = stream.peek()
        if token is None or _ends_block(token) or _is_next_name(stream):
            return values
        stream.next()
        if token.kind == "comma":
            if not since_separator:
                values.append(None)  # ", ," : a null value
            since_separator = False
            continue
        repeat = 1
        text, string = token.text, token.kind == "string"
        if token.kind == "word" and (found := _REPEAT.fullmatch(token.text)):
            repeat = int(found.group(1))
            text = found.group(2)
            after = stream.peek()
            if not text and after is not None and after.kind == "string":
                stream.next()
                text, string = after.text, True
        elif token.kind not in ("word", "string"):
            raise NamelistError(
                f"line {token.line}: unexpected {token.text!r} in the value of {name}"
            )
        value = None if not text else _value(name, kind, text, string, token.line)
        values.extend([value] * repeat)
        since_separator = True


def _value(name: str, kind: str, text: str, string: bool, line: int) -> Any:
    if kind == "str":
        if not string:
            raise NamelistError(
                f"line {line}: {name} = {text}: put the string in quotes ('{text}')"
            )
        quote = text[0]
        return text[1:-1].replace(quote * 2, quote)
    if string:
        raise NamelistError(f"line {line}: {name} takes a number, not the string {text}")
    if kind == "int":
        if not _INTEGER.fullmatch(text):
            raise NamelistError(f"line {line}: {name} = {text} is not a whole number")
        return int(text)
    if not _REAL.fullmatch(text):
        raise NamelistError(f"line {line}: {name} = {text} is not a number")
    return float(text.replace("D", "E").replace("d", "e"))
