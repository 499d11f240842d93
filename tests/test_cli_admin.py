"""`layers` itself: global flags, info, account, ledger, error rendering, a corrupt database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from layers_cli import ledger, requestlog
from layers_cli.cli import app
from layers_cli.db import immediate
from tests.support import cli as cli_support
from tests.support.cli import run

svc = cli_support.svc  # the fixture: a service on the CLI's data home


def test_help_lists_every_group():
    result = run("--help")
    assert result.exit_code == 0
    for group in ("info", "account", "projects", "keys", "credits", "ledger", "models",
                  "usage", "requests", "providers", "completion"):  # fmt: skip
        assert group in result.stdout


def test_every_command_has_help():
    from typer.main import get_command

    def walk(cmd, path):
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, [*path, name])

    for path, cmd in walk(get_command(app), ["layers"]):
        assert (cmd.help or "").strip(), f"`{' '.join(path)}` has no help text"


def test_version():
    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == "layers 0.1.0"


def test_unknown_flag_is_a_usage_error():
    result = run("info", "--bogus")
    assert result.exit_code == 2
    assert "No such option" in result.output


def test_info_shows_paths_schema_and_counts(isolated_home):
    result = run("info")
    assert result.exit_code == 0, result.output
    assert str(isolated_home / "layers.db") in result.stdout
    assert "Schema version" in result.stdout

    data = json.loads(run("info", "--json").stdout)
    assert {"home", "database", "config", "schema_version", "counts", "version"} <= set(data)
    assert data["home"] == str(isolated_home)
    assert data["schema_version"] >= 1
    assert data["counts"] == {
        "projects": 0, "api_keys": 0, "ledger_entries": 0, "holds": 0, "requests": 0
    }  # fmt: skip


def test_home_flag_overrides_layers_home(tmp_path, isolated_home):
    other = tmp_path / "elsewhere"
    result = run("--home", str(other), "projects", "create", "moved")
    assert result.exit_code == 0, result.output
    data = json.loads(run("--home", str(other), "info", "--json").stdout)
    assert data["home"] == str(other)
    assert data["counts"]["projects"] == 1
    assert (other / "layers.db").exists()
    assert json.loads(run("info", "--json").stdout)["counts"]["projects"] == 0


def test_account_shows_balance_holds_projects_and_keys():
    run("projects", "create", "playground")
    run("keys", "create", "--project", "playground", "--name", "dev")
    run("credits", "topup", "$5")
    result = run("account")
    assert result.exit_code == 0, result.output
    assert "500.00 credits ($5.00)" in result.stdout
    assert "playground" in result.stdout and "dev" in result.stdout

    data = json.loads(run("account", "--json").stdout)
    assert data["balance_micro"] == 500_000_000
    assert data["balance_credits"] == 500.0
    assert data["balance_usd"] == 5.0
    assert data["open_holds"] == 0
    assert [p["name"] for p in data["projects"]] == ["playground"]
    assert [k["label"] for k in data["keys"]] == ["dev"]
    assert "hash" not in data["keys"][0]


def test_ledger_verify_ok_and_mismatch(svc):
    run("credits", "topup", "100")
    result = run("ledger", "verify")
    assert result.exit_code == 0
    assert "Ledger OK" in result.stdout
    assert json.loads(run("ledger", "verify", "--json").stdout)["ok"] is True

    with svc.db.conn:  # simulate a damaged running total
        svc.db.conn.execute("UPDATE account SET entries_micro = entries_micro + 1")
    result = run("ledger", "verify")
    assert result.exit_code == 1
    assert "running totals disagree" in result.stderr


def test_ledger_verify_checks_and_rebuilds_the_usage_totals(svc):
    row = requestlog.RequestRow(
        id="req_x", created_at="2026-11-30T14:05:00.000Z", endpoint="chat", credits_micro=5
    )
    with immediate(svc.db) as conn:
        requestlog.insert(conn, row)
    assert run("ledger", "verify").exit_code == 0
    with svc.db.conn:  # damage the rollup only
        svc.db.conn.execute("UPDATE usage_rollup SET credits_micro = credits_micro + 1")
    result = run("ledger", "verify")
    assert result.exit_code == 1
    assert "usage totals disagree" in result.stderr and "2026-11-30T14" in result.stderr
    assert "--rebuild-usage" in result.stderr
    assert json.loads(run("ledger", "verify", "--json").stdout)["totals_ok"] is True
    repaired = run("ledger", "verify", "--rebuild-usage")
    assert repaired.exit_code == 0 and "usage totals match" in repaired.stdout
    assert run("usage", "--json").stdout and svc.usage()["total"]["credits_micro"] == 5


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_ledger_recover_releases_stale_holds_only(svc):
    run("credits", "topup", "100")
    ledger.hold(svc.db, 10_000_000, "req_dead")
    ledger.hold(svc.db, 5_000_000, "req_alive")
    with svc.db.conn:
        svc.db.conn.execute(
            "UPDATE holds SET pid = ? WHERE request_id = 'req_dead'", (_dead_pid(),)
        )

    result = run("ledger", "recover")
    assert result.exit_code == 0, result.output
    assert "req_dead" in result.stdout and "req_alive" not in result.stdout
    assert "10.00 credits" in result.stdout
    assert [h["request_id"] for h in ledger.open_holds(svc.db)] == ["req_alive"]

    data = json.loads(run("ledger", "recover", "--all", "--json").stdout)
    assert data == {
        "released": [{"request_id": "req_alive", "amount_micro": 5_000_000}],
        "released_micro": 5_000_000,
    }
    assert ledger.open_holds(svc.db) == []
    assert svc.balance()["balance_micro"] == 100_000_000
    assert "nothing to release" in run("ledger", "recover").stdout


@pytest.mark.parametrize(
    "args",
    [
        ["info"],
        ["credits", "topup", "500"],
        ["projects", "create", "x"],
        ["projects", "list"],
        ["keys", "list"],
        ["usage"],
    ],
)
def test_corrupt_database_is_refused_and_left_alone(isolated_home, args):
    isolated_home.mkdir(parents=True)
    db = isolated_home / "layers.db"
    garbage = b"this is not a database\x00" * 200
    db.write_bytes(garbage)
    result = run(*args)
    assert result.exit_code == 3
    assert "Error:" in result.stderr
    assert "is not a usable Layers database" in result.stderr
    assert "Move the file aside" in result.stderr
    assert "Traceback" not in result.output
    assert db.read_bytes() == garbage
    assert sorted(p.name for p in isolated_home.iterdir()) == ["layers.db"]


def test_bad_config_file_is_reported(isolated_home):
    isolated_home.mkdir(parents=True)
    (isolated_home / "config.toml").write_text("markup = [oops")
    result = run("info")
    assert result.exit_code == 2
    assert "is not valid TOML" in result.stderr
    assert "Traceback" not in result.output


def test_python_dash_m_works(isolated_home):
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "LAYERS_HOME": str(isolated_home)}
    proc = subprocess.run(
        [sys.executable, "-m", "layers_cli", "--help"],
        capture_output=True, text=True, env=env, cwd=repo, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Usage: layers" in proc.stdout
    assert "projects" in proc.stdout
