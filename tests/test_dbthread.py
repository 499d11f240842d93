"""Group commit on the daemon's database thread: a burst of ledger movements shares one
commit, yet each movement stays all-or-nothing and nothing is handed back before it is
durable."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

import pytest

from layers_cli import ledger
from layers_cli.db import immediate, open_db
from layers_cli.dbthread import DatabaseThread
from layers_cli.errors import DatabaseError, InsufficientCredits


@pytest.fixture
def db(tmp_path):
    database = open_db(tmp_path / "ledger.db")
    yield database
    database.close()


def _gate(worker: DatabaseThread) -> tuple[threading.Event, Callable[[], Awaitable[None]]]:
    """Block the database thread until the event is set, so work queues up behind it and
    runs as one batch."""
    release = threading.Event()

    async def block() -> None:
        await worker.run(release.wait)

    return release, block


def test_a_burst_commits_together_and_a_refused_hold_changes_nothing(db, tmp_path):
    ledger.topup(db, 7_000_000)
    worker = DatabaseThread(db)
    release, block = _gate(worker)

    async def burst() -> list[object]:
        blocker = asyncio.ensure_future(block())
        await asyncio.sleep(0.05)  # the thread now waits inside `block`
        holds = [
            asyncio.ensure_future(worker.run(ledger.hold, db, 1_000_000, f"req_{i}"))
            for i in range(20)
        ]
        await asyncio.sleep(0.05)  # all 20 queued behind the blocker
        release.set()
        await blocker
        return await asyncio.gather(*holds, return_exceptions=True)

    try:
        results = asyncio.run(burst())
    finally:
        worker.stop()
    granted = [r for r in results if isinstance(r, ledger.Hold)]
    refused = [r for r in results if isinstance(r, InsufficientCredits)]
    assert len(granted) == 7 and len(refused) == 13
    # A second connection (another process) sees exactly the committed state.
    other = open_db(tmp_path / "ledger.db")
    try:
        assert other.conn.execute("SELECT COUNT(*) FROM holds").fetchone()[0] == 7
        assert ledger.balance(other).available == 0
        assert ledger.verify(other)["ok"]
    finally:
        other.close()


def test_a_failing_movement_rolls_back_only_itself(db):
    ledger.topup(db, 5_000_000)
    worker = DatabaseThread(db)
    release, block = _gate(worker)

    def half_done_then_fail(database) -> None:
        with immediate(database) as conn:
            conn.execute(
                "INSERT INTO ledger_entries (kind, amount_micro, created_at)"
                " VALUES ('topup', 999, 'x')"
            )
            raise RuntimeError("boom after a write")

    async def burst() -> list[object]:
        blocker = asyncio.ensure_future(block())
        await asyncio.sleep(0.05)
        ops = [
            asyncio.ensure_future(worker.run(ledger.hold, db, 1_000_000, "req_before")),
            asyncio.ensure_future(worker.run(half_done_then_fail, db)),
            asyncio.ensure_future(worker.run(ledger.hold, db, 1_000_000, "req_after")),
        ]
        await asyncio.sleep(0.05)
        release.set()
        await blocker
        return await asyncio.gather(*ops, return_exceptions=True)

    try:
        before, failed, after = asyncio.run(burst())
    finally:
        worker.stop()
    assert isinstance(before, ledger.Hold) and isinstance(after, ledger.Hold)
    assert isinstance(failed, RuntimeError) and "boom" in str(failed)
    assert db.conn.execute("SELECT COUNT(*) FROM ledger_entries").fetchone()[0] == 1
    assert ledger.balance(db).available == 3_000_000
    assert ledger.verify(db)["ok"]


def test_a_batch_whose_commit_fails_reports_every_movement_as_lost(db, tmp_path):
    ledger.topup(db, 5_000_000)
    worker = DatabaseThread(db)
    release, block = _gate(worker)

    def abort_the_transaction(database) -> None:
        database.conn.rollback()  # what SQLite does by itself on a full disk

    async def burst() -> list[object]:
        blocker = asyncio.ensure_future(block())
        await asyncio.sleep(0.05)
        ops = [
            asyncio.ensure_future(worker.run(ledger.hold, db, 1_000_000, "req_lost")),
            asyncio.ensure_future(worker.run(abort_the_transaction, db)),
        ]
        await asyncio.sleep(0.05)
        release.set()
        await blocker
        return await asyncio.gather(*ops, return_exceptions=True)

    try:
        results = asyncio.run(burst())
    finally:
        worker.stop()
    assert all(isinstance(r, DatabaseError) for r in results)
    assert "nothing was saved" in str(results[0])
    assert db.conn.execute("SELECT COUNT(*) FROM holds").fetchone()[0] == 0
    assert ledger.balance(db).available == 5_000_000


def test_stop_finishes_queued_work(db):
    ledger.topup(db, 5_000_000)
    worker = DatabaseThread(db)

    async def queue_then_stop() -> ledger.Hold:
        pending = asyncio.ensure_future(worker.run(ledger.hold, db, 1_000_000, "req_last"))
        await asyncio.sleep(0)  # queued
        await asyncio.get_running_loop().run_in_executor(None, worker.stop)
        return await pending

    assert isinstance(asyncio.run(queue_then_stop()), ledger.Hold)
    assert ledger.balance(db).held == 1_000_000
