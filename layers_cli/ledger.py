"""The only code that moves credits.

Every movement is one ``BEGIN IMMEDIATE`` transaction that writes its row(s) and the running
totals together, so the account's balance is always ``sum(entries) − sum(open holds)``:

* ``topup``   adds a positive entry (top-up, grant, refund or adjustment);
* ``hold``    reserves a request's worst case, refused when it would take the available
  balance (or a key's / project's budget) below zero;
* ``settle``  closes the hold and writes the actual charge, in one step;
* ``release`` closes the hold and charges nothing;
* ``recover`` releases holds whose process died (a crash never loses or doubles a charge).

Each operation is idempotent per request id: a retried settle or release is a no-op.

A running daemon holds most requests in its memory instead (`holds.Holds`), so that a request
costs one transaction, not two:

* ``reserve`` grows the daemon's **reservation**, an open hold of its own (``request_id``
  ``reservation:PID:…``) covering its streams in flight, and ``charge_reserved`` writes a
  stream's charge (and gives the reservation back when the daemon is idle). Every other
  process sees the reservation as held; a crash leaves it to ``recover`` like any hold.
* ``charge_from_balance`` writes the charge of a whole response held in memory only, refused
  (nothing written) when the balance no longer covers it: the response has not left yet.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .db import immediate, now_iso
from .errors import BudgetExceeded, InsufficientCredits, InvalidRequest, NotFound
from .pricing import format_credits

if TYPE_CHECKING:
    from sqlite_utils import Database

AlsoFn = Callable[[sqlite3.Connection], None]


@dataclass(frozen=True)
class Hold:
    id: int
    request_id: str
    amount: int
    key_id: str | None = None
    project_id: int | None = None
    # the account's available balance right after `hold` placed it (None when it was placed
    # earlier): the daemon's view of the balance, without another query
    available_after: int | None = field(default=None, compare=False)
    # what stands behind it: a hold row of its own ("row"), the daemon's reservation, held
    # in its memory ("reservation"), or nothing but the daemon's memory, the balance checked
    # when the charge is written ("balance"; see `holds`)
    backing: str = field(default="row", compare=False)


@dataclass(frozen=True)
class Balance:
    entries: int  # sum of all ledger entries
    held: int  # sum of open holds

    @property
    def available(self) -> int:
        return self.entries - self.held


def balance(db: Database) -> Balance:
    row = db.conn.execute("SELECT entries_micro, held_micro FROM account WHERE id = 1").fetchone()
    return Balance(entries=row[0], held=row[1])


def balance_available(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT entries_micro - held_micro FROM account WHERE id = 1").fetchone()[0]


# Why the ledger's and the request log's inserts say OR FAIL: with SQLite's default (ABORT),
# a statement that writes through a trigger inside an open transaction keeps a statement
# journal, so that a constraint failing halfway can undo just that statement: ~22k
# instructions per settlement, 7% of the database thread (bench/instructions.py, one
# connection). Every write here runs inside a movement that is all or nothing on its own
# (`db.immediate`: a transaction, or a savepoint in a batch), and a movement that raises is
# undone whole, so that journal protected nothing. FAIL leaves what the failing statement
# had written until that rollback. The one failure a movement carries on from, a charge
# written before (`_charge_once`), is found before anything is written.
def _insert_entry(
    conn: sqlite3.Connection,
    kind: str,
    amount: int,
    *,
    request_id: str | None = None,
    key_id: str | None = None,
    project_id: int | None = None,
    note: str = "",
) -> None:
    """The entry row; its trigger (migration m003) moves ``account.entries_micro`` and, for a
    charge, what its key and project have spent."""
    conn.execute(
        "INSERT OR FAIL INTO ledger_entries (created_at, kind, amount_micro, request_id, key_id,"
        " project_id, note) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (now_iso(), kind, amount, request_id, key_id, project_id, note),
    )


def topup(db: Database, amount: int, *, note: str = "", kind: str = "topup") -> Balance:
    """Add credits. ``kind`` is ``topup``, ``grant``, ``refund`` or ``adjustment``."""
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise InvalidRequest("Amounts are integer micro-credits.")
    if kind not in ("topup", "grant", "refund", "adjustment"):
        raise InvalidRequest(f"Unknown ledger entry kind '{kind}'.")
    if amount <= 0 and kind != "adjustment":
        raise InvalidRequest("A top-up must be positive.", param="amount")
    with immediate(db) as conn:
        _insert_entry(conn, kind, amount, note=note)
    return balance(db)


def _insufficient(balance: int, required: int, *, spent: bool = False) -> InsufficientCredits:
    """402: before a call, what it may cost; after one (``spent``), what it cost."""
    cost = (
        f"cost {format_credits(required)}; it was not charged"
        if spent
        else f"may cost up to {format_credits(required)}"
    )
    return InsufficientCredits(
        f"Insufficient credits: the balance is {format_credits(balance)} credits and this "
        f"request {cost}.",
        hint="Add credits with `layers credits topup 500` (or `$5`)"
        + ("." if spent else ", or lower max_tokens."),
        balance=format_credits(balance),
        required=format_credits(required),
    )


def _move_held(conn: sqlite3.Connection, delta: int) -> None:
    """``account.held_micro`` follows every open hold's amount, in the same transaction."""
    conn.execute("UPDATE account SET held_micro = held_micro + ? WHERE id = 1", (delta,))


def _hold_from_row(row: tuple[Any, ...]) -> Hold:
    return Hold(id=row[0], request_id=row[1], amount=row[2], key_id=row[3], project_id=row[4])


def _check_budgets(
    conn: sqlite3.Connection,
    key_id: str | None,
    project_id: int | None,
    amount: int,
    key_name: str,
    project_name: str,
) -> None:
    """Refuse when the hold would take the key's or the project's budget below zero.
    One query reads both budgets; the open holds are summed only where a budget is set."""
    row = conn.execute(
        "SELECT (SELECT budget_micro FROM api_keys WHERE id = ?),"
        " (SELECT spent_micro FROM api_keys WHERE id = ?),"
        " (SELECT budget_micro FROM projects WHERE id = ?),"
        " (SELECT spent_micro FROM projects WHERE id = ?)",
        (key_id, key_id, project_id, project_id),
    ).fetchone()
    for what, column, row_id, name, budget, spent in (
        ("key", "key_id", key_id, key_name, row[0], row[1]),
        ("project", "project_id", project_id, project_name, row[2], row[3]),
    ):
        if budget is None:
            continue
        held = conn.execute(
            "SELECT COALESCE(SUM(amount_micro), 0) FROM holds"
            f" WHERE status = 'open' AND {column} = ?",
            (row_id,),
        ).fetchone()[0]
        if spent + held + amount > budget:
            left = max(0, budget - spent - held)
            raise BudgetExceeded(
                f"The {what} budget of {name} is spent: {format_credits(spent)} of "
                f"{format_credits(budget)} credits used, {format_credits(left)} left, and this "
                f"request may need {format_credits(amount)}.",
                hint=f"Raise it with `layers {what}s {'budget' if what == 'project' else 'update'}"
                f" {name} --budget CREDITS`.",
                budget=what,
                budget_credits=format_credits(budget),
                spent_credits=format_credits(spent),
                required=format_credits(amount),
            )


def _existing_hold(conn: sqlite3.Connection, request_id: str) -> Hold | None:
    row = conn.execute(
        "SELECT id, request_id, amount_micro, key_id, project_id FROM holds WHERE request_id = ?",
        (request_id,),
    ).fetchone()
    return _hold_from_row(row) if row else None


def hold(
    db: Database,
    amount: int,
    request_id: str,
    *,
    key_id: str | None = None,
    project_id: int | None = None,
    key_name: str | None = None,
    project_name: str | None = None,
    budgets: bool = True,
) -> Hold:
    """Reserve ``amount`` micro-credits for ``request_id``, or refuse with 402.

    ``budgets=False`` skips the budget query when the caller knows, from a key read since
    the last change to the database, that neither the key nor its project has a budget."""
    if amount < 0:
        raise InvalidRequest("A hold cannot be negative.")
    with immediate(db) as conn:
        entries, held = conn.execute(
            "SELECT entries_micro, held_micro FROM account WHERE id = 1"
        ).fetchone()
        available = entries - held
        try:
            if amount > available:
                raise _insufficient(available, amount)
            if budgets and (key_id is not None or project_id is not None):
                _check_budgets(
                    conn,
                    key_id,
                    project_id,
                    amount,
                    key_name or str(key_id),
                    project_name or str(project_id),
                )
            cur = conn.execute(
                "INSERT INTO holds (request_id, amount_micro, key_id, project_id, pid,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (request_id, amount, key_id, project_id, os.getpid(), now_iso()),
            )
        except (InsufficientCredits, BudgetExceeded, sqlite3.IntegrityError):
            # A retried hold (same request id) is the hold already placed, whatever the
            # balance is now; looked up only on this rare path.
            existing = _existing_hold(conn, request_id)
            if existing is not None:
                return existing
            raise
        _move_held(conn, amount)
        return Hold(cur.lastrowid or 0, request_id, amount, key_id, project_id, available - amount)


def _close(db: Database, h: Hold, status: str, charged: int, also: AlsoFn | None) -> int:
    with immediate(db) as conn:
        closed = conn.execute(
            "UPDATE holds SET status = ?, closed_at = ?, charged_micro = ?"
            " WHERE request_id = ? AND status = 'open' RETURNING amount_micro",
            (status, now_iso(), charged, h.request_id),
        ).fetchall()
        if not closed:
            row = conn.execute(
                "SELECT charged_micro FROM holds WHERE request_id = ?", (h.request_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"No hold for request {h.request_id}.")
            return int(row[0] or 0)  # already closed: idempotent
        _move_held(conn, -closed[0][0])
        _charge_once(conn, h, charged)  # the open hold it closed says it was not charged yet
        if also is not None:
            also(conn)
        return charged


def settle(db: Database, h: Hold, actual: int, *, also: AlsoFn | None = None) -> int:
    """Close the hold and charge ``actual`` micro-credits; ``also`` runs in the same
    transaction (the service writes the request row there). Returns what was charged."""
    _refuse_negative(actual)
    return _close(db, h, "settled", actual, also)


def release(db: Database, h: Hold, *, also: AlsoFn | None = None) -> None:
    """Close the hold and charge nothing (the provider failed or was never called)."""
    _close(db, h, "released", 0, also)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def open_holds(db: Database, *, empty_too: bool = False) -> list[dict[str, Any]]:
    """Holds that hold something (an idle daemon's reservation of 0 is not one, unless
    ``empty_too``)."""
    holding = "" if empty_too else " AND amount_micro > 0"
    return list(db.query(f"SELECT * FROM holds WHERE status = 'open'{holding} ORDER BY id"))


# -- a daemon's reservation --------------------------------------------------------------
@dataclass(frozen=True)
class Reserved:
    """What a reservation movement left: the reservation's amount, and the account's
    available balance (entries − every open hold, this reservation included)."""

    amount: int
    available: int


def open_reservation(db: Database) -> tuple[int, Reserved]:
    """A new daemon's reservation, holding nothing yet: its row id, and the balance."""
    with immediate(db) as conn:
        row_id = conn.execute(
            "INSERT INTO holds (request_id, amount_micro, pid, created_at) VALUES (?, 0, ?, ?)",
            (f"reservation:{os.getpid()}:{os.urandom(4).hex()}", os.getpid(), now_iso()),
        ).lastrowid
        assert row_id is not None
        return row_id, Reserved(0, balance_available(conn))


def _reserved_and_available(conn: sqlite3.Connection, row_id: int) -> tuple[int, int]:
    """What the reservation holds now (0 once something released it, e.g. `layers ledger
    recover --all`: the next movement reopens it), and the account's available balance."""
    row = conn.execute(
        "SELECT h.amount_micro, h.status, a.entries_micro - a.held_micro"
        " FROM holds h, account a WHERE h.id = ? AND a.id = 1",
        (row_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"No reservation {row_id}.")
    return (row[0] if row[1] == "open" else 0), row[2]


def _set_reserved(conn: sqlite3.Connection, row_id: int, amount: int) -> None:
    """The caller moves ``account.held_micro`` by the difference, in the same transaction."""
    conn.execute(
        "UPDATE holds SET amount_micro = ?, status = 'open', closed_at = NULL WHERE id = ?",
        (amount, row_id),
    )


def reserve(
    db: Database, row_id: int, need: int, want: int, amount: int, pledged: int = 0
) -> Reserved:
    """Make the reservation cover ``need`` micro-credits (the worst cases of the requests in
    flight when it was asked, this one of ``amount`` included): as far as ``want`` if the
    balance allows, else exactly ``need``, else refuse with 402. Absolute amounts, so growths
    queued together take from the balance only what the requests need between them.
    ``pledged`` is what the daemon's requests held against the balance itself may still
    charge: it is not there to reserve."""
    with immediate(db) as conn:
        current, available = _reserved_and_available(conn, row_id)
        if need <= current:  # a growth queued before this one covered it
            return Reserved(current, available)
        available -= pledged
        grow = want - current if want - current <= available else need - current
        if grow > available:
            # what this request could use: the balance outside the reservation, and the
            # reservation's room beyond the other requests in flight
            raise _insufficient(available + max(current - (need - amount), 0), amount)
        _set_reserved(conn, row_id, current + grow)
        _move_held(conn, grow)
        return Reserved(current + grow, available + pledged - grow)


def _refuse_negative(charge: int) -> None:
    """Before any movement that charges: a negative charge would be a top-up in disguise."""
    if charge < 0:
        raise InvalidRequest("A charge cannot be negative.")


def _charge_once(conn: sqlite3.Connection, h: Hold, actual: int) -> int | None:
    """Write the request's charge entry. When it was written before (a retried settlement,
    which moves nothing), what it charged then; else None."""
    if not actual:
        return None
    try:
        _insert_entry(
            conn,
            "charge",
            -actual,
            request_id=h.request_id,
            key_id=h.key_id,
            project_id=h.project_id,
        )
    except sqlite3.IntegrityError as exc:  # the entry's (request_id, kind) is unique
        if exc.sqlite_errorname != "SQLITE_CONSTRAINT_UNIQUE":
            raise  # the movement is undone: nothing else is carried on from (OR FAIL, above)
        return conn.execute(
            "SELECT -amount_micro FROM ledger_entries WHERE request_id = ? AND kind = 'charge'",
            (h.request_id,),
        ).fetchone()[0]
    return None


def charge_reserved(
    db: Database, row_id: int, h: Hold, actual: int, *, idle: bool, also: AlsoFn | None = None
) -> tuple[int, Reserved]:
    """Charge ``actual`` for a request held in the reservation, and run ``also`` in the same
    transaction. The balance outside the reservation pays while it can, so the reservation
    keeps its size under a steady load; past that the charge comes out of the reservation
    (what is left still covers the other requests in flight). When the daemon is ``idle``
    the whole reservation goes back. ``actual`` 0 is a release. Returns (charged, what is
    left)."""
    _refuse_negative(actual)
    with immediate(db) as conn:
        current, available = _reserved_and_available(conn, row_id)
        before = _charge_once(conn, h, actual)
        if before is not None:
            return before, Reserved(current, available)
        left = 0 if idle else max(current - max(actual - available, 0), 0)
        if left != current:
            _set_reserved(conn, row_id, left)
            _move_held(conn, left - current)
        if also is not None:
            also(conn)
        return actual, Reserved(left, available - actual + current - left)


def charge_from_balance(
    db: Database, h: Hold, actual: int, *, also: AlsoFn | None = None
) -> tuple[int, int]:
    """Charge ``actual`` for a request the daemon held in memory only, if the available
    balance covers it, else refuse with 402 and write nothing (another process spent the
    balance meanwhile: the daemon's view said it would be there). ``also`` runs in the same
    transaction. Returns (charged, the available balance after)."""
    _refuse_negative(actual)
    with immediate(db) as conn:
        available = balance_available(conn)
        if actual > available:
            raise _insufficient(available, actual, spent=True)
        before = _charge_once(conn, h, actual)
        if before is not None:
            return before, available
        if also is not None:
            also(conn)
        return actual, available - actual


def close_reservation(db: Database, row_id: int) -> None:
    """Give the whole reservation back (the daemon is stopping)."""
    with immediate(db) as conn:
        current, _ = _reserved_and_available(conn, row_id)
        conn.execute(
            "UPDATE holds SET amount_micro = 0, status = 'released', closed_at = ?,"
            " charged_micro = 0 WHERE id = ?",
            (now_iso(), row_id),
        )
        _move_held(conn, -current)


def recover(db: Database, *, all_processes: bool = False) -> list[Hold]:
    """Release holds left by processes that are gone (or every open hold with
    ``all_processes``); returns what was released."""
    released = []
    for row in open_holds(db, empty_too=True):
        if all_processes or not _pid_alive(row["pid"]):
            h = Hold(
                row["id"], row["request_id"], row["amount_micro"], row["key_id"], row["project_id"]
            )
            release(db, h)
            if h.amount:  # an idle daemon's empty reservation held nothing
                released.append(h)
    return released


def history(db: Database, limit: int | None = None) -> list[dict[str, Any]]:
    """Ledger entries, newest first, each with the balance right after it."""
    sql = (
        "SELECT id, created_at, kind, amount_micro, request_id, key_id, project_id, note,"
        " SUM(amount_micro) OVER (ORDER BY id) AS balance_micro FROM ledger_entries"
        " ORDER BY id DESC"
    )
    params: list[Any] = []
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return list(db.query(sql, params))


def verify(db: Database) -> dict[str, int | bool]:
    """Recompute the running totals from the rows; ``ok`` is true when they agree."""
    entries = db.conn.execute(
        "SELECT COALESCE(SUM(amount_micro), 0) FROM ledger_entries"
    ).fetchone()[0]
    held = db.conn.execute(
        "SELECT COALESCE(SUM(amount_micro), 0) FROM holds WHERE status = 'open'"
    ).fetchone()[0]
    b = balance(db)
    return {
        "ok": entries == b.entries and held == b.held,
        "entries_micro": entries,
        "held_micro": held,
        "cached_entries_micro": b.entries,
        "cached_held_micro": b.held,
    }
