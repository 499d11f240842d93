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
import os
import queue
import sqlite3
import threading
import traceback
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import DatabaseError, LayersError

if TYPE_CHECKING:
    from sqlite_utils import Database

T = TypeVar("T")
MAX_BATCH = 64

# (work, future, loop) — or None, the signal to stop
_Item = tuple[Callable[[], Any], "asyncio.Future[Any]", asyncio.AbstractEventLoop]


class DatabaseThread:
    def __init__(
        self,
        db: Database,
        before_batch: Callable[[Database], None] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.db = db
        self._before_batch = before_batch
        # The loop every `submit` comes from, when there is one: Python 3.11's
        # `asyncio.get_running_loop` makes a getpid syscall each time it is asked.
        self._loop = loop
        # Each movement in a batch is a savepoint, and SQLite keeps a savepoint's undo pages
        # in a sub-journal: a temporary file by default, one pwrite per page each movement
        # touches. In memory that costs no syscall (measured at 16 concurrent requests:
        # 39 -> 8 pwrites and 110 -> 48 µs of system time per request on this thread).
        db.conn.execute("PRAGMA temp_store = MEMORY")
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._busy = threading.Lock()  # held while a batch runs (see `try_now`)
        self._handover = _Handover.open(loop) if loop is not None else None
        self._thread = threading.Thread(target=self._serve, name="layers-db", daemon=True)
        self._thread.start()

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on the database thread; its result or its exception."""
        return await self.submit(fn, *args, **kwargs)

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> asyncio.Future[T]:
        """Queue ``fn(*args, **kwargs)``; the future (of the running loop) resolves after
        the commit. Not awaiting it at once lets the caller do other work meanwhile."""
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((partial(fn, *args, **kwargs), future, loop))
        return future

    def try_now(self, fn: Callable[[Database], T]) -> T | None:
        """``fn(db)`` on the calling thread, at once, if no batch is running (else ``None``):
        for a read too small to be worth a trip to the database thread."""
        if not self._busy.acquire(blocking=False):
            return None
        try:
            return fn(self.db)
        finally:
            self._busy.release()

    def stop(self) -> None:
        """Finish what is queued, then end the thread. With a ``loop``, call it on that
        loop's thread: the last results are handed over here."""
        self._queue.put(None)
        self._thread.join()
        if self._handover is not None:
            self._handover.close()

    # -- on the database thread ----------------------------------------------------------
    def _serve(self) -> None:
        _behind_the_event_loop()
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
            with self._busy:
                outcomes = self._execute(batch)
            self._deliver(batch, outcomes)
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

    def _deliver(self, batch: list[_Item], outcomes: list[tuple[bool, Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for (_, future, loop), (ok, value) in zip(batch, outcomes, strict=True):
            by_loop.setdefault(loop, []).append((future, ok, value))
        for loop, results in by_loop.items():
            if self._handover is not None and loop is self._loop:
                self._handover.give(results)
                continue
            try:
                loop.call_soon_threadsafe(_resolve, results)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass


class _Handover:
    """Results for the daemon's event loop, handed over through a pipe.

    ``loop.call_soon_threadsafe`` wakes the loop while the database thread holds the GIL.
    The loop takes the CPU (it is not a batch thread), waits for the GIL, and gets it only
    when the database thread next blocks: three context switches. ``os.write`` releases the
    GIL for its syscall, so the loop it wakes finds the GIL free and runs on: one switch.
    Measured at one request at a time: commit → result in the loop's hands 44-46 → 24-30 µs."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._ready: deque[list[tuple[asyncio.Future[Any], bool, Any]]] = deque()
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        loop.add_reader(self._read, self._take)

    @classmethod
    def open(cls, loop: asyncio.AbstractEventLoop) -> _Handover | None:
        """None where the loop cannot watch a pipe (Windows' proactor loop)."""
        try:
            return cls(loop)
        except NotImplementedError:
            return None

    def give(self, results: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
        """On the database thread: queue the results, then wake the loop."""
        self._ready.append(results)
        try:
            os.write(self._write, b"\0")
        except BlockingIOError:  # the pipe is full of wake-ups the loop has yet to read
            pass

    def _take(self) -> None:
        """On the loop: every result queued so far (each is followed by a wake-up byte)."""
        try:
            os.read(self._read, 65536)
        except BlockingIOError:
            pass
        while self._ready:
            _resolve(self._ready.popleft())

    def close(self) -> None:
        self._take()
        try:
            self._loop.remove_reader(self._read)
        except RuntimeError:  # the loop is closed already
            pass
        os.close(self._read)
        os.close(self._write)


def _behind_the_event_loop() -> None:
    """Make the calling thread ``SCHED_BATCH`` (Linux), so the kernel never lets it preempt
    the task running when it is woken.

    `submit` wakes this thread while the event loop still holds the GIL. As an ordinary
    thread it would take the CPU at once, find the GIL held, and give the CPU back: two
    context switches for nothing, each time. As a batch thread it starts when the loop
    waits. It gets the same share of the CPU; on a busy machine, a wake-up may wait for the
    running task's time slice (a few ms at most). Measured with the daemon pinned to one
    core: context switches at 16 concurrent requests 1.6 → 0.25 per request, CPU per
    request −7% (4, 16 and 64 connections: −15%, −7%, −9%), issue 5."""
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux, or not allowed: the default policy stays
        pass


def _attempt(work: Callable[[], Any]) -> tuple[bool, Any]:
    try:
        return True, work()
    except BaseException as exc:  # handed to the awaiting coroutine, raised there
        return False, _without_this_threads_frames(exc)


def _without_this_threads_frames(exc: BaseException) -> BaseException:
    """The exception, and those chained to it, without their tracebacks on this thread.

    A frame in such a traceback leads (by ``f_back``) to `_execute`'s, which holds the batch:
    the futures and outcomes that hold the exception. That cycle kept the awaiting request's
    frames, and its body, alive until the garbage collector ran, which in the daemon is
    rarely (`cli/serve.py`); every 401, 402 and 403 is refused here. What went wrong where is
    kept as a note for anything but a refusal (`LayersError`), whose place is known."""
    seen: set[int] = set()
    chained: list[BaseException | None] = [exc]
    while chained:
        current = chained.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if current.__traceback__ is not None:
            if not isinstance(current, LayersError):
                trace = "".join(traceback.format_tb(current.__traceback__))
                current.add_note("On the database thread:\n" + trace.rstrip())
            current.__traceback__ = None
        chained += (current.__cause__, current.__context__)
    return exc


def _resolve(results: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in results:
        if future.cancelled():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
