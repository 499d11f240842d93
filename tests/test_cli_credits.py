"""`layers credits ...`: top-ups in credits or dollars, balance, and the ledger history."""

from __future__ import annotations

import json

import pytest

from layers_cli import ledger
from tests.support import cli as cli_support
from tests.support.cli import run

svc = cli_support.svc  # the fixture: a service on the CLI's data home

ENTRY_KEYS = [
    "id", "created_at", "kind", "amount_micro", "amount_credits", "balance_micro",
    "balance_credits", "request_id", "key_id", "project_id", "note",
]  # fmt: skip
BALANCE_KEYS = [
    "balance_micro", "balance_credits", "balance_usd", "held_micro", "held_credits",
    "open_holds", "entries_micro", "used_micro", "used_credits",
]  # fmt: skip


def test_topup_in_credits_and_dollars(svc):
    result = run("credits", "topup", "500", "--note", "first")
    assert result.exit_code == 0, result.output
    assert "Added 500.00 credits ($5.00). Balance: 500.00 credits ($5.00)." in result.stdout
    data = json.loads(run("credits", "topup", "$2.50", "--json").stdout)
    assert data["added_micro"] == 250_000_000
    assert data["balance_micro"] == 750_000_000
    assert svc.balance()["balance_micro"] == 750_000_000
    assert [e["note"] for e in ledger.history(svc.db)] == ["", "first"]


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("0", "The amount must be positive, got '0'."),
        ("$0", "The amount must be positive"),
        ("-5", "must be positive, got '-5'"),
        ("-$5", "must be positive, got '-$5'"),
        ("abc", "'abc' is not an amount."),
        ("5 euros", "is not an amount"),
        ("", "is not an amount"),
    ],
)
def test_bad_topups_are_refused_and_change_nothing(svc, amount, message):
    run("credits", "topup", "100")
    result = run("credits", "topup", amount)
    assert result.exit_code == 2, result.output
    assert "Error:" in result.stderr and message in result.stderr
    assert "Traceback" not in result.output
    assert len(ledger.history(svc.db)) == 1
    assert svc.balance()["balance_micro"] == 100_000_000


def test_topup_without_amount_is_a_usage_error():
    result = run("credits", "topup")
    assert result.exit_code == 2
    assert "Missing argument" in result.output


def test_balance_counts_open_holds(svc):
    run("credits", "topup", "100")
    ledger.hold(svc.db, 25_000_000, "req_1")
    result = run("credits", "balance")
    assert result.exit_code == 0
    assert "75.00 credits ($0.75)" in result.stdout
    assert "25.00 credits in 1 open hold(s)" in result.stdout
    data = json.loads(run("credits", "balance", "--json").stdout)
    assert list(data) == BALANCE_KEYS
    assert (data["balance_micro"], data["held_micro"], data["open_holds"]) == (
        75_000_000,
        25_000_000,
        1,
    )


def test_history_has_every_entry_with_a_running_balance(svc):
    run("credits", "topup", "100", "--note", "start")
    h = ledger.hold(svc.db, 10_000_000, "req_abc")
    ledger.settle(svc.db, h, 3_360_000)
    run("credits", "topup", "$1")

    result = run("credits", "history")
    assert result.exit_code == 0
    for text in ("topup", "charge", "-3.36", "+100.00", "96.64", "196.64", "req_abc", "start"):
        assert text in result.stdout

    data = json.loads(run("credits", "history", "--json").stdout)
    assert all(list(e) == ENTRY_KEYS for e in data)
    assert [(e["kind"], e["amount_micro"], e["balance_micro"]) for e in data] == [
        ("topup", 100_000_000, 196_640_000),
        ("charge", -3_360_000, 96_640_000),
        ("topup", 100_000_000, 100_000_000),
    ]
    assert len(json.loads(run("credits", "history", "--limit", "1", "--json").stdout)) == 1


def test_history_empty_and_bad_limit():
    result = run("credits", "history")
    assert result.exit_code == 0
    assert "layers credits topup" in result.stderr
    bad = run("credits", "history", "--limit", "0")
    assert bad.exit_code == 2
    assert "--limit must be positive" in bad.stderr
    assert run("credits", "history", "--limit", "x").exit_code == 2
