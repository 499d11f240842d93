"""Shell completions: the scripts in completions/ are current, and they really complete."""

from __future__ import annotations

from pathlib import Path

import pytest

from layers_cli.cli import app
from layers_cli.cli.completion import COMPLETE_VAR, enable_runtime, script
from tests.support.cli import run, runner

COMPLETIONS = Path(__file__).resolve().parents[1] / "completions"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_checked_in_completions_are_current(shell):
    path = COMPLETIONS / f"layers.{shell}"
    expected = run("completion", "generate", shell).stdout
    assert expected == script(shell)
    assert path.read_text() == expected, (
        f"{path} is stale; regenerate it with "
        f"`python -m layers_cli completion generate {shell} > completions/layers.{shell}`"
    )


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_scripts_name_the_layers_program(shell):
    text = script(shell)
    assert f"{COMPLETE_VAR}=complete_{shell}" in text
    assert "layers" in text


def test_unknown_shell_is_a_usage_error():
    result = run("completion", "generate", "tcsh")
    assert result.exit_code == 2
    assert "tcsh" in result.output


@pytest.mark.parametrize(
    ("shell", "where"),
    [
        ("bash", "bash-completion/completions/layers"),
        ("zsh", ".zfunc/_layers"),
        ("fish", "fish/completions/layers.fish"),
    ],
)
def test_install_says_where_the_script_goes(shell, where):
    result = run("completion", "install", shell)
    assert result.exit_code == 0
    assert f"layers completion generate {shell} > " in result.stdout
    assert where in result.stdout


def _complete(env: dict[str, str]) -> str:
    enable_runtime()
    result = runner.invoke(
        app, [], env={COMPLETE_VAR: "", **env}, prog_name="layers", complete_var=COMPLETE_VAR
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def test_bash_completion_completes_commands_and_subcommands():
    out = _complete({COMPLETE_VAR: "complete_bash", "COMP_WORDS": "layers pro", "COMP_CWORD": "1"})
    assert out.split() == ["projects", "providers"]
    out = _complete(
        {COMPLETE_VAR: "complete_bash", "COMP_WORDS": "layers keys ro", "COMP_CWORD": "2"}
    )
    assert out.split() == ["rotate"]


def test_zsh_completion_completes_option_values():
    out = _complete(
        {COMPLETE_VAR: "complete_zsh", "_TYPER_COMPLETE_ARGS": "layers models list --capability im"}
    )
    assert "image-gen" in out
