"""`astra methods`: the installed methods and their options."""

from __future__ import annotations

from typing import Any

from astra_cli.cli.console import print_json
from astra_cli.cli.errors import reported_errors
from astra_cli.cli.options import Json


def methods_command(json: Json = False) -> None:
    """List the installed methods (built-in and plugins) and their options."""
    from astra_cli.methods.registry import load_method, method_names

    with reported_errors(verbose=False):
        described = [describe_method(load_method(name)) for name in method_names()]
    if json:
        print_json(described)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("method", "what it does", "options")
    for method in described:
        options = ", ".join(
            f"{option['flag']}{'' if option['significant'] else ' (insignificant)'}"
            for option in method["options"]
        )
        table.add_row(method["name"], method["summary"], options or "(none)")
    Console().print(table)


def describe_method(method_class: Any) -> dict[str, Any]:
    return {
        "name": method_class.name,
        "summary": method_class.summary(),
        "version": method_class.version,
        "module": f"{method_class.__module__}:{method_class.__qualname__}",
        "options": [
            {
                "name": param.name,
                "flag": param.flag,
                "type": param.type.__name__,
                "default": None if param.required else param.default,
                "required": param.required,
                "significant": param.significant,
                "choices": list(param.choices) if param.choices else None,
                "help": param.help,
            }
            for param in method_class.params.values()
        ],
        "flags": {str(bit): meaning for bit, meaning in sorted(method_class.flags.items())},
    }
