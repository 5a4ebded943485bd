"""Short names for groups that still tell them apart.

A group is its method's significant option values, and those are often long paths: two grids
in one directory differ only at the end of their paths, which is where a table cell or a
progress bar at 80 columns cuts them. So groups are shown by the options that differ between
them, a path by its shortest tail that no other path of the same option ends with
(`…/grid-a.fits`), with what every group shares and the paths in full said once, apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from astra_cli.vocabulary import option_text

ELLIPSIS = "…"


def looks_like_path(value: str) -> bool:
    return "/" in value and not value.startswith("{") and "\n" not in value


def shortened_paths(paths: Iterable[str]) -> dict[str, str]:
    """{path: its shortest tail (at least the file name) that none of the other paths ends
    with}, written `…/tail`; a path that cannot be shortened is itself."""
    distinct = list(dict.fromkeys(paths))
    parts = {path: path.rstrip("/").split("/") for path in distinct}
    short = {}
    for path in distinct:
        mine = parts[path]
        named = [part for part in mine if part]
        keep = next(
            (
                size
                for size in range(1, len(named) + 1)
                if all(parts[other][-size:] != mine[-size:] for other in distinct if other != path)
            ),
            len(named),
        )
        short[path] = path if keep >= len(named) else f"{ELLIPSIS}/{'/'.join(mine[-keep:])}"
    return short


@dataclass(frozen=True)
class GroupOptions:
    """The option values of several groups, split into what tells them apart and what not."""

    differing: list[dict[str, str]]
    """Per group, in order: the options whose values are not the same in every group (all of
    a lone group's options), paths shortened."""
    common: dict[str, str] = field(default_factory=dict)
    """Options with one value in every group (when there are several groups), in full."""
    paths: dict[str, str] = field(default_factory=dict)
    """{shortened path: the path in full}, for every path shortened in `differing`."""

    def cell(self, index: int, between: str = " ") -> str:
        """One group's differing options, `name=value`, `between` each (a table cell puts
        one a line)."""
        return between.join(f"{name}={value}" for name, value in self.differing[index].items())


def tell_apart(options: Sequence[Mapping[str, Any]]) -> GroupOptions:
    """Split the groups' options (one mapping per group) into those that differ between them
    and those they share, and shorten the paths among the differing ones."""
    names = list(dict.fromkeys(name for group in options for name in group))
    values = [{name: option_text(group[name]) for name in group} for group in options]
    if len(values) > 1:
        varying = [n for n in names if len({group.get(n) for group in values}) > 1]
    else:
        varying = names
    common = {} if len(values) == 1 else {n: values[0][n] for n in names if n not in varying}
    differing: list[dict[str, str]] = [{} for _ in values]
    paths: dict[str, str] = {}
    for name in varying:
        given = [group[name] for group in values if name in group]
        short = shortened_paths(value for value in given if looks_like_path(value))
        paths.update({shortened: full for full, shortened in short.items() if shortened != full})
        for group, row in zip(values, differing, strict=True):
            if name in group:
                row[name] = short.get(group[name], group[name])
    return GroupOptions(differing, common, paths)


def legend(apart: GroupOptions) -> list[str]:
    """The lines under a table of groups: the options every group shares, then each shortened
    path in full. Long: print them unwrapped."""
    lines = []
    if apart.common:
        shared = " ".join(f"{name}={value}" for name, value in apart.common.items())
        lines.append(f"in every group: {shared}")
    lines += [f"{short} is {full}" for short, full in apart.paths.items()]
    return lines


def group_labels(keys: Sequence[str], options: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """{group key: a short label}: `2/4 grid=…/grid-b.fits continuum_order=3` for one of
    several groups (its number and what sets it apart), the key itself for a lone group."""
    if len(keys) == 1:
        return {keys[0]: keys[0]}
    apart = tell_apart(options)
    return {
        key: f"{number}/{len(keys)} {apart.cell(number - 1)}".strip()
        for number, key in enumerate(keys, start=1)
    }
