"""Help that teaches, in the spirit of sqlite-utils' tests/test_docs.py: every command and option
has help, every command is in README.md, and a method's --help shows its own options with their
defaults and whether they are significant."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys

import pytest
import typer
from conftest import ROOT
from typer._click import Context
from typer.testing import CliRunner

from astra_cli.cli.app import ENTRIES, app
from astra_cli.methods.registry import load_method, method_names

README = (ROOT / "README.md").read_text()
runner = CliRunner()


def walk(command, path: tuple[str, ...] = ("astra",)):
    """(path, command) for every command, the lazily built method commands included."""
    yield path, command
    if hasattr(command, "list_commands"):
        context = Context(command, info_name=path[-1])
        for name in command.list_commands(context):
            yield from walk(command.get_command(context, name), (*path, name))


COMMANDS = dict((" ".join(path), command) for path, command in walk(typer.main.get_command(app)))
METHOD_GROUPS = ("analyse", "plan", "status")


def help_of(*args: str) -> str:
    """--help as a wide terminal shows it, with the panels' borders and line breaks removed."""
    result = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    return " ".join(result.output.replace("│", " ").split())


def test_the_walk_finds_every_command():
    for group in METHOD_GROUPS:
        for method in method_names():
            assert f"astra {group} {method}" in COMMANDS
    assert {"astra train cannon", "astra completion", "astra results"} <= COMMANDS.keys()


@pytest.mark.parametrize("path", COMMANDS)
def test_command_has_help(path):
    command = COMMANDS[path]
    assert (command.help or "").strip(), f"{path} has no help text"


@pytest.mark.parametrize("path", COMMANDS)
def test_every_option_and_argument_has_help(path):
    missing = [param.name for param in COMMANDS[path].params if not (param.help or "").strip()]
    assert not missing, f"{path}: no help for {missing}"


@pytest.mark.parametrize(
    "path", [path for path in COMMANDS if path.count(" ") < 2 or path.startswith("astra train")]
)
def test_command_is_in_the_readme(path):
    assert re.search(rf"\b{re.escape(path)}\b", README), f"README.md never mentions `{path}`"


@pytest.mark.parametrize("method", method_names())
def test_method_is_in_the_readme(method):
    assert f"`{method}`" in README, f"README.md never mentions the method {method}"


@pytest.mark.parametrize("method", method_names())
def test_a_methods_help_lists_every_flag_bit_it_declares(method):
    declared = load_method(method).flags
    text = help_of("analyse", method)
    for bit, meaning in declared.items():
        assert f"{bit}: {meaning}" in text, f"{method}'s --help does not explain flag {bit}"


@pytest.mark.parametrize("method", [name for name in method_names() if load_method(name).flags])
def test_readme_lists_every_flag_bit_of_a_builtin_method(method):
    row = next(line for line in README.splitlines() if line.startswith(f"| `{method}` |"))
    described = row[row.index("`flags`") :]
    for bit in load_method(method).flags:
        assert re.search(rf"\b{bit} ", described), f"README's {method} row misses flag {bit}"


def test_method_help_shows_its_options_in_their_own_panel():
    text = help_of("analyse", "grid")
    assert "Options of grid" in text
    assert re.search(
        r"--grid FILE [^[]*\[significant: each value is its own group; required\]", text
    )
    assert re.search(
        r"--continuum-order N [^[]*Repeat to sweep\. \[significant: each value is its own group; "
        r"default: 4; 0 to 12\]",
        text,
    )


def test_insignificant_options_are_marked(with_plugin):
    text = help_of("analyse", "counting")
    assert re.search(r"--threads N [^[]*\[insignificant: does not split groups; default: 1\]", text)
    assert re.search(
        r"--order N [^[]*\[significant: each value is its own group; default: 5\]", text
    )


@pytest.mark.parametrize(
    ("option", "default"),
    [("--jobs", "every core"), ("--chunk-size", "enough chunks to keep every worker busy")],
)
def test_bracketed_defaults_survive_rich_markup(option, default):
    assert f"[default: {default}]" in help_of("analyse", "snr")
    assert f"[default: {default}]" in help_of("plan", "snr")


def test_analyse_help_ends_with_examples_of_batch_mode():
    text = help_of("analyse", "grid")
    examples = text[text.index("Examples") :].replace(" \\ ", " ")  # lines joined
    assert "astra analyse grid --grid grid.fits apStar-dr17-2M06440890-0610126.fits" in examples
    assert "--field 218-04 --obj 2M06440890-0610126" in examples  # per-key, zipped
    assert "--continuum-order 4 --continuum-order 5" in examples  # a sweep of its own option
    assert "--from-file allStar-dr17.fits" in examples  # a manifest
    assert "--quiet --log-file" in examples  # cron


@pytest.mark.parametrize("group", METHOD_GROUPS)
@pytest.mark.parametrize("method", method_names())
def test_examples_are_for_the_method_whose_help_they_end(group, method):
    """Every example runs this method, with every option it requires."""
    text = help_of(group, method)
    commands = re.findall(rf"astra {group} (\w+)((?:(?!astra ).)*)", text[text.index("Examples") :])
    assert commands, f"astra {group} {method} --help has no examples"
    required = [param.flag for param in load_method(method).params.values() if param.required]
    for name, arguments in commands:
        assert name == method, f"an example in `astra {group} {method} --help` runs {name}"
        assert all(flag in arguments for flag in required), (method, arguments)


@pytest.mark.parametrize("args", [(), ("analyse",), ("analyse", "grid"), ("results",), ("demo",)])
def test_flags_show_no_value_type(args):
    assert "<bool>" not in help_of(*args)


def test_version():
    from astra_cli.version import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"astra {__version__}"


def test_minus_h_is_help_everywhere():
    for args in ([], ["analyse", "grid"], ["results"], ["status", "snr"]):
        short = runner.invoke(app, [*args, "-h"], env={"COLUMNS": "300"})
        assert short.exit_code == 0, short.output
        assert " ".join(short.output.replace("│", " ").split()) == help_of(*args)


def test_commands_are_listed_in_the_order_of_use():
    text = runner.invoke(app, ["--help"], env={"COLUMNS": "300"}).output
    commands = text[text.index("Commands") :]
    listed = re.findall(r"^│ (\w+) ", commands, flags=re.MULTILINE)
    expected = ["analyse", "plan", "status", "results", "show", "plot", "forget", "methods"]
    assert listed[:8] == expected, listed


PLACEHOLDER = re.compile(r"[A-Z][A-Z0-9]*(?:[=,|_. -]+[A-Z0-9.]+)*(?:\.\.\.)?")
"""FILE, N, KEY=VAL,..., N|NAME: upper-case words, as every command shows its values."""


@pytest.mark.parametrize("path", COMMANDS)
def test_every_value_is_shown_by_one_style_of_placeholder(path):
    """Typer's own labels (`<str>`, `<int range>`, `[x>=1]`) would mix a second style in."""
    command = COMMANDS[path]
    context = Context(command, info_name=path.split()[-1])
    for param in command.get_params(context):
        if getattr(param, "is_flag", False) or param.name == "help":
            continue
        if param.param_type_name == "argument":
            assert param.display_type_rich(context) is None, f"{path} {param.name} shows a type"
            label = param.metavar or param.name.upper()
        else:
            label = param.display_type_rich(context)
        assert PLACEHOLDER.fullmatch(label), f"{path} {param.name}: placeholder {label!r}"
        assert param._get_number_range_help_str() is None, f"{path} {param.name}: shows a range"


@pytest.mark.parametrize("path", ["astra analyse grid", "astra results", "astra demo"])
def test_help_shows_no_typer_type_labels(path):
    text = help_of(*path.split()[1:])
    typer_label = r"<(?:str|int|float|path|bool|list\[|\w+ range)[^>]*>|<\w+\|\w+|\[x[<>]="
    assert not re.search(typer_label, text), re.search(typer_label, text)


@pytest.mark.parametrize("name", [entry.name for entry in ENTRIES])
def test_the_root_lists_each_command_as_it_describes_itself(name):
    """`astra --help` reads its table, not the commands: each line there must be the first
    paragraph of the command's own help, as Typer would list the command itself."""
    entry = next(entry for entry in ENTRIES if entry.name == name)
    command = entry.load()
    own = command.short_help or command.help or ""
    assert entry.summary == inspect.cleandoc(own).split("\n\n")[0].strip()
    assert command.name == name


@pytest.mark.parametrize("columns", ["60", "80", "300"])
@pytest.mark.parametrize("colour", [False, True])
def test_the_root_help_is_drawn_as_typer_draws_it(columns, colour, monkeypatch, capsys):
    """astra draws its root help itself, to spare `astra --help` the import of Typer's help
    module (`cli.roothelp`); it must still read, colour for colour, as Typer would draw it."""
    from typer import rich_utils

    monkeypatch.setenv("COLUMNS", columns)
    for variable in (
        "FORCE_COLOR",
        "PY_COLORS",
        "GITHUB_ACTIONS",
        "NO_COLOR",
        "_TYPER_FORCE_DISABLE_TERMINAL",
    ):
        monkeypatch.delenv(variable, raising=False)  # colour as the case says, whatever runs it
    monkeypatch.setattr(rich_utils, "FORCE_TERMINAL", None)  # read by Typer at its import
    if colour:
        monkeypatch.setenv("FORCE_COLOR", "1")
        monkeypatch.setattr(rich_utils, "FORCE_TERMINAL", True)
    group = typer.main.get_command(app)
    context = Context(group, info_name="astra", **group.context_settings)
    rich_utils.rich_format_help(obj=group, ctx=context, markup_mode="rich")
    typers = capsys.readouterr().out
    result = runner.invoke(app, ["--help"], env={"COLUMNS": columns})
    assert result.exit_code == 0, result.output
    assert result.output.rstrip("\n") == typers.rstrip("\n")  # click ends either with a newline
    assert "-h" in typers and "completion" in typers and ("\x1b[" in typers) == colour


def test_the_root_help_is_plain_when_typer_is_told_not_to_use_rich():
    code = "from astra_cli.cli.app import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", code, "--help"], capture_output=True, text=True,
        env={**os.environ, "TYPER_USE_RICH": "0", "COLUMNS": "300"}, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "╭" not in result.stdout
    assert re.search(r"^  analyse +Analyse observations with a method", result.stdout, re.M)
