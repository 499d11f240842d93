"""The ledger against a real SQLite file: races, idempotency, crash recovery, invariants."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layers_cli import ledger, requestlog
from layers_cli.db import immediate, open_db
from layers_cli.errors import BudgetExceeded, InsufficientCredits, InvalidRequest


@pytest.fixture
def db(tmp_path):
    database = open_db(tmp_path / "ledger.db")
    yield database
    database.close()


def sums(db):
    entries = db.conn.execute(
        "SELECT COALESCE(SUM(amount_micro),0) FROM ledger_entries"
    ).fetchone()[0]
    held = db.conn.execute(
        "SELECT COALESCE(SUM(amount_micro),0) FROM holds WHERE status='open'"
    ).fetchone()[0]
    return entries, held


def test_topup_hold_settle_release(db):
    ledger.topup(db, 10_000_000, note="first")
    h = ledger.hold(db, 4_000_000, "req_a")
    assert ledger.balance(db).available == 6_000_000 == h.available_after
    assert ledger.hold(db, 4_000_000, "req_a").available_after is None  # the same, placed before
    assert ledger.settle(db, h, 1_500_000) == 1_500_000
    assert ledger.balance(db).available == 8_500_000
    h2 = ledger.hold(db, 2_000_000, "req_b")
    ledger.release(db, h2)
    assert ledger.balance(db) == ledger.Balance(entries=8_500_000, held=0)
    kinds = [row["kind"] for row in ledger.history(db)]
    assert kinds == ["charge", "topup"]
    assert ledger.history(db)[0]["balance_micro"] == 8_500_000
    assert ledger.verify(db)["ok"]


def test_operations_are_idempotent_per_request(db):
    ledger.topup(db, 5_000_000)
    h = ledger.hold(db, 1_000_000, "req_same")
    assert ledger.hold(db, 1_000_000, "req_same") == h  # a retried hold is the same hold
    assert ledger.balance(db).held == 1_000_000
    ledger.settle(db, h, 700_000)
    assert ledger.settle(db, h, 700_000) == 700_000  # a retried settle charges nothing more
    ledger.release(db, h)  # releasing a settled hold changes nothing
    assert ledger.balance(db).available == 4_300_000
    assert (
        db.conn.execute("SELECT COUNT(*) FROM ledger_entries WHERE kind='charge'").fetchone()[0]
        == 1
    )


def test_hold_beyond_balance_is_refused_and_changes_nothing(db):
    ledger.topup(db, 1_000_000)
    with pytest.raises(InsufficientCredits) as err:
        ledger.hold(db, 1_000_001, "req_big")
    assert err.value.extra["balance"] == "1.00"
    assert err.value.extra["required"] == "1.000001"
    assert "layers credits topup" in err.value.to_body()["error"]["message"]
    assert ledger.balance(db) == ledger.Balance(1_000_000, 0)
    assert db.conn.execute("SELECT COUNT(*) FROM holds").fetchone()[0] == 0


def test_bad_amounts_are_refused(db):
    for amount in (0, -5):
        with pytest.raises(InvalidRequest):
            ledger.topup(db, amount)
    with pytest.raises(InvalidRequest):
        ledger.topup(db, 1.5)  # type: ignore[arg-type]
    assert ledger.balance(db).entries == 0


def test_budget_of_a_key_is_enforced(db):
    db.conn.execute(
        "INSERT INTO projects (name, created_at, budget_micro) VALUES ('p', 'now', 3000000)"
    )
    db.conn.commit()
    ledger.topup(db, 100_000_000)
    h = ledger.hold(db, 2_000_000, "r1", project_id=1, project_name="p")
    ledger.settle(db, h, 2_000_000)
    with pytest.raises(BudgetExceeded) as err:
        ledger.hold(db, 1_500_000, "r2", project_id=1, project_name="p")
    assert err.value.extra["budget"] == "project"
    assert "project budget of p" in err.value.message


def _project_and_key(db):
    """Project 1 and its key ``key_1``, written by hand (the ledger only names them)."""
    db.conn.execute("INSERT INTO projects (id, name, created_at) VALUES (1, 'p', 'now')")
    db.conn.execute(
        "INSERT INTO api_keys (id, project_id, kind, prefix, hash, created_at)"
        " VALUES ('key_1', 1, 'live', 'lyr_live_x', 'h', 'now')"
    )
    db.conn.commit()


def test_any_writer_of_an_entry_moves_the_totals(db):
    """The account's entries and a charge's key and project spending are kept by a trigger
    (migration m003): an entry written by hand moves them like one written by the ledger."""
    _project_and_key(db)
    ledger.topup(db, 10_000)
    h = ledger.hold(db, 4_000, "r1", key_id="key_1", project_id=1)
    ledger.settle(db, h, 3_000)
    with db.conn:
        db.conn.execute(
            "INSERT INTO ledger_entries (created_at, kind, amount_micro, key_id, project_id)"
            " VALUES ('now', 'charge', -500, 'key_1', 1), ('now', 'refund', 200, 'key_1', 1)"
        )
    spent = db.conn.execute(
        "SELECT (SELECT spent_micro FROM api_keys), (SELECT spent_micro FROM projects)"
    ).fetchone()
    assert spent == (3_500, 3_500)  # a refund is not negative spending
    assert ledger.balance(db) == ledger.Balance(entries=6_700, held=0)
    assert ledger.verify(db)["ok"]


@pytest.mark.parametrize("in_batch", [False, True], ids=["own-transaction", "savepoint"])
def test_a_charge_that_fails_halfway_leaves_nothing_behind(db, in_batch):
    """Entries and request rows are written OR FAIL (no statement journal): what a failing
    insert wrote before it failed is undone with its movement, alone or inside the daemon's
    batch. A trigger made to fail (FAIL: keeping what was written) after the entry and its
    totals are written shows it."""
    _project_and_key(db)
    ledger.topup(db, 10_000)
    h = ledger.hold(db, 4_000, "r1", key_id="key_1", project_id=1)
    row = requestlog.RequestRow(id="r1", created_at="2026-12-01T00:00:00.000Z", endpoint="chat")
    with db.conn:
        db.conn.execute(
            "CREATE TRIGGER refuse_charges AFTER INSERT ON ledger_entries"
            " WHEN NEW.kind = 'charge' BEGIN SELECT RAISE(FAIL, 'refused by the test'); END"
        )

    def settle() -> None:
        ledger.settle(db, h, 3_000, also=lambda conn: requestlog.insert(conn, row))

    if in_batch:
        with immediate(db) as conn:  # the movement below is a savepoint in it
            conn.execute("INSERT INTO projects (id, name, created_at) VALUES (2, 'q', 'now')")
            with pytest.raises(sqlite3.IntegrityError, match="refused by the test"):
                settle()
    else:
        with pytest.raises(sqlite3.IntegrityError, match="refused by the test"):
            settle()
    with db.conn:
        db.conn.execute("DROP TRIGGER refuse_charges")
    assert ledger.balance(db) == ledger.Balance(entries=10_000, held=4_000)
    assert [r["kind"] for r in ledger.history(db)] == ["topup"]
    assert db.conn.execute("SELECT count(*) FROM requests").fetchone()[0] == 0
    spent = db.conn.execute("SELECT spent_micro FROM api_keys").fetchone()[0]
    assert spent == 0
    projects = db.conn.execute("SELECT count(*) FROM projects").fetchone()[0]
    assert projects == (2 if in_batch else 1)  # the batch's other work still commits
    assert ledger.verify(db)["ok"]
    assert ledger.settle(db, h, 3_000) == 3_000  # and the hold can still be settled


@pytest.mark.parametrize("threads,afford", [(32, 7)])
def test_racing_holds_exactly_k_succeed(tmp_path, threads, afford):
    """32 threads, each with its own connection, race for a balance worth exactly K holds."""
    path = tmp_path / "race.db"
    setup = open_db(path)
    cost = 1_234_567
    ledger.topup(setup, cost * afford)
    setup.close()
    barrier = threading.Barrier(threads)
    results: list[str] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        db = open_db(path)
        barrier.wait()
        try:
            h = ledger.hold(db, cost, f"req_{i}")
        except InsufficientCredits:
            outcome = "refused"
        else:
            ledger.settle(db, h, cost - i)  # actual charges differ per request
            outcome = "ok"
        with lock:
            results.append(outcome)
        db.close()

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert results.count("ok") == afford
    assert results.count("refused") == threads - afford
    db = open_db(path)
    charges = -db.conn.execute(
        "SELECT SUM(amount_micro) FROM ledger_entries WHERE kind='charge'"
    ).fetchone()[0]
    assert ledger.balance(db).available == cost * afford - charges
    assert ledger.balance(db).held == 0
    assert ledger.verify(db)["ok"]


def test_recover_releases_holds_of_dead_processes(tmp_path):
    path = tmp_path / "crash.db"
    db = open_db(path)
    ledger.topup(db, 10_000_000)
    # a separate process places a hold and dies without settling
    code = (
        "import sys; from pathlib import Path; from layers_cli.db import open_db; "
        "from layers_cli import ledger; "
        "db = open_db(Path(sys.argv[1])); ledger.hold(db, 4_000_000, 'req_crash'); "
        "import os; os._exit(9)"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=False)
    assert ledger.balance(db).held == 4_000_000
    live = ledger.hold(db, 1_000_000, "req_live")  # ours: this process is alive
    released = ledger.recover(db)
    assert [h.request_id for h in released] == ["req_crash"]
    assert ledger.balance(db) == ledger.Balance(10_000_000, 1_000_000)
    ledger.release(db, live)
    assert ledger.verify(db)["ok"]
    assert os.getpid()  # keep the import used


ops = st.lists(
    st.tuples(
        st.sampled_from(["topup", "hold", "settle", "release"]),
        st.integers(min_value=1, max_value=5_000_000),
    ),
    max_size=40,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops)
def test_balance_is_always_entries_minus_open_holds(tmp_path_factory, sequence):
    db = open_db(tmp_path_factory.mktemp("prop") / "p.db")
    holds: list[ledger.Hold] = []
    for n, (op, amount) in enumerate(sequence):
        if op == "topup":
            ledger.topup(db, amount)
        elif op == "hold":
            try:
                holds.append(ledger.hold(db, amount, f"r{n}"))
            except InsufficientCredits:
                pass
        elif holds:
            h = holds.pop(amount % len(holds))
            if op == "settle":
                ledger.settle(db, h, amount % (h.amount + 1))
            else:
                ledger.release(db, h)
        entries, held = sums(db)
        b = ledger.balance(db)
        assert (b.entries, b.held) == (entries, held)
        assert isinstance(b.available, int)
        assert b.available >= 0
    db.close()


def test_migration_m004_keeps_every_row_and_rule(tmp_path):
    """m004 rebuilds `ledger_entries` (no AUTOINCREMENT now) and `holds` to respell their
    CHECKs: rows, ids, the holds' AUTOINCREMENT counter, indexes and the totals trigger
    survive, and the rules still bite."""
    import sqlite3

    from sqlite_utils import Database

    from layers_cli.migrations import MIGRATIONS

    path = tmp_path / "old.db"
    old = Database(sqlite3.connect(path))
    MIGRATIONS.apply(old, stop_before="m004_cheaper_ledger_writes")
    ledger.topup(old, 9_000)
    kept = ledger.hold(old, 3_000, "req_kept")
    settled = ledger.hold(old, 2_000, "req_settled")
    ledger.settle(old, settled, 1_500)
    with old.conn:  # the newest rows deleted: ids past them must still never come back
        old.conn.execute(
            "INSERT INTO holds (request_id, amount_micro, pid, created_at, status)"
            " VALUES ('gone', 0, 1, 'now', 'released')"
        )
        old.conn.execute("DELETE FROM holds WHERE request_id = 'gone'")
    before = {
        t: old.conn.execute(f"SELECT * FROM {t} ORDER BY id").fetchall()
        for t in ("ledger_entries", "holds")
    }
    old.close()

    db = open_db(path)
    assert {
        t: db.conn.execute(f"SELECT * FROM {t} ORDER BY id").fetchall() for t in before
    } == before
    names = {row[0] for row in db.conn.execute("SELECT name FROM sqlite_schema")}
    assert {"ledger_entries_request", "holds_open", "ledger_entries_totals"} <= names
    assert not [n for n in names if n.endswith("_new")]
    assert ledger.balance(db) == ledger.Balance(entries=7_500, held=3_000)
    ledger.settle(db, kept, 1_000)  # the trigger still moves the totals
    assert ledger.balance(db) == ledger.Balance(entries=6_500, held=0)
    assert ledger.hold(db, 1, "req_new").id > 3  # hold ids never reused
    entry_ids = [r[0] for r in db.conn.execute("SELECT id FROM ledger_entries ORDER BY id")]
    assert entry_ids == list(range(1, len(entry_ids) + 1))  # kept, and the next one follows
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        db.conn.execute(
            "INSERT INTO ledger_entries (created_at, kind, amount_micro) VALUES ('now', 'gift', 1)"
        )
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        db.conn.execute("UPDATE holds SET status = 'lost'")
    db.conn.rollback()
    # the point of the migration: no temporary b-tree and no counter row per entry written
    plan = db.conn.execute(
        "EXPLAIN INSERT INTO ledger_entries (created_at, kind, amount_micro)"
        " VALUES ('now', 'charge', -1)"
    ).fetchall()
    assert not {"OpenEphemeral", "MemMax"} & {op[1] for op in plan}  # MemMax: the counter
    assert ledger.verify(db)["ok"]
    db.close()
