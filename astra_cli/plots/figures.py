"""What every plot needs: matplotlib, or a message saying how to install it; a file format
that follows the file's name."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from astra_cli.errors import UsageError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FORMATS = (".png", ".pdf", ".svg")
"""The image formats a plot is written in, by the file's extension."""


def new_figure(width: float, height: float) -> Figure:
    """A figure of this size in inches, laid out so that labels never overlap."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError(
            "plots need matplotlib, which is not installed: pip install 'astra-cli[plot]'"
        ) from None
    return Figure(figsize=(width, height), layout="constrained")


def check_destination(destination: Path, option: str) -> None:
    """Refuse, before anything is read, a name whose format is not known or a directory."""
    if destination.suffix.lower() not in FORMATS:
        raise UsageError(
            f"{option} {destination}: the name must end in {', '.join(FORMATS)} "
            "(the image format follows it)"
        )
    if destination.is_dir():
        raise UsageError(f"{option} {destination} is a directory: name the image file to write")


def save(figure: Figure, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(destination, dpi=120)
