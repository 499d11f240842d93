"""The daemon's one database thread, with group commit.

All SQLite work of `layers serve` runs here, so the event loop never blocks on the database
and writes never contend inside the process. Work that queues up while a batch runs is
executed as the next batch, inside ONE ``BEGIN IMMEDIATE`` transaction: every movement keeps
its own savepoint (`db.immediate` nests), so each is still all-or-nothing, but a burst of
concurrent requests pays for one commit and one wake-up of the event loop instead of one
each. Results are handed back only after the commit, so a caller never acts on a hold or a
charge that is not durable.

Work run here writes through `db.immediate` and never commits or rolls back by itself: a
batch whose transaction ended early is reported lost as a whole (that is how SQLite's own
abort on a full disk or an I/O error is caught).
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import DatabaseError

if TYPE_CHECKING:
    from sqlite_utils import Database

T = TypeVar("T")
MAX_BATCH = 64
CHECKPOINT_AFTER = 0.1  # seconds: how long writes accumulate before the log is copied back
WAL_SIZE_LIMIT = 64 * 1024 * 1024  # bytes the log file keeps after a checkpoint

# (work, future, loop) — or None, the signal to stop
_Item = tuple[Callable[[], Any], "asyncio.Future[Any]", asyncio.AbstractEventLoop]


class DatabaseThread:
    def __init__(
        self,
        db: Database,
        before_batch: Callable[[Database], None] | None = None,
        checkpoint_after: float = CHECKPOINT_AFTER,
    ) -> None:
        self.db = db
        self._before_batch = before_batch
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="layers-db", daemon=True)
        self._checkpoints = Checkpointer(db, checkpoint_after)
        self._thread.start()

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on the database thread; its result or its exception."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((partial(fn, *args, **kwargs), future, loop))
        return await future

    def stop(self) -> None:
        """Finish what is queued, then end the thread."""
        self._queue.put(None)
        self._thread.join()
        self._checkpoints.stop()

    # -- on the database thread ----------------------------------------------------------
    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            stopping = False
            while len(batch) < MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            self._deliver(batch, self._execute(batch))
            self._checkpoints.wrote()
            if stopping:
                return

    def _execute(self, batch: list[_Item]) -> list[tuple[bool, Any]]:
        if self._before_batch is not None:
            try:
                self._before_batch(self.db)
            except Exception as exc:  # the database is unusable: every caller hears why
                return [(False, exc)] * len(batch)
        if len(batch) == 1:  # nothing to share: the work commits (or not) on its own
            return [_attempt(batch[0][0])]
        conn = self.db.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error:
            return [_attempt(work) for work, _, _ in batch]  # one transaction each
        outcomes = []
        for work, _, _ in batch:
            outcomes.append(_attempt(work))
            if not conn.in_transaction:  # SQLite rolled it back itself (disk full, I/O error)
                break
        try:
            if not conn.in_transaction:
                raise sqlite3.OperationalError("the transaction was aborted")
            conn.commit()
        except sqlite3.Error as exc:
            conn.rollback()
            lost = DatabaseError(f"The database refused to commit ({exc}); nothing was saved.")
            return [(False, lost)] * len(batch)
        return outcomes

    @staticmethod
    def _deliver(batch: list[_Item], outcomes: list[tuple[bool, Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for (_, future, loop), (ok, value) in zip(batch, outcomes, strict=True):
            by_loop.setdefault(loop, []).append((future, ok, value))
        for loop, results in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, results)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass


def _attempt(work: Callable[[], Any]) -> tuple[bool, Any]:
    try:
        return True, work()
    except BaseException as exc:  # handed to the awaiting coroutine, raised there
        return False, exc


def _resolve(results: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in results:
        if future.cancelled():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class Checkpointer:
    """Copies the write-ahead log back into the database file from a thread of its own.

    SQLite's automatic checkpoint runs inside whichever commit makes the log pass 1,000
    pages, so one request in every few dozen paid for copying and syncing them: that was
    the p99 at one connection (measured on bench/: c=1 p99 ~6.5–7 ms with it, ~3.6–5 ms
    without). Here the daemon's connection turns it off, and this thread runs a PASSIVE
    checkpoint (it never blocks the writer or readers) ``after`` seconds after a batch was
    written, so an idle daemon never wakes up for it.
    """

    def __init__(self, db: Database, after: float) -> None:
        self._wrote = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        path = db.conn.execute("PRAGMA database_list").fetchone()[2]
        if not path or after <= 0:  # an in-memory database has no log
            return
        self._db, self._path, self._after = db, path, after
        db.conn.execute("PRAGMA wal_autocheckpoint = 0")
        db.conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        self._thread = threading.Thread(target=self._run, name="layers-wal", daemon=True)
        self._thread.start()

    def wrote(self) -> None:
        """A batch was written (called on the database thread; cheap when already set)."""
        self._wrote.set()

    def _run(self) -> None:
        conn = sqlite3.connect(self._path, timeout=5, check_same_thread=False)
        try:
            while not self._stop.is_set():
                self._wrote.wait()
                if self._stop.wait(self._after):  # let a burst of writes land first
                    return
                self._wrote.clear()
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    pass  # busy or transient: the next round copies what this one could not
        finally:
            conn.close()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._wrote.set()
        self._thread.join()
        self._db.conn.execute("PRAGMA wal_autocheckpoint = 1000")  # SQLite's own again
