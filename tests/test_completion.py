"""Tab completion as the shells ask for it: `astra` called back with `_ASTRA_COMPLETE` set, in a
real process, and the checked-in scripts under completions/ equal to what the CLI prints."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, astra_subprocess

from astra_cli.cli.completion import SHELLS
from astra_cli.methods.registry import method_names

BASH = shutil.which("bash")


def complete_bash(line: str) -> list[str]:
    """What bash's completion function receives for `line` (the word under the cursor last)."""
    words = line.split(" ")
    result = astra_subprocess(
        env={"_ASTRA_COMPLETE": "complete_bash", "COMP_WORDS": line,
             "COMP_CWORD": str(len(words) - 1)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [word for word in result.stdout.splitlines() if word]


def complete_zsh(line: str) -> str:
    result = astra_subprocess(env={"_ASTRA_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": line})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def fish_completes_files(line: str) -> bool:
    """fish's script turns its own file completion off only when astra says it has words."""
    result = astra_subprocess(
        env={"_ASTRA_COMPLETE": "complete_fish", "_TYPER_COMPLETE_FISH_ACTION": "is-args",
             "_TYPER_COMPLETE_ARGS": line},
    )  # fmt: skip
    return result.returncode != 0


@pytest.mark.parametrize("shell", SHELLS)
def test_checked_in_scripts_are_what_the_cli_prints(shell):
    printed = astra_subprocess("completion", shell)
    assert printed.returncode == 0, printed.stderr
    checked_in = ROOT / "completions" / f"astra.{shell}"
    assert checked_in.read_text() == printed.stdout, (
        f"{checked_in} is stale: regenerate it with `astra completion {shell} > {checked_in}`"
    )


def test_commands_complete():
    assert set(complete_bash("astra ")) == {
        "methods", "results", "demo", "completion", "train", "grid", "analyse", "plan",
        "status", "forget", "show", "plot",
    }  # fmt: skip
    assert complete_bash("astra an") == ["analyse"]
    assert complete_bash("astra train ") == ["cannon"]
    assert set(complete_bash("astra grid ")) == {"info", "convert"}
    assert complete_bash("astra grid convert x.dat y.hdr --format ") == [
        "astra", "ferre-binary", "ferre-ascii", "npz",
    ]  # fmt: skip
    assert complete_bash("astra completion ") == list(SHELLS)


@pytest.mark.parametrize("command", ["analyse", "plan", "status", "results"])
def test_method_names_complete_after_each_command(command):
    assert complete_bash(f"astra {command} ") == method_names()
    assert complete_bash(f"astra {command} gr") == ["grid"]


def test_plugin_methods_complete_without_importing_them(with_plugin):
    assert {"counting", "vectorised"} <= set(complete_bash("astra analyse "))
    assert complete_bash("astra plan cou") == ["counting"]


@pytest.mark.parametrize(
    ("method", "own"),
    [
        ("grid", {"--grid", "--continuum-order"}),
        ("cannon", {"--model"}),
        ("rv", {"--templates", "--continuum-order"}),
        ("snr", set()),
    ],
)
def test_each_method_completes_its_own_options(method, own):
    options = set(complete_bash(f"astra analyse {method} --"))
    assert own <= options
    assert {"--from-file", "--obs", "--obj", "--output-dir", "--jobs", "--backend"} <= options
    others = {"--grid", "--model", "--templates"} - own
    assert not others & options


def test_option_names_complete_from_a_prefix():
    assert complete_bash("astra analyse grid --con") == ["--continuum-order"]
    assert complete_bash("astra plan rv --tem") == ["--templates"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("astra analyse snr --backend ", {"loky", "threading", "sequential", "dask", "slurm"}),
        ("astra analyse grid --format ", {"text", "csv", "tsv", "ecsv", "fits", "jsonl"}),
        ("astra status rv --format ", {"text", "csv", "tsv", "ecsv", "fits", "jsonl"}),
        ("astra results grid --format ", {"fits", "ecsv", "csv"}),
        ("astra results grid --status ", {"ok", "failed", "all"}),
        ("astra analyse snr --kind ", {"apStar", "apVisit", "aspcapStar"}),
    ],
)
def test_choices_complete(line, expected):
    assert expected <= set(complete_bash(line))


def test_choices_complete_from_a_prefix():
    assert complete_bash("astra analyse snr --backend th") == ["threading"]
    assert complete_bash("astra analyse snr --kind apV") == ["apVisit", "apVisit-1m"]


@pytest.mark.parametrize(
    "line",
    [
        "astra analyse grid --grid ",
        "astra analyse grid --grid mod",
        "astra analyse cannon --model ",
        "astra analyse rv --templates ",
        "astra analyse snr --from-file ",
        "astra plan snr --from-file tar",
        "astra analyse snr ",
        "astra analyse snr apStar-",
        "astra train cannon --from-file ",
    ],
)
def test_paths_fall_back_to_bashs_file_completion(line):
    """Path options answer no words, and bash's `complete -o default` completes file names."""
    assert complete_bash(line) == []


@pytest.mark.parametrize(
    "line",
    ["astra analyse grid --grid ", "astra analyse snr --from-file tar", "astra analyse snr "],
)
def test_paths_fall_back_to_zsh_and_fish_file_completion(line):
    """zsh's script is told `_files`; fish keeps its own file completion on."""
    assert complete_zsh(line) == "_files"
    assert fish_completes_files(line)


def test_choices_do_not_fall_back_to_files():
    assert complete_zsh("astra analyse snr --backend ").startswith("_arguments")
    assert not fish_completes_files("astra analyse snr --backend ")


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_bash_script_completes_in_bash(tmp_path):
    """The checked-in script, sourced by a real bash, calling the installed `astra`."""
    script = ROOT / "completions" / "astra.bash"
    probe = f"""
        source {script}
        complete -p astra
        t() {{ COMP_WORDS=("$@"); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); COMPREPLY=()
              _astra_completion astra; echo "${{COMPREPLY[*]}}"; }}
        t astra analyse ''
        t astra analyse grid --continuum-o
        t astra analyse grid --grid gr
    """
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                                  os.environ.get("PATH", "")])}  # fmt: skip
    result = subprocess.run(
        [BASH, "--norc", "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    registered, methods, option, path = result.stdout.splitlines()
    assert "-o default" in registered  # empty answers fall back to file names
    assert methods.split() == method_names()
    assert option == "--continuum-order"
    assert path == ""
