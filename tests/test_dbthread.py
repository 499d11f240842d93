"""Group commit on the daemon's database thread: a burst of ledger movements shares one
commit, yet each movement stays all-or-nothing and nothing is handed back before it is
durable."""

from __future__ import annotations

import asyncio
import ctypes
import os
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any

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


def run_as_one_batch(worker: DatabaseThread, make_ops: Callable[[], list[Awaitable[Any]]]):
    """Hold the database thread, queue the work behind it, then let it all run as one batch;
    returns each result or exception, in order."""
    started, release = threading.Event(), threading.Event()

    def occupy_the_thread() -> None:
        started.set()
        release.wait()

    async def go() -> list[object]:
        blocker = asyncio.ensure_future(worker.run(occupy_the_thread))
        while not started.is_set():
            await asyncio.sleep(0.001)
        ops = [asyncio.ensure_future(op) for op in make_ops()]
        await asyncio.sleep(0)  # every op runs up to its place in the queue
        release.set()
        await blocker
        return await asyncio.gather(*ops, return_exceptions=True)

    try:
        return asyncio.run(go())
    finally:
        worker.stop()


def test_a_burst_commits_together_and_a_refused_hold_changes_nothing(db, tmp_path):
    ledger.topup(db, 7_000_000)
    worker = DatabaseThread(db)
    results = run_as_one_batch(
        worker, lambda: [worker.run(ledger.hold, db, 1_000_000, f"req_{i}") for i in range(20)]
    )
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

    def half_done_then_fail(database) -> None:
        with immediate(database) as conn:
            conn.execute(
                "INSERT INTO ledger_entries (kind, amount_micro, created_at)"
                " VALUES ('topup', 999, 'x')"
            )
            raise RuntimeError("boom after a write")

    before, failed, after = run_as_one_batch(
        worker,
        lambda: [
            worker.run(ledger.hold, db, 1_000_000, "req_before"),
            worker.run(half_done_then_fail, db),
            worker.run(ledger.hold, db, 1_000_000, "req_after"),
        ],
    )
    assert isinstance(before, ledger.Hold) and isinstance(after, ledger.Hold)
    assert isinstance(failed, RuntimeError) and "boom" in str(failed)
    assert db.conn.execute("SELECT COUNT(*) FROM ledger_entries").fetchone()[0] == 1
    assert ledger.balance(db).available == 3_000_000
    assert ledger.verify(db)["ok"]


def test_a_batch_whose_commit_fails_reports_every_movement_as_lost(db):
    ledger.topup(db, 5_000_000)
    worker = DatabaseThread(db)

    def abort_the_transaction(database) -> None:
        database.conn.rollback()  # what SQLite does by itself on a full disk

    results = run_as_one_batch(
        worker,
        lambda: [
            worker.run(ledger.hold, db, 1_000_000, "req_lost"),
            worker.run(abort_the_transaction, db),
        ],
    )
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


@pytest.mark.skipif(sys.platform != "linux", reason="scheduling policies are Linux's")
def test_the_database_thread_never_preempts_the_event_loop(db):
    """It runs as a batch thread (see `dbthread._behind_the_event_loop`), and still works."""
    worker = DatabaseThread(db)
    try:
        assert asyncio.run(worker.run(lambda: 6 * 7)) == 42
        assert os.sched_getscheduler(worker._thread.native_id) == os.SCHED_BATCH
    finally:
        worker.stop()
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the caller's own policy is untouched


def test_results_reach_the_loop_through_its_pipe_and_stop_hands_over_the_last(db):
    """With a loop, results are handed over through a pipe (`dbthread._Handover`). `stop`,
    called on that loop's thread, resolves whatever the thread finished meanwhile, then
    closes the pipe."""
    fds = len(os.listdir("/proc/self/fd")) if sys.platform == "linux" else None

    async def go() -> list[Any]:
        worker = DatabaseThread(db, loop=asyncio.get_running_loop())
        assert await worker.run(lambda: "first") == "first"
        with pytest.raises(ZeroDivisionError):
            await worker.run(lambda: 1 / 0)
        last = [worker.submit(lambda i=i: i) for i in range(50)]
        worker.stop()  # blocks this loop until the thread ended
        assert all(f.done() for f in last)
        return [f.result() for f in last]

    assert asyncio.run(go()) == list(range(50))
    if fds is not None:
        assert len(os.listdir("/proc/self/fd")) == fds


_MEMORY_PROBE = """
import ctypes, os, sys
from pathlib import Path
from layers_cli import ledger
from layers_cli.db import open_db, stop_sqlite_memory_statistics
early = None
if sys.argv[2] == "opened-first":
    early = open_db(Path(sys.argv[1]) / "early.db")
off = stop_sqlite_memory_statistics()
db = open_db(Path(sys.argv[1]) / "ledger.db")
assert stop_sqlite_memory_statistics() is off  # asked again with one open: nothing changes
ledger.topup(db, 5_000_000)
lib = ctypes.CDLL("libsqlite3.so.0", mode=os.RTLD_NOLOAD)
lib.sqlite3_memory_used.restype = ctypes.c_int64
print(off, ledger.balance(db).available, lib.sqlite3_memory_used() > 0)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the statistics switch is Linux's")
@pytest.mark.parametrize(
    "order, expected",
    [("fresh", "True 5000000 False"), ("opened-first", "False 5000000 True")],
)
def test_sqlite_memory_statistics_go_off_only_before_any_connection(tmp_path, order, expected):
    """What `layers serve` does first: with no connection open, SQLite stops counting its
    memory (and the ledger works as before); with one open, nothing is changed under it."""
    probe = [sys.executable, "-c", _MEMORY_PROBE, str(tmp_path), order]
    try:  # the one `sqlite3` (imported above) loaded, not any copy the system might have
        ctypes.CDLL("libsqlite3.so.0", mode=os.RTLD_NOLOAD)
    except OSError:
        pytest.skip("this Python's sqlite3 does not use a shared libsqlite3")
    out = subprocess.run(probe, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split("\n")[-2] == expected
