"""Holds the daemon keeps in memory: against its reservation (one hold in SQLite covering
its streams in flight), or against the balance itself (a whole response, charged only if the
balance still covers it when the charge is written).

Ledger movements on a real database first, then the running gateway: what another process
sees while requests are in flight, a balance spent by another process during a call, a key
revoked while the reservation has room, the reservation released from outside, and what a
stop leaves behind."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

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
    return ledger.Hold(0, request_id, 0, backing="reservation")


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
def _slow_request(gw, results: list, stream: bool) -> None:
    """One completion whose first token takes 1.5 s (the simulator's directive); streamed,
    it is held against the reservation."""
    client = gw.client(default_headers={"x-layers-simulate": "ttft-ms=1500"})
    try:
        if stream:
            chunks = list(
                client.chat.completions.create(
                    model=MODEL,
                    messages=HELLO,
                    stream=True,
                    stream_options={"include_usage": True},
                )
            )
            results.append(chunks)
        else:
            results.append(client.chat.completions.create(model=MODEL, messages=HELLO))
    except openai.APIStatusError as exc:
        results.append(exc)


@contextlib.contextmanager
def _in_flight(gw, stream: bool = True) -> Iterator[tuple[list, dict | None]]:
    """A slow request running in a thread while the block runs: yields the list that holds
    its outcome afterwards, and (streamed) the balance once its reservation showed."""
    results: list = []
    slow = threading.Thread(target=_slow_request, args=(gw, results, stream))
    slow.start()
    try:
        during = None
        if stream:
            during = _wait_for_reservation(gw)
        else:
            time.sleep(0.3)  # admitted within milliseconds; upstream for 1.5 s
        yield results, during
    finally:
        slow.join(30)


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
        with _in_flight(gw) as (results, during):
            assert during["open_holds"] == 1
            assert during["balance_micro"] == before - during["held_micro"]
            shown = run("--home", str(gw.home), "credits", "balance", "--json")
            assert shown.exit_code == 0, shown.output
            assert '"open_holds": 1' in shown.output
        charged = results[0][-1].model_extra["layers"]["credits_used"]
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
        with _in_flight(gw) as (results, _):
            svc.revoke_key(key["id"])
            rows_before = len(svc.list_requests(limit=100))
            with pytest.raises(openai.AuthenticationError) as refused:
                other.chat.completions.create(model=MODEL, messages=HELLO)
            assert "was revoked" in refused.value.body["message"]
        assert results and results[0][-1].usage.total_tokens > 0
        rows = svc.list_requests(limit=100)
        assert len(rows) == rows_before + 2  # the refusal and the slow request
        assert sum(r["status"] == "error" for r in rows) == 1
        assert svc.balance()["open_holds"] == 0 and svc.verify_ledger()["ok"]
        svc.close()


def test_recover_all_while_a_request_is_in_flight_loses_and_doubles_nothing(tmp_path):
    with running_gateway(tmp_path / "home") as gw:
        before = gw.balance_micro()
        with _in_flight(gw) as (results, _):
            recovered = run("--home", str(gw.home), "ledger", "recover", "--all", "--json")
            assert recovered.exit_code == 0 and '"released_micro": 0' not in recovered.output
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


def test_a_whole_request_is_charged_only_if_the_balance_still_covers_it(tmp_path):
    """A whole response leaves only after its charge is written, so when the daemon's view
    shows the balance covers it, it holds the request in memory only. Another process that
    spends the balance during the call gets the client a 402 instead of the answer: nothing
    is charged and the balance never goes below zero."""
    with running_gateway(tmp_path / "home") as gw:
        client = gw.client()
        client.chat.completions.create(model=MODEL, messages=HELLO)  # the daemon's view
        svc = gw.service()
        try:
            with _in_flight(gw, stream=False) as (results, _):
                assert svc.balance()["held_micro"] == 0  # nothing held in the database
                spent = svc.balance()["balance_micro"]
                ledger.topup(svc.db, -spent, kind="adjustment", note="spent by another process")
            refused = results[0]
            assert isinstance(refused, openai.APIStatusError) and refused.status_code == 402
            assert "was not charged" in refused.body["message"]
            row = svc.list_requests(limit=1)[0]
            assert (row["status"], row["error_code"], row["credits_micro"]) == (
                "error",
                "insufficient_credits",
                0,
            )
            assert svc.balance()["balance_micro"] == 0 and svc.verify_ledger()["ok"]
            ledger.topup(svc.db, spent, kind="adjustment", note="given back")
            answer = client.chat.completions.create(model=MODEL, messages=HELLO)
            assert answer.choices[0].message.content
            assert svc.balance()["open_holds"] == 0 and svc.verify_ledger()["ok"]
        finally:
            svc.close()


def test_a_charge_from_the_balance_refuses_what_is_not_there(db):
    ledger.topup(db, 1_000)
    row_id, _ = ledger.open_reservation(db)
    hold = ledger.Hold(0, "req_whole", 600, backing="balance")
    assert ledger.charge_from_balance(db, hold, 400) == (400, 600)
    assert ledger.charge_from_balance(db, hold, 400) == (400, 600)  # retried: moves nothing
    with pytest.raises(InsufficientCredits) as refused:
        ledger.charge_from_balance(db, ledger.Hold(0, "req_big", 900), 700)
    assert refused.value.extra == {"balance": "0.0006", "required": "0.0007"}
    # what the daemon's requests held against the balance may still charge is not there to
    # reserve
    with pytest.raises(InsufficientCredits):
        ledger.reserve(db, row_id, need=300, want=600, amount=300, pledged=400)
    assert ledger.reserve(db, row_id, need=200, want=400, amount=200, pledged=400) == (
        ledger.Reserved(200, 400)
    )
    assert ledger.balance(db) == ledger.Balance(entries=600, held=200)
    assert ledger.verify(db)["ok"]
