"""The click classes astra's CLI builds on, imported in one place.

Typer 0.29 vendors click as the private package `typer._click`; reaching into it from one
module means a Typer release that moves them breaks this file only. So does Typer's private
`RuntimeParam`, the conversion of a parameter's values (`cli.values`).
"""

from __future__ import annotations

from typer._click import Context
from typer._click.core import Command as ClickCommand
from typer._click.core import ParameterSource
from typer._click.exceptions import BadParameter, ClickException, NoArgsIsHelpError
from typer._click.exceptions import UsageError as ClickUsageError
from typer._coercion import RuntimeParam
from typer.core import HAS_RICH, CompletionItem, TyperCommand, TyperGroup, TyperOption
from typer.exceptions import Abort
from typer.main import get_command

__all__ = [
    "HAS_RICH",
    "Abort",
    "BadParameter",
    "ClickCommand",
    "ClickException",
    "ClickUsageError",
    "CompletionItem",
    "Context",
    "NoArgsIsHelpError",
    "ParameterSource",
    "RuntimeParam",
    "TyperCommand",
    "TyperGroup",
    "TyperOption",
    "get_command",
]
