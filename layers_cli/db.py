"""Opening the one SQLite database of a data home: WAL, foreign keys, migrations.

Transactions that move money use ``BEGIN IMMEDIATE`` (see `immediate`), so two processes or
threads racing for the last credits queue on SQLite's write lock instead of both reading the
same balance.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import DatabaseError

if TYPE_CHECKING:
    from sqlite_utils import Database

BUSY_TIMEOUT_MS = 30_000


_second: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text
_MILLIS = [f".{ms:03d}Z" for ms in range(1000)]  # a format spec costs ~6k instructions


def now_iso() -> str:
    """UTC timestamps as sortable ISO text, millisecond precision. Hot path (several per
    request, on two threads): the date and time part is formatted once per second, and
    kept as one tuple so a reader never pairs one second with another's text."""
    global _second
    seconds, ms = divmod(time.time_ns() // 1_000_000, 1000)
    cached = _second
    if cached[0] != seconds:
        cached = _second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    return cached[1] + _MILLIS[ms]


def iso(when: datetime) -> str:
    """A datetime as the stored timestamp format (UTC, milliseconds, ``Z``)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_date(text: str, flag: str, forms: str) -> datetime:
    """An ISO date or datetime from a flag (naive means UTC), or a 400 naming the forms."""
    from .errors import InvalidRequest

    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidRequest(
            f"{flag} '{text}' is neither {forms} nor a date (2027-01-31).", param=flag.lstrip("-")
        ) from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def known_migrations() -> list[str]:
    from .migrations import MIGRATIONS

    return [m.name for m in MIGRATIONS._migrations]


def schema_version(db: Database) -> int:
    from .migrations import MIGRATIONS

    return len(MIGRATIONS.applied(db))


SQLITE_CONFIG_MEMSTATUS = 9  # sqlite3.h
_memory_statistics_off = False  # once off, `sqlite3_memory_used()` says 0 whatever is open


def stop_sqlite_memory_statistics() -> bool:
    """Turn off SQLite's memory statistics for this process, before it opens a database.

    By default every allocation SQLite makes takes a process-wide mutex to count bytes for
    ``sqlite3_memory_used()``, which nothing here reads (nor a soft heap limit, which needs
    them). `layers serve` settles every request with a few hundred allocations on its
    database thread: turning the count off took that thread from 238k to 213k instructions
    per request at 16 concurrent requests (bench/instructions.py, issue 5).

    Only ``sqlite3_config`` can do it, and only while the library is shut down, so this
    must run before the process opens any database: it does nothing while SQLite holds any
    memory (counted until now), which an open connection always does. Linux only (the
    library `_sqlite3` links, found by its soname among those already loaded; elsewhere
    SQLite is often built into `_sqlite3`). Returns whether the statistics are off."""
    global _memory_statistics_off
    import ctypes
    import os
    import sys

    if _memory_statistics_off or not sys.platform.startswith("linux"):
        return _memory_statistics_off
    try:
        lib = ctypes.CDLL("libsqlite3.so.0", mode=os.RTLD_NOLOAD)
    except OSError:  # not loaded: `_sqlite3` carries its own copy
        return False
    major, minor, patch = sqlite3.sqlite_version_info
    if lib.sqlite3_libversion_number() != major * 1_000_000 + minor * 1_000 + patch:
        return False  # another copy than the one `_sqlite3` uses
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    if lib.sqlite3_memory_used() != 0:
        return False  # a connection is open: shutting the library down would pull it away
    lib.sqlite3_shutdown()
    off = lib.sqlite3_config(ctypes.c_int(SQLITE_CONFIG_MEMSTATUS), ctypes.c_int(0)) == 0
    lib.sqlite3_initialize()
    _memory_statistics_off = off
    return off


def open_db(path: Path, *, migrate: bool = True) -> Database:
    """Open (creating if needed) the database at ``path`` and bring its schema up to date."""
    from sqlite_utils import Database  # imported here: commands that never open it skip it

    from .migrations import MIGRATIONS

    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        db = Database(conn, execute_plugins=False)
        applied = [m.name for m in MIGRATIONS.applied(db)]
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise DatabaseError(
            f"{path} is not a usable Layers database ({exc}).",
            hint="Move the file aside (or point LAYERS_HOME elsewhere) and run the command "
            "again to start a fresh one; restore it from a backup if it held credits.",
        ) from exc
    unknown = [name for name in applied if name not in known_migrations()]
    if unknown:
        conn.close()
        raise DatabaseError(
            f"{path} was written by a newer version of Layers (schema {len(applied)}, "
            f"this version knows {len(known_migrations())}; unknown migrations: "
            f"{', '.join(unknown)}).",
            hint="Upgrade Layers (`pip install -U layers-cli`) to use this data home.",
        )
    if migrate and len(applied) < len(known_migrations()):
        try:
            MIGRATIONS.apply(db)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise DatabaseError(f"Could not migrate {path}: {exc}.") from exc
    return db


class immediate:  # noqa: N801 - used as a function: `with immediate(db) as conn`
    """One write transaction that takes SQLite's write lock up front.

    Inside a transaction that is already open (the daemon's group commit, see `dbthread`)
    it is a savepoint instead: all-or-nothing on its own, committed with the batch.

    A class rather than a `contextlib.contextmanager`: every movement of every request
    enters one, and the generator machinery made a savepoint's way in and out 6.1 µs
    instead of 4.4 (timeit).
    """

    __slots__ = ("conn", "savepoint")

    def __init__(self, db: Database) -> None:
        self.conn: sqlite3.Connection = db.conn

    def __enter__(self) -> sqlite3.Connection:
        conn = self.conn
        self.savepoint = conn.in_transaction
        conn.execute("SAVEPOINT movement" if self.savepoint else "BEGIN IMMEDIATE")
        return conn

    def __exit__(self, kind: type[BaseException] | None, exc: object, tb: object) -> None:
        conn = self.conn
        if self.savepoint:
            if kind is not None:
                conn.execute("ROLLBACK TO movement")
            conn.execute("RELEASE movement")
        elif kind is not None:
            conn.rollback()
        else:
            conn.commit()
