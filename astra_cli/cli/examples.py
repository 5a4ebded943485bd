"""The examples at the end of `astra analyse|plan|status METHOD --help`, written for that method.

Examples a user can copy are the quickest help, but only if they are for the command being read:
`astra analyse cannon --help` ending with a grid sweep teaches little. Each method's examples are
built from its own declaration: the options it requires, with an example value, and one of its
own options swept. Nothing here imports the method's module beyond what building its command
already did.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from astra_cli.methods.base import Method, Param

STAR_FILE = "apStar-dr17-2M06440890-0610126.fits"
WIDTH = 76
"""Example lines are broken before this column (with a shell continuation), so that help reads
in an 80-column terminal."""


def example_value(param: Param) -> str:
    """A value that reads as what the option takes: a file named for the method or option,
    the first choice, the default or the lower bound of a number."""
    if param.example is not None:
        return str(param.example)
    if param.choices:
        return str(param.choices[0])
    if param.value_type is Path:
        return f"{param.name}.fits"
    if param.default is not None and not param.required:
        return str(param.default)
    return str(int(param.min or 0)) if param.value_type is int else "1.0"


def required_options(method_class: type[Method]) -> list[str]:
    """`--grid grid.fits`: every option the method cannot run without."""
    return [
        f"{param.flag} {example_value(param)}"
        for param in method_class.params.values()
        if param.required
    ]


def swept_option(method_class: type[Method]) -> list[str] | None:
    """Two values of one of the method's significant options: a sweep, one group per value.
    A whole number (an order, say) is the usual thing to sweep, so the first of those, else
    the first choice; None when the method has neither."""
    sweepable = [
        param
        for param in method_class.params.values()
        if param.significant and not param.required and param.value_type is not bool
    ]
    for param in sweepable:
        if param.value_type is int and param.choices is None and param.default is not None:
            first = param.default
            second = first + 1 if param.max is None or first + 1 <= param.max else first - 1
            return [f"{param.flag} {first}", f"{param.flag} {second}"]
    for param in sweepable:
        if param.choices and len(param.choices) > 1:
            return [f"{param.flag} {param.choices[0]}", f"{param.flag} {param.choices[1]}"]
    return None


def command_lines(words: Iterable[str]) -> str:
    """One command, broken with ` \\` before WIDTH columns, continuation lines indented."""
    lines: list[str] = []
    line = "    "
    for word in words:
        if len(line) + len(word) + 3 > WIDTH and line.strip():
            lines.append(line + " \\")
            line = "      "
        line += ("" if line.isspace() else " ") + word.replace("[", "\\[")
    lines.append(line)
    return "\n".join(lines)


def _block(title: str, *words: str) -> str:
    return f"  {title}\n{command_lines(words)}\n"


def analyse_examples(method_class: type[Method]) -> str:
    """One star, batch mode by identifiers, a sweep of the method's own option (where it has
    one), a manifest, and a cron line: each for this method."""
    name = method_class.name
    start = ["astra", "analyse", name, *required_options(method_class)]
    blocks = [
        _block("One star, by file:", *start, STAR_FILE),
        _block(
            "Batch mode: per-key options are zipped position by position, like the tuples\n"
            "  of Astra's batch mode; a key given once applies to every observation:",
            *start,
            "--release dr16",
            "--apred r12",
            "--telescope apo25m",
            "--field 218-04",
            "--obj 2M06440890-0610126",
            "--field 000+14",
            "--obj 2M16505794-2118004",
        ),
    ]
    sweep = swept_option(method_class)
    if sweep is not None:
        blocks.append(
            _block(
                "A sweep: every observation with each value; one group (one model) per value:",
                *start,
                "data/*.fits",
                *sweep,
            )
        )
    blocks += [
        _block(
            "A manifest (txt, csv, tsv, ecsv, fits, jsonl; '-' reads standard input):",
            *start,
            "--from-file allStar-dr17.fits",
        ),
        _block(
            "From cron: errors only, a log file, exit code 1 if any run failed:",
            *start,
            "--from-file tonight.csv",
            "-o /data/astra",
            "--quiet",
            "--log-file /data/astra/astra.log",
        ),
    ]
    return _titled(blocks)


def plan_examples(method_class: type[Method]) -> str:
    """What a request would do, for this method: its groups and chunks, as text or JSON."""
    start = ["astra", "plan", method_class.name, *required_options(method_class)]
    sweep = swept_option(method_class) or []
    return _titled(
        [
            _block(
                "The groups and chunks of a manifest, before running it:",
                *start,
                *sweep,
                "--from-file tonight.csv",
            ),
            _block("As JSON, for a script:", *start, "--from-file tonight.csv", "--json"),
        ]
    )


def status_examples(method_class: type[Method]) -> str:
    """How far a request has got, for this method."""
    start = ["astra", "status", method_class.name, *required_options(method_class)]
    return _titled(
        [
            _block(
                "How far tonight's list has got, as JSON for a script:",
                *start,
                "--from-file tonight.csv",
                "-o /data/astra",
                "--json",
            ),
        ]
    )


def _titled(blocks: list[str]) -> str:
    return "[bold]Examples[/]\n\n" + "\n".join(blocks)
