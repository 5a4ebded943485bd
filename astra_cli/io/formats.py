"""File formats by the ending of a file's name: one table for manifests, model files and
exported tables, so that `.fits.gz` or `.ndjson` means the same thing wherever a file is named.

Each reader or writer supports only some of these formats, and says which (with
`extensions_of`) when a name is not one of them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

EXTENSIONS: dict[str, str] = {
    ".txt": "text", ".lst": "text",
    ".csv": "csv", ".tsv": "tsv", ".ecsv": "ecsv",
    ".fits": "fits", ".fit": "fits", ".fts": "fits", ".fits.gz": "fits", ".fit.gz": "fits",
    ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".vot": "votable", ".votable": "votable", ".parquet": "parquet",
    ".npz": "npz",
    ".pkl": "pickle", ".pickle": "pickle", ".pck": "pickle", ".joblib": "pickle",
}  # fmt: skip
"""File-name ending (lower case) -> format name."""

_LONGEST_FIRST = sorted(EXTENSIONS, key=len, reverse=True)


def binary_data_path(header_path: str | os.PathLike[str]) -> Path:
    """Where FERRE looks for a binary grid's data: the header's name with its last three
    characters replaced by `unf` (here, where naming it needs no grid reader, nor numpy)."""
    name = os.fspath(header_path)
    return Path(name[:-3] + "unf")


def format_of(name: str) -> str | None:
    """The format a file's name ends in (case-insensitive), or None."""
    lowered = name.lower()
    for extension in _LONGEST_FIRST:
        if lowered.endswith(extension):
            return EXTENSIONS[extension]
    return None


def extensions_of(formats: Sequence[str]) -> list[str]:
    """The endings that name any of these formats, in the table's order."""
    return [extension for extension, found in EXTENSIONS.items() if found in formats]
