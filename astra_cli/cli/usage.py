"""Mistakes on the command line, said in one line of plain words.

Typer checks option values with pydantic and shows its words in a framed box: "Invalid value
for '--chunk-size': Input should be a valid integer, unable to parse string as an integer", or
"Value error, 'powershell' is not one of 'bash', 'zsh', 'fish'.". astra says every other
error as `astra: error: ...` on one line, so these are said the same way, naming the option:
"--jobs: 'x' is not a whole number (see astra analyse snr --help)". The exit code stays 2.
"""

from __future__ import annotations

import re
from typing import Any

_PLAIN = {
    "int_parsing": "{input!r} is not a whole number",
    "int_from_float": "{input!r} is not a whole number",
    "int_type": "{input!r} is not a whole number",
    "float_parsing": "{input!r} is not a number",
    "float_type": "{input!r} is not a number",
    "bool_parsing": "{input!r} is neither yes nor no (true, false, 1, 0)",
    "greater_than_equal": "{input} is too small: it must be at least {ge}",
    "greater_than": "{input} is too small: it must be more than {gt}",
    "less_than_equal": "{input} is too large: it must be at most {le}",
    "less_than": "{input} is too large: it must be less than {lt}",
    "enum": "{input!r} is not one of {expected}",
    "literal_error": "{input!r} is not one of {expected}",
}
"""pydantic's error types, in the words astra uses for them."""


def plain_message(error: Any) -> str:
    """A click usage error (typer's vendored click) as one line: what was wrong with which
    option or argument, and which command's help says more."""
    message = _described(error)
    name = _parameter_name(error)
    if name and name not in message:
        message = f"{name}: {message}"
    context = getattr(error, "ctx", None)
    if context is not None:
        message = f"{message.rstrip('.')} (see {context.command_path} --help)"
    return " ".join(message.split())


def _described(error: Any) -> str:
    """pydantic's first complaint in plain words, or click's own message (already plain:
    "No such option: --continum-order Did you mean --continuum-order?")."""
    cause = error.__cause__
    problems = cause.errors() if hasattr(cause, "errors") else []
    if not problems:
        return str(error.format_message())
    problem = problems[0]
    values = {"input": problem.get("input"), **(problem.get("ctx") or {})}
    if "expected" in values:
        values["expected"] = str(values["expected"]).replace("'", "")
    template = _PLAIN.get(problem["type"])
    if template is not None:
        try:
            return template.format(**values)
        except (KeyError, IndexError):
            pass
    text = str(problem.get("msg", error.message))
    # "Value error, 'x' is not one of 'a', 'b'.": pydantic's prefix off, the choices bare.
    text = re.sub(r"^Value error, ", "", text).rstrip(".")
    found = re.match(r"^('.*?') is not one of (.*)$", text)
    if found:
        return f"{found.group(1)} is not one of {found.group(2).replace(chr(39), '')}"
    return text


def _parameter_name(error: Any) -> str | None:
    """`--chunk-size` for an option (its longest name), `SHELL` for an argument."""
    param = getattr(error, "param", None)
    if param is None:
        return None
    if param.param_type_name == "argument":
        return str(param.metavar or param.name.upper())
    return max(param.opts, key=len)
