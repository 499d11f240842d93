"""`layers keys ...`: secrets are printed once and only their hash is stored."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from tests.support import cli as cli_support
from tests.support.cli import run

svc = cli_support.svc  # the fixture: a service on the CLI's data home

SECRET_RE = re.compile(r"lyr_(live|test)_[A-Za-z0-9_-]{32,}")
KEY_KEYS = [
    "id", "label", "prefix", "kind", "project", "status", "created_at", "last_used_at",
    "expires_at", "revoked_at", "rotated_to", "rpm", "tpm", "budget_micro", "budget_credits",
    "spent_micro", "spent_credits",
]  # fmt: skip


@pytest.fixture
def project():
    assert run("projects", "create", "playground").exit_code == 0
    return "playground"


def _secret(result) -> str:
    match = SECRET_RE.search(result.stdout)
    assert match, result.output
    return match.group(0)


def _rows(svc) -> list[dict]:
    return list(svc.db.query("SELECT * FROM api_keys ORDER BY created_at, id"))


def test_create_prints_secret_once_and_stores_only_its_hash(svc, project, isolated_home):
    result = run("keys", "create", "--project", project, "--name", "dev")
    assert result.exit_code == 0, result.output
    secret = _secret(result)
    assert secret.startswith("lyr_live_") and len(secret) >= len("lyr_live_") + 32
    assert result.stdout.strip() == secret  # stdout is just the secret: pipe-friendly
    assert "will not be shown again" in result.stderr

    [row] = _rows(svc)
    assert row["hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret.startswith(row["prefix"]) and len(row["prefix"]) < len(secret)
    assert secret not in json.dumps(row)
    svc.close()
    for path in isolated_home.iterdir():  # the database, its WAL and shm files
        assert secret.encode() not in path.read_bytes(), path.name

    listing = run("keys", "list")
    assert row["prefix"] in listing.stdout
    assert secret not in listing.output
    assert row["hash"] not in run("keys", "list", "--json").stdout


def test_create_with_limits_expiry_budget_and_test_kind(project):
    result = run(
        "keys", "create", "--project", project, "--name", "ci", "--expires", "30d",
        "--rpm", "60", "--tpm", "10000", "--budget", "$1", "--test", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["secret"].startswith("lyr_test_")
    key = data["key"]
    assert list(key) == KEY_KEYS
    assert key["kind"] == "test"
    assert (key["rpm"], key["tpm"], key["budget_micro"]) == (60, 10_000, 100_000_000)
    assert key["expires_at"] is not None

    listing = run("keys", "list", "--project", project)
    assert "60 rpm, 10,000 tpm, 0.00/100.00 credits" in listing.stdout
    assert "active (test)" in listing.stdout


def test_create_for_unknown_project_changes_nothing(svc, project):
    result = run("keys", "create", "--project", "nope")
    assert result.exit_code == 4
    assert "No project named 'nope'. Existing projects: playground." in result.stderr
    assert SECRET_RE.search(result.output) is None
    assert _rows(svc) == []


def test_bad_flag_values(svc, project):
    assert run("keys", "create").exit_code == 2  # --project is required
    assert run("keys", "create", "--project", project, "--rpm", "many").exit_code == 2
    result = run("keys", "create", "--project", project, "--expires", "someday")
    assert result.exit_code == 2
    assert "--expires 'someday'" in result.stderr
    result = run("keys", "create", "--project", project, "--rpm", "0")
    assert result.exit_code == 2
    assert "--rpm must be positive" in result.stderr
    assert _rows(svc) == []


def test_list_hides_inactive_keys_unless_all(svc, project):
    first = run("keys", "create", "--project", project, "--name", "one", "--json")
    key = json.loads(first.stdout)["key"]
    run("keys", "create", "--project", project, "--name", "two")
    result = run("keys", "revoke", key["prefix"])
    assert result.exit_code == 0, result.output
    assert f"Revoked key {key['id']}" in result.stdout

    active = json.loads(run("keys", "list", "--json").stdout)
    assert [k["label"] for k in active] == ["two"]
    everything = json.loads(run("keys", "list", "--all", "--json").stdout)
    assert [(k["label"], k["status"]) for k in everything] == [
        ("one", "revoked"),
        ("two", "active"),
    ]
    assert all(list(k) == KEY_KEYS for k in everything)
    assert "revoked" in run("keys", "list", "--all").stdout

    again = run("keys", "revoke", key["id"])
    assert again.exit_code == 7
    assert "already revoked" in again.stderr


def test_revoke_unknown_key():
    result = run("keys", "revoke", "key_doesnotexist")
    assert result.exit_code == 4
    assert "No key 'key_doesnotexist'" in result.stderr
    assert "layers keys list --all" in result.stderr


def test_rotate_prints_a_new_secret_and_revokes_the_old(svc, project):
    old = json.loads(
        run("keys", "create", "--project", project, "--name", "dev", "--rpm", "5", "--json").stdout
    )
    result = run("keys", "rotate", old["key"]["id"])
    assert result.exit_code == 0, result.output
    new_secret = _secret(result)
    assert new_secret != old["secret"]
    assert "will not be shown again" in result.stderr

    keys = {k["id"]: k for k in json.loads(run("keys", "list", "--all", "--json").stdout)}
    assert keys[old["key"]["id"]]["status"] == "revoked"
    [new] = [k for k in keys.values() if k["status"] == "active"]
    assert (new["label"], new["rpm"]) == ("dev", 5)
    assert keys[old["key"]["id"]]["rotated_to"] == new["id"]
    stored = {r["hash"] for r in _rows(svc)}
    assert hashlib.sha256(new_secret.encode()).hexdigest() in stored


def test_rotating_a_revoked_key_is_refused_and_changes_nothing(svc, project):
    key = json.loads(run("keys", "create", "--project", project, "--json").stdout)["key"]
    run("keys", "revoke", key["id"])
    before = _rows(svc)
    result = run("keys", "rotate", key["id"])
    assert result.exit_code == 7
    assert "is revoked and cannot be rotated" in result.stderr
    assert "layers keys create --project playground" in result.stderr
    assert SECRET_RE.search(result.output) is None
    assert _rows(svc) == before


def test_update_limits_budget_and_label(svc, project):
    key = json.loads(run("keys", "create", "--project", project, "--json").stdout)["key"]
    result = run("keys", "update", key["id"], "--rpm", "10", "--budget", "50", "--name", "prod")
    assert result.exit_code == 0, result.output
    assert "10 rpm" in result.stdout
    [row] = _rows(svc)
    assert (row["rpm"], row["budget_micro"], row["label"]) == (10, 50_000_000, "prod")

    data = json.loads(run("keys", "update", key["id"], "--budget", "none", "--json").stdout)
    assert data["budget_micro"] is None and data["rpm"] == 10
    assert run("keys", "update", key["id"], "--rpm", "0").exit_code == 0
    assert _rows(svc)[0]["rpm"] is None
