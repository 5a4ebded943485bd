"""Bad manifest rows, named as `FILE:LINE: what is wrong` so that in a list of a million the
user can find them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from astra_cli.errors import UsageError, spelling

MAX_LISTED = 20
"""Bad rows (and ignored columns) listed by name; the rest are counted."""


@dataclass(frozen=True, slots=True)
class RowProblem:
    """Why one row of a manifest cannot be planned."""

    source: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.message}"


class BadRowsError(UsageError):
    """Rows that cannot be planned, found before anything ran (exit code 2)."""

    def __init__(self, problems: Sequence[RowProblem]) -> None:
        self.problems = list(problems)
        words = spelling()
        heading = (
            f"{len(self.problems)} bad row(s) in {words.argument('from_file')}; nothing was run "
            f"({words.argument('skip_bad_rows')} runs the others)"
        )
        super().__init__("\n".join([heading, *describe_problems(self.problems)]))


def describe_problems(problems: Sequence[RowProblem]) -> list[str]:
    """`FILE:LINE: what` for the first MAX_LISTED problems, then how many more there are."""
    lines = [str(problem) for problem in problems[:MAX_LISTED]]
    if len(problems) > MAX_LISTED:
        lines.append(f"... and {len(problems) - MAX_LISTED} more bad row(s)")
    return lines
