"""`astra --help` and shell completion must stay instant: no numpy, astropy or joblib at
start-up (they cost more than the whole help text)."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("numpy", "astropy", "joblib", "sdss_access")


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
    return {line.split(".")[0] for line in result.stderr.splitlines()}


@pytest.mark.parametrize("args", [("--help",), ("analyse", "--help"), ("analyse", "snr", "--help")])
def test_help_imports_no_heavy_module(args):
    assert not set(HEAVY) & imported_modules(*args)


def test_completion_of_methods_imports_no_heavy_module():
    import os

    env = {**os.environ, "_ASTRA_COMPLETE": "complete_bash", "COMP_WORDS": "astra analyse ",
           "COMP_CWORD": "2"}  # fmt: skip
    assert not set(HEAVY) & imported_modules(env=env)


def test_version():
    from astra_cli.version import __version__

    result = subprocess.run(
        [sys.executable, "-m", "astra_cli", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"astra {__version__}"
