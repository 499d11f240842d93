"""`layers projects ...` as a user types it."""

from __future__ import annotations

import json

from layers_cli import requestlog
from layers_cli.db import now_iso
from tests.support import cli as cli_support
from tests.support.cli import run

svc = cli_support.svc  # the fixture: a service on the CLI's data home

PROJECT_KEYS = [
    "id", "name", "description", "status", "created_at", "archived_at", "active_keys",
    "budget_micro", "budget_credits", "spent_micro", "spent_credits",
]  # fmt: skip


def test_create_list_and_json_keys(svc):
    result = run("projects", "create", "playground", "--description", "AI playground")
    assert result.exit_code == 0, result.output
    assert "Created project playground" in result.stdout
    run("projects", "create", "agents", "--budget", "$2")

    table = run("projects", "list")
    assert table.exit_code == 0
    assert "playground" in table.stdout and "AI playground" in table.stdout
    assert "0.00 of 200.00 credits" in table.stdout

    data = json.loads(run("projects", "list", "--json").stdout)
    assert [p["name"] for p in data] == ["agents", "playground"]
    assert all(list(p) == PROJECT_KEYS for p in data)
    assert data[0]["budget_micro"] == 200_000_000
    assert data[0]["budget_credits"] == 200.0
    assert data[1]["budget_micro"] is None
    assert [p["name"] for p in svc.list_projects()] == ["agents", "playground"]


def test_list_when_empty_says_how_to_start():
    result = run("projects", "list")
    assert result.exit_code == 0
    assert "layers projects create NAME" in result.stderr
    assert json.loads(run("projects", "list", "--json").stdout) == []


def test_duplicate_project_is_refused_and_changes_nothing(svc):
    run("projects", "create", "playground", "--description", "first")
    result = run("projects", "create", "Playground", "--description", "second")
    assert result.exit_code == 7
    assert "Error: A project named 'Playground' already exists." in result.stderr
    assert "layers projects list" in result.stderr
    projects = svc.list_projects()
    assert [(p["name"], p["description"]) for p in projects] == [("playground", "first")]


def test_unknown_project_lists_the_existing_ones():
    run("projects", "create", "alpha")
    run("projects", "create", "beta")
    result = run("projects", "show", "gamma")
    assert result.exit_code == 4
    assert "No project named 'gamma'. Existing projects: alpha, beta." in result.stderr
    assert "layers projects create gamma" in result.stderr
    assert result.stdout == ""


def test_show_has_keys_and_this_months_usage(svc):
    run("projects", "create", "playground")
    key, _ = svc.create_key("playground", label="dev")
    with svc.db.conn:
        requestlog.insert(
            svc.db.conn,
            requestlog.RequestRow(
                id="req_1", created_at=now_iso(), endpoint="chat", key_id=key["id"],
                project_id=key["project_id"], model="openai/gpt-4o", prompt_tokens=100,
                completion_tokens=50, credits_micro=1_000_000, base_micro=62_500_000,
            ),
        )  # fmt: skip
    result = run("projects", "show", "playground")
    assert result.exit_code == 0, result.output
    assert "dev" in result.stdout and key["prefix"] in result.stdout
    assert "This month" in result.stdout
    assert "1 (1 succeeded)" in result.stdout

    data = json.loads(run("projects", "show", "playground", "--json").stdout)
    assert list(data)[: len(PROJECT_KEYS)] == PROJECT_KEYS
    assert [k["label"] for k in data["keys"]] == ["dev"]
    assert data["usage_this_month"]["requests"] == 1
    assert data["usage_this_month"]["prompt_tokens"] == 100
    assert data["usage_this_month"]["credits_micro"] == 1_000_000


def test_rename_and_archive(svc):
    run("projects", "create", "old")
    run("keys", "create", "--project", "old")
    result = run("projects", "rename", "old", "new")
    assert result.exit_code == 0
    assert "Renamed project old to new" in result.stdout
    assert [p["name"] for p in svc.list_projects()] == ["new"]

    result = run("projects", "archive", "new")
    assert result.exit_code == 0
    assert "no longer work" in result.stdout
    assert json.loads(run("projects", "list", "--json").stdout)[0]["status"] == "archived"
    keys = json.loads(run("keys", "list", "--all", "--json").stdout)
    assert [k["status"] for k in keys] == ["archived"]

    again = run("projects", "archive", "new")
    assert again.exit_code == 7
    assert "already archived" in again.stderr


def test_rename_onto_existing_name_is_refused(svc):
    run("projects", "create", "a")
    run("projects", "create", "b")
    result = run("projects", "rename", "a", "b")
    assert result.exit_code == 7
    assert "already exists" in result.stderr
    assert [p["name"] for p in svc.list_projects()] == ["a", "b"]


def test_budget_set_clear_and_bad_amounts(svc):
    run("projects", "create", "p")
    result = run("projects", "budget", "p", "$3")
    assert result.exit_code == 0, result.output
    assert "0.00 of 300.00 credits" in result.stdout
    assert svc.list_projects()[0]["budget_micro"] == 300_000_000

    for bad in ("-5", "zero", "0"):
        result = run("projects", "budget", "p", bad)
        assert result.exit_code == 2, bad
        assert "Error:" in result.stderr
        assert svc.list_projects()[0]["budget_micro"] == 300_000_000

    result = run("projects", "budget", "p", "none")
    assert result.exit_code == 0
    assert "no budget" in result.stdout
    assert svc.list_projects()[0]["budget_micro"] is None


def test_missing_argument_is_a_usage_error():
    result = run("projects", "create")
    assert result.exit_code == 2
    assert "Missing argument" in result.output
