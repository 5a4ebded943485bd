"""The `continuum_order` option the built-in methods share, with its bounds."""

from __future__ import annotations

from astra_cli.methods.base import Param

MAX_CONTINUUM_ORDER = 12
"""Beyond this a chip's polynomial follows the absorption lines instead of the continuum
(and far beyond, the fit's design matrix no longer fits in memory)."""


def continuum_order_option(default: int, what: str) -> Param:
    """`continuum_order`, from 0 to MAX_CONTINUUM_ORDER; `what` names the polynomial."""
    return Param(
        default,
        min=0,
        max=MAX_CONTINUUM_ORDER,
        help=f"Order of the {what} continuum fitted to each chip.",
    )
