"""`astra completion SHELL`: print the shell's tab-completion script.

The scripts are Typer's own: a few lines that call `astra` back with `_ASTRA_COMPLETE` set, so
every answer (commands, method names, each method's options, choices) comes from the installed
CLI and its entry points, and a new plugin completes without regenerating anything. Path-typed
options and arguments answer nothing, which makes each shell fall back to completing file names
(bash `-o default`, zsh `_files`, fish's own file completion). The same scripts are checked in
as completions/astra.{bash,zsh,fish}; tests/test_completion.py fails when they drift.
"""

from __future__ import annotations

import os
from typing import Annotated, Literal

import typer

PROG_NAME = "astra"
COMPLETE_VAR = "_ASTRA_COMPLETE"
SHELLS = ("bash", "zsh", "fish")
Shell = Literal["bash", "zsh", "fish"]

INSTALL = """\
[bold]Install[/]

  bash: astra completion bash > ~/.astra-completion.bash
        and in ~/.bashrc: source ~/.astra-completion.bash
  zsh:  astra completion zsh > ~/.astra-completion.zsh
        and in ~/.zshrc, after compinit: source ~/.astra-completion.zsh
  fish: astra completion fish > ~/.config/fish/completions/astra.fish
"""


def enable_shell_completion() -> None:
    """For a completion request, register Typer's bash, zsh and fish completion classes, which
    answer in the format its scripts read (click's own classes answer in another). Typer does
    this only when it adds its --install-completion options, which astra leaves out in favour
    of this command."""
    if COMPLETE_VAR in os.environ:
        from typer.completion import completion_init

        completion_init()


def completion_script(shell: str) -> str:
    """The completion script for `shell`, as checked in under completions/."""
    from typer.completion import get_completion_script

    script = get_completion_script(prog_name=PROG_NAME, complete_var=COMPLETE_VAR, shell=shell)
    return script + "\n"


def completion_command(
    shell: Annotated[
        Shell,
        typer.Argument(help="The shell to print the script for.", metavar="SHELL"),
    ],
) -> None:
    """Print the tab-completion script for bash, zsh or fish.

    It completes commands, method names, each method's options, the values of options with a
    fixed set of choices, and file names where a path is expected.
    """
    typer.echo(completion_script(shell), nl=False)
