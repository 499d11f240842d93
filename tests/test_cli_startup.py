"""Start-up: what `layers` imports, and that the shortcuts taken for speed change no output.

Nothing here is timed. Each check runs the real entry point, `layers_cli.cli.main`, in a fresh
interpreter and looks at `sys.modules` afterwards. bench/ has the timings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from enum import Enum
from pathlib import Path

import pytest
import typer
from typer._click.exceptions import BadParameter
from typer._coercion import build_runtime_param
from typer.main import get_command

from layers_cli.cli import app
from layers_cli.cli.coerce import LazyCoercion

REPO = Path(__file__).resolve().parents[1]

# For `layers serve`, the gateway and provider credentials; no command below needs them.
SERVER_STACK = {
    "uvicorn", "starlette", "httpx", "anyio", "PIL", "keyring",
    "layers_cli.gateway", "layers_cli.server", "layers_cli.providers", "layers_cli.routing",
}  # fmt: skip
# pydantic only comes in through typer's parameter coercion; see layers_cli/cli/coerce.py.
# markdown_it and pygments would come in through typer's rich help, which `layers` turns off.
NEVER = SERVER_STACK | {"pydantic", "markdown_it", "pygments", "rich.markdown", "rich.traceback"}
WATCHED = NEVER | {"rich", "sqlite_utils", "tomllib", "layers_cli.service", "layers_cli.catalog"}

PROBE = """
import json, sys
from layers_cli.cli import main
sys.argv = ["layers", *sys.argv[1:]]
try:
    main()
    code = 0
except SystemExit as exc:
    code = exc.code
loaded = [w for w in WATCHED if w in sys.modules]
print("\\nPROBE " + json.dumps({"exit": code, "loaded": loaded}), file=sys.stderr)
"""


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "LAYERS_HOME": str(home), "COLUMNS": "100"}


def _probe(home: Path, *args: str) -> tuple[set[str], str]:
    """Run ``layers ARGS`` through `main()`; the watched modules it loaded, and its stdout."""
    code = f"WATCHED = {sorted(WATCHED)!r}\n{PROBE}"
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True, text=True, env=_env(home), cwd=REPO, timeout=60,
    )  # fmt: skip
    report = json.loads(proc.stderr.rsplit("PROBE ", 1)[-1])
    assert report["exit"] in (0, None), proc.stderr
    return set(report["loaded"]), proc.stdout


def test_importing_the_cli_loads_no_rich_database_or_server(isolated_home):
    code = (
        f"import sys, layers_cli.cli; print([w for w in {sorted(WATCHED)!r} if w in sys.modules])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, env=_env(isolated_home), cwd=REPO, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("args", [["--help"], ["credits", "--help"], ["serve", "--help"]])
def test_help_loads_neither_rich_nor_the_database_catalog_or_server(isolated_home, args):
    loaded, out = _probe(isolated_home, *args)
    assert "Usage: layers" in out
    assert loaded == set()


@pytest.mark.parametrize(
    "args",
    [
        ["credits", "balance", "--json"],
        ["usage", "--json", "--by", "model", "--since", "7d"],
        ["requests", "list", "--json", "-n", "5"],
        ["--home", "{home}", "info", "--json"],
    ],
)
def test_json_commands_load_the_database_only(isolated_home, args):
    args = [a.format(home=isolated_home) for a in args]
    loaded, out = _probe(isolated_home, *args)
    json.loads(out)
    assert loaded == {"sqlite_utils", "layers_cli.service"}


@pytest.mark.parametrize("args", [["credits", "balance"], ["usage"], ["requests", "list"]])
def test_table_commands_add_rich_and_nothing_heavier(isolated_home, args):
    loaded, _ = _probe(isolated_home, *args)
    assert loaded == {"rich", "sqlite_utils", "layers_cli.service"}


def test_models_list_parses_the_catalog_without_the_server_stack(isolated_home):
    loaded, out = _probe(isolated_home, "models", "list", "--json")
    assert json.loads(out)
    assert "layers_cli.catalog" in loaded
    assert not loaded & NEVER


# -- coercion: the pydantic-free shortcuts give what typer gives -----------------------------


def _param(path: list[str], name: str) -> tuple[typer.Context, object]:
    command = get_command(app)
    for part in path:
        command = command.commands[part]  # type: ignore[attr-defined]
    [param] = [p for p in command.params if p.name == name]
    return typer.Context(command), param


def _both(path: list[str], name: str, value: object) -> tuple[object, object]:
    """(typer's own result, ours); an error is compared as (type, message)."""
    ctx, param = _param(path, name)
    results = []
    descriptor = param.type_descriptor  # type: ignore[attr-defined]
    for coercion in (build_runtime_param(descriptor), LazyCoercion(descriptor)):
        try:
            results.append(coercion.coerce(value, param=param, ctx=ctx))
        except BadParameter as exc:
            results.append((type(exc), exc.format_message()))
    return results[0], results[1]


def test_installed_on_every_parameter():
    def walk(command):
        yield command
        for sub in getattr(command, "commands", {}).values():
            yield from walk(sub)

    for command in walk(get_command(app)):
        for param in command.params:
            assert isinstance(param._runtime_param, LazyCoercion), (command.name, param.name)


@pytest.mark.parametrize(
    "value", [None, 50, "0", "7", "007", "-3", "+5", " 5", "5_0", "1e3", "", "x", "9" * 25]
)
def test_int_matches_typer(value):
    typer_result, ours = _both(["requests", "list"], "limit", value)
    assert ours == typer_result and type(ours) is type(typer_result)


@pytest.mark.parametrize("value", [None, "", "playground", "ünïcode", " spaced "])
def test_str_matches_typer(value):
    typer_result, ours = _both(["usage"], "project", value)
    assert ours == typer_result


@pytest.mark.parametrize("value", [None, "day", "model", "MODEL", "bogus", ""])
def test_enum_matches_typer(value):
    typer_result, ours = _both(["usage"], "by", value)
    assert ours == typer_result
    if isinstance(ours, Enum):
        assert ours is typer_result


def test_path_matches_typer(tmp_path):
    (tmp_path / "file").write_text("")
    for value in [None, "", str(tmp_path), str(tmp_path / "file"), str(tmp_path / "missing")]:
        typer_result, ours = _both([], "home", value)
        assert ours == typer_result, value
    assert isinstance(_both([], "home", str(tmp_path / "file"))[1], tuple)  # "is a file"
