"""Batch manifests (`--from-file`): the lists of observations users keep, in the formats they
keep them in, read into observations grouped by the option values their rows give.

One job: files in, `{option values: observations}` out, with every bad row named as
`FILE:LINE: what is wrong`. A bad row never stops the reading: the caller decides whether bad
rows stop the invocation (the default) or are skipped (`--skip-bad-rows`).

`readers` holds the format table (one reader per format), `rows` what a row means, `problems`
how bad rows are reported.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import BinaryIO

from astra_cli.errors import UsageError, spelling
from astra_cli.io.formats import extensions_of
from astra_cli.io.formats import format_of as format_of_name
from astra_cli.io.identifiers import IdentifierResolver
from astra_cli.io.manifest.problems import BadRowsError, RowProblem, describe_problems
from astra_cli.io.manifest.readers import FORMATS, READERS
from astra_cli.io.manifest.rows import Interpreter, ManifestRequests, OptionValues
from astra_cli.methods.base import Param

__all__ = [
    "FORMATS",
    "STDIN",
    "BadRowsError",
    "ManifestRequests",
    "OptionValues",
    "RowProblem",
    "describe_problems",
    "format_of",
    "read_manifests",
]

STDIN = "-"


def read_manifests(
    sources: Sequence[str],
    params: Mapping[str, Param],
    resolver: IdentifierResolver,
    *,
    kind: str | None = None,
    defaults: Mapping[str, str] | None = None,
    file_format: str | None = None,
    hdu: int | str | None = None,
    stdin: BinaryIO | None = None,
    inputs: Mapping[str, type] | None = None,
    first_position: int = 0,
) -> ManifestRequests:
    """Read every manifest; bad rows are collected, not raised.

    params
        The method's options: a column (or `key=` in a text line) with one of these names gives
        the row its own value.
    kind
        The sdss-access product the identifiers name; None infers apStar or apVisit.
    defaults
        Identifier values for keys a row does not give (per-key options given once).
    file_format
        One of FORMATS for every file; by default each file's extension says.
    stdin
        What `-` reads (binary); sys.stdin's buffer by default.
    inputs
        The method's inputs (`{"v_rad": float}`): a column of that name gives each row's
        observation its own value.
    first_position
        The request position of the first row: each row's observation is numbered from it,
        in the order the rows are read (`Observation.position`).

    Raises UsageError for what is wrong with a whole file (unreadable, unknown format, no
    column naming an observation).
    """
    words = spelling()
    if list(sources).count(STDIN) > 1:
        raise UsageError(f"{words.argument('from_file')} - (standard input) can be given only once")
    if file_format is not None and file_format not in FORMATS:
        raise UsageError(
            f"{words.argument('file_format', '--format')} must be one of {', '.join(FORMATS)}, "
            f"not {file_format!r}"
        )
    interpreter = Interpreter(params, resolver, kind, defaults or {}, inputs, first_position)
    for source in sources:
        name = "<stdin>" if source == STDIN else source
        reader = READERS[file_format or format_of(source)]
        with _opened(source, stdin) as stream, reader(name, stream, hdu) as rows:
            interpreter.read(name, rows)
    interpreter.check_insignificant_options()
    return interpreter.requests


def format_of(source: str) -> str:
    """The manifest format a file's name says; standard input is text unless --format says."""
    if source == STDIN:
        return "text"
    found = format_of_name(source)
    if found in FORMATS:
        return found
    flag = spelling().argument("file_format", "--format")
    raise UsageError(
        f"{source}: cannot tell its format from its name; give {flag} "
        f"({', '.join(FORMATS)}) or name it {', '.join(extensions_of(FORMATS))}"
    )


@contextmanager
def _opened(source: str, stdin: BinaryIO | None) -> Iterator[BinaryIO]:
    """A manifest as a binary stream: the file, or standard input (left open)."""
    if source == STDIN:
        yield stdin or sys.stdin.buffer
        return
    try:
        stream = open(source, "rb")  # noqa: SIM115 (closed below)
    except OSError as error:
        raise UsageError(f"{spelling().argument('from_file')} {source}: {error.strerror}") from None
    with stream:
        yield stream
