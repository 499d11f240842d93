"""`layers completion`: shell completion scripts for bash, zsh and fish.

typer's own ``--show-completion`` guesses the shell from the parent process, which fails in CI
and containers, so the shell is always named here. The scripts are typer's; they call back
into ``layers`` with ``_LAYERS_COMPLETE`` set, and `enable_runtime` installs typer's matching
completion classes before the app runs. ``completions/`` in the repository holds the output of
``layers completion generate SHELL`` and a test keeps it current.
"""

from __future__ import annotations

from enum import StrEnum

import typer

from . import render

PROG_NAME = "layers"
COMPLETE_VAR = "_LAYERS_COMPLETE"


class Shell(StrEnum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


# Where each shell looks for completions of a command named `layers`.
INSTALL_PATHS = {
    Shell.bash: "~/.local/share/bash-completion/completions/layers",
    Shell.zsh: "~/.zfunc/_layers",
    Shell.fish: "~/.config/fish/completions/layers.fish",
}
INSTALL_NOTES = {
    Shell.bash: "Needs the bash-completion package; new shells pick the file up.",
    Shell.zsh: "Add `fpath=(~/.zfunc $fpath); autoload -Uz compinit && compinit` to ~/.zshrc.",
    Shell.fish: "New fish shells pick the file up.",
}

app = typer.Typer(help="Shell completion scripts for bash, zsh and fish.", no_args_is_help=True)


def script(shell: str) -> str:
    """The completion script for ``shell``, ending in a newline (as stored in completions/)."""
    from typer._completion_shared import get_completion_script

    return get_completion_script(prog_name=PROG_NAME, complete_var=COMPLETE_VAR, shell=shell) + "\n"


def enable_runtime() -> None:
    """Register typer's completion classes, which the generated scripts talk to."""
    from typer._completion_classes import completion_init

    completion_init()


@app.command()
def generate(
    shell: Shell = typer.Argument(..., metavar="SHELL", help="bash, zsh or fish."),
) -> None:
    """Print the completion script for SHELL on stdout."""
    render.plain(script(shell.value).rstrip("\n"))


@app.command()
def install(shell: Shell = typer.Argument(..., metavar="SHELL", help="bash, zsh or fish.")) -> None:
    """Print where to put the completion script for SHELL, and the command that does it."""
    path = INSTALL_PATHS[shell]
    folder = path.rsplit("/", 1)[0]
    render.line(f"mkdir -p {folder} && layers completion generate {shell.value} > {path}")
    render.note(INSTALL_NOTES[shell])
