"""The daemon's reservation: one hold in SQLite covering the requests it holds in memory.

Ledger movements on a real database first, then the running gateway: what another process
sees while requests are in flight, a key revoked while the reservation has room, the
reservation released from outside, and what a stop leaves behind."""

from __future__ import annotations

import threading

import httpx
import openai
import pytest

from layers_cli import ledger
from layers_cli.db import open_db
from layers_cli.errors import InsufficientCredits
from tests.support.cli import run
from tests.support.gateway import running_gateway

MODEL = "openai/gpt-4o-mini"
HELLO = [{"role": "user", "content": "Hello"}]


@pytest.fixture
def db(tmp_path):
    database = open_db(tmp_path / "layers.db")
    yield database
    database.close()


def _row(db, row_id: int) -> dict:
    return next(db.query("SELECT amount_micro, status FROM holds WHERE id = ?", [row_id]))


def _held(db, request_id: str) -> ledger.Hold:
    return ledger.Hold(0, request_id, 0, reserved=True)


# ---------------------------------------------------------------- movements
def test_a_growth_takes_what_it_wants_when_the_balance_allows_else_what_it_needs(db):
    ledger.topup(db, 1_000)
    row_id, opened = ledger.open_reservation(db)
    assert opened == ledger.Reserved(0, 1_000)
    assert ledger.reserve(db, row_id, need=100, want=200, amount=100) == ledger.Reserved(200, 800)
    # absolute amounts: a growth that a queued one already covered moves nothing
    assert ledger.reserve(db, row_id, need=150, want=300, amount=50) == ledger.Reserved(200, 800)
    assert ledger.reserve(db, row_id, need=900, want=1_800, amount=700) == ledger.Reserved(900, 100)
    assert ledger.balance(db) == ledger.Balance(entries=1_000, held=900)
    with pytest.raises(InsufficientCredits) as refused:
        ledger.reserve(db, row_id, need=1_100, want=2_200, amount=200)
    # the message quotes what this request could use: the balance outside the reservation
    # plus the reservation's room beyond the other requests (900 in flight): 100 + 0
    assert refused.value.extra["balance"] == "0.0001"
    assert refused.value.extra["required"] == "0.0002"
    assert _row(db, row_id) == {"amount_micro": 900, "status": "open"}
    assert ledger.verify(db)["ok"]


def test_a_charge_is_paid_outside_the_reservation_while_it_can_then_from_it(db):
    ledger.topup(db, 1_000)
    row_id, _ = ledger.open_reservation(db)
    ledger.reserve(db, row_id, need=600, want=600, amount=600)
    charged, left = ledger.charge_reserved(db, row_id, _held(db, "req_a"), 300, idle=False)
    assert (charged, left) == (300, ledger.Reserved(600, 100))  # the reservation stays whole
    charged, left = ledger.charge_reserved(db, row_id, _held(db, "req_b"), 250, idle=False)
    assert (charged, left) == (250, ledger.Reserved(450, 0))  # 100 outside, 150 from it
    assert ledger.balance(db) == ledger.Balance(entries=450, held=450)
    # a retried settlement moves nothing and reports the first charge
    again = ledger.charge_reserved(db, row_id, _held(db, "req_b"), 999, idle=False)
    assert again == (250, ledger.Reserved(450, 0))
    # idle: the rest goes back
    charged, left = ledger.charge_reserved(db, row_id, _held(db, "req_c"), 50, idle=True)
    assert (charged, left) == (50, ledger.Reserved(0, 400))
    assert ledger.balance(db) == ledger.Balance(entries=400, held=0)
    assert ledger.open_holds(db) == []  # an empty reservation holds nothing
    charges = db.conn.execute(
        "SELECT request_id, amount_micro FROM ledger_entries WHERE kind = 'charge' ORDER BY id"
    ).fetchall()
    assert charges == [("req_a", -300), ("req_b", -250), ("req_c", -50)]
    assert ledger.verify(db)["ok"]


def test_a_reservation_released_from_outside_is_reopened_by_the_next_movement(db):
    ledger.topup(db, 1_000)
    row_id, _ = ledger.open_reservation(db)
    ledger.reserve(db, row_id, need=400, want=400, amount=400)
    released = ledger.recover(db, all_processes=True)  # `layers ledger recover --all`
    assert [h.amount for h in released] == [400]
    assert ledger.balance(db) == ledger.Balance(entries=1_000, held=0)
    # the daemon's next charge finds nothing reserved: the balance pays, nothing goes negative
    charged, left = ledger.charge_reserved(db, row_id, _held(db, "req_x"), 100, idle=False)
    assert (charged, left) == (100, ledger.Reserved(0, 900))
    assert ledger.reserve(db, row_id, need=300, want=300, amount=300) == ledger.Reserved(300, 600)
    assert _row(db, row_id) == {"amount_micro": 300, "status": "open"}
    ledger.close_reservation(db, row_id)
    assert _row(db, row_id) == {"amount_micro": 0, "status": "released"}
    assert ledger.balance(db) == ledger.Balance(entries=900, held=0)
    assert ledger.verify(db)["ok"]


# ---------------------------------------------------------------- through the gateway
def _slow_request(gw, results: list, started: threading.Event) -> None:
    """One completion whose first token takes 1.5 s (the simulator's directive)."""
    client = gw.client(default_headers={"x-layers-simulate": "ttft-ms=1500"})
    started.set()
    results.append(client.chat.completions.create(model=MODEL, messages=HELLO))


def _wait_for_reservation(gw, timeout: float = 10) -> dict:
    import time

    svc = gw.service()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            balance = svc.balance()
            if balance["held_micro"] > 0:
                return balance
            time.sleep(0.02)
    finally:
        svc.close()
    raise AssertionError("the daemon never reserved anything")


def test_another_process_sees_the_reservation_while_a_request_is_in_flight(tmp_path):
    with running_gateway(tmp_path / "home") as gw:
        before = gw.balance_micro()
        results: list = []
        started = threading.Event()
        slow = threading.Thread(target=_slow_request, args=(gw, results, started))
        slow.start()
        during = _wait_for_reservation(gw)
        assert during["open_holds"] == 1
        assert during["balance_micro"] == before - during["held_micro"]
        shown = run("--home", str(gw.home), "credits", "balance", "--json")
        assert shown.exit_code == 0, shown.output
        assert '"open_holds": 1' in shown.output
        slow.join(30)
        charged = results[0].model_extra["layers"]["credits_used"]
        svc = gw.service()
        try:
            after = svc.balance()
            # idle again: the reservation went back before the response left
            assert (after["held_micro"], after["open_holds"]) == (0, 0)
            row = svc.list_requests(limit=1)[0]
            assert before - after["balance_micro"] == row["credits_micro"] > 0
            assert abs(row["credits_micro"] / 1e6 - charged) < 1e-9
            assert svc.verify_ledger()["ok"]
        finally:
            svc.close()


def test_a_key_revoked_while_the_reservation_has_room_is_refused_at_once(tmp_path):
    with running_gateway(tmp_path / "home") as gw:
        svc = gw.service()
        key, secret = svc.create_key("playground", label="soon revoked")
        other = gw.client(api_key=secret)
        other.chat.completions.create(model=MODEL, messages=HELLO)  # verified, remembered
        results: list = []
        started = threading.Event()
        slow = threading.Thread(target=_slow_request, args=(gw, results, started))
        slow.start()
        _wait_for_reservation(gw)
        svc.revoke_key(key["id"])
        rows_before = len(svc.list_requests(limit=100))
        with pytest.raises(openai.AuthenticationError) as refused:
            other.chat.completions.create(model=MODEL, messages=HELLO)
        assert "was revoked" in refused.value.body["message"]
        slow.join(30)
        assert results and results[0].choices[0].message.content
        rows = svc.list_requests(limit=100)
        assert len(rows) == rows_before + 2  # the refusal and the slow request
        assert sum(r["status"] == "error" for r in rows) == 1
        assert svc.balance()["open_holds"] == 0 and svc.verify_ledger()["ok"]
        svc.close()


def test_recover_all_while_a_request_is_in_flight_loses_and_doubles_nothing(tmp_path):
    with running_gateway(tmp_path / "home") as gw:
        before = gw.balance_micro()
        results: list = []
        started = threading.Event()
        slow = threading.Thread(target=_slow_request, args=(gw, results, started))
        slow.start()
        _wait_for_reservation(gw)
        recovered = run("--home", str(gw.home), "ledger", "recover", "--all", "--json")
        assert recovered.exit_code == 0 and '"released_micro": 0' not in recovered.output
        slow.join(30)
        assert results, "the request in flight still completed"
        client = gw.client()
        for _ in range(3):  # the next requests reopen the reservation
            client.chat.completions.create(model=MODEL, messages=HELLO)
        svc = gw.service()
        try:
            charges = svc.list_requests(limit=10)
            assert len(charges) == 4
            spent = sum(r["credits_micro"] for r in charges)
            assert before - svc.balance()["balance_micro"] == spent > 0
            assert svc.balance()["open_holds"] == 0 and svc.verify_ledger()["ok"]
        finally:
            svc.close()


def test_a_stopped_daemon_leaves_its_reservation_released(tmp_path):
    home = tmp_path / "home"
    with running_gateway(home) as gw:
        client = gw.client()
        for _ in range(3):
            client.chat.completions.create(model=MODEL, messages=HELLO)
        httpx.get(gw.base_url.removesuffix("/v1") + "/health")
    db = open_db(home / "layers.db")
    try:
        rows = list(db.query("SELECT request_id, amount_micro, status FROM holds"))
        reservations = [r for r in rows if r["request_id"].startswith("reservation:")]
        assert [(r["amount_micro"], r["status"]) for r in reservations] == [(0, "released")]
        assert ledger.verify(db)["ok"] and ledger.balance(db).held == 0
    finally:
        db.close()
