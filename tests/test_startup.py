"""`astra --help` and shell completion must stay instant: no numpy, astropy or joblib at
start-up (they cost more than the whole help text)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HEAVY = ("numpy", "astropy", "joblib", "sdss_access", "dask", "distributed", "dask_jobqueue")


def imported_modules(*args: str, env: dict | None = None) -> set[str]:
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['astra', *{list(args)!r}]\n"
        "try:\n"
        "    runpy.run_module('astra_cli', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "sys.stderr.write('\\n'.join(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    return set(result.stderr.splitlines())


def heavy(modules: set[str]) -> set[str]:
    return {name for name in modules if name.split(".")[0] in HEAVY}


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("analyse", "--help"),
        ("analyse", "snr", "--help"),
        ("analyse", "grid", "--help"),
        ("completion", "bash"),
    ],
)
def test_help_imports_no_heavy_module(args):
    assert not heavy(imported_modules(*args))


def test_the_root_help_imports_no_command():
    """`astra --help` lists the commands from a table: not one of their modules (nor the
    store, sqlite3 or the manifest readers they import) is loaded to print it."""
    modules = imported_modules("--help")
    assert "astra_cli.cli.lazy" in modules, "the help was not printed by astra"
    loaded = {"astra_cli.cli.analyse", "astra_cli.cli.results", "astra_cli.io.store", "sqlite3"}
    assert not loaded & modules, loaded & modules


def test_the_root_help_imports_no_help_module_of_typer():
    """Typer's help module imports rich's Markdown and tracebacks (markdown-it, pygments):
    about 30 ms of `astra --help`, which draws the root's help itself (`cli.roothelp`)."""
    modules = imported_modules("--help")
    assert "astra_cli.cli.roothelp" in modules, "the help was not drawn by astra"
    unwanted = {"typer.rich_utils", "rich.markdown", "rich.traceback", "markdown_it", "pygments"}
    assert not unwanted & modules, unwanted & modules


def completion_request(line: str) -> set[str]:
    """The modules a bash completion request for `line` imports."""
    env = {**os.environ, "_ASTRA_COMPLETE": "complete_bash", "COMP_WORDS": line,
           "COMP_CWORD": str(len(line.split(" ")) - 1)}  # fmt: skip
    return imported_modules(env=env)


@pytest.mark.parametrize(
    "line",
    [
        "astra ",
        "astra analyse ",
        "astra analyse grid --",
        "astra analyse grid --grid ",
        "astra analyse cannon --model ",
        "astra plan rv --templates ",
        "astra status snr --from-file ",
        "astra analyse snr --backend ",
        "astra analyse snr --kind ",
        "astra results ",
        "astra results snr --format ",
    ],
)
def test_completion_imports_no_heavy_module(line):
    assert not heavy(completion_request(line))


def test_method_names_complete_from_entry_points_alone():
    """No method module is imported to list the methods: a plugin's import may be slow."""
    modules = completion_request("astra analyse ")
    assert not {name for name in modules if name.startswith("astra_cli.methods.")} - {
        "astra_cli.methods.base", "astra_cli.methods.registry",
    }  # fmt: skip


def test_version():
    from astra_cli.version import __version__

    result = subprocess.run(
        [sys.executable, "-m", "astra_cli", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"astra {__version__}"


def test_values_are_converted_without_pydantic(tmp_path):
    """Typer converts values with pydantic, whose import and per-option adapters cost each
    invocation about 0.1 s before anything is done; astra converts its own (`cli.values`):
    whole numbers, numbers, paths, choices and repeated options here."""
    modules = imported_modules(
        "plan", "grid", str(tmp_path / "a.fits"), str(tmp_path / "b.fits"),
        "--grid", str(tmp_path / "g.fits"), "--continuum-order", "3", "--continuum-order", "4",
        "--interpolation", "cubic", "--chunk-size", "2", "--jobs", "2", "-o", str(tmp_path),
    )  # fmt: skip
    assert "astra_cli.cli.values" in modules, "the command line was not read by astra"
    assert not {name for name in modules if name.split(".")[0] == "pydantic"}
