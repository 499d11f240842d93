"""Where each request's hold lives, decided on the event loop.

Every hold is first the daemon's own bookkeeping; what stands behind it depends on when the
client could first see output:

* **balance** — a whole (non-streamed) response leaves only after its charge is written. When
  the daemon's own view of the balance proves the request's worst case is there (`_certain`,
  counting every other request it holds), the request is held in memory only, and its
  charge is written only if the balance still covers it (`ledger.charge_from_balance`):
  another process that spent the balance meanwhile costs that one upstream call, and the
  client a 402 instead of the answer, never a charge beyond the balance.
* **reservation** — a stream (or a request the view cannot prove) is held against the
  daemon's **reservation** (`ledger.reserve`): one open hold in SQLite covering the worst
  cases of such requests in flight, which every other process sees as held. While it has
  room, a request costs no database work before its settlement, which takes the charge out
  of it. When it is too small it is grown to twice what is in flight (so a steady load
  stops growing it), and when the daemon falls idle it is given back, so `layers credits
  balance` shows nothing held between requests.
* **row** — a key or project with a budget gets a hold row of its own (`ledger.hold`): the
  budget check needs the database.

A growth the daemon's view proves will be granted runs while the upstream call already
does, and is confirmed before anything reaches the client; otherwise the upstream call waits
for it.

Every movement is queued on the database thread in order, so the reservation after all
queued work is the last committed amount plus what the queued movements will add or take
(`Holds.reserved`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import ledger
from .db import immediate
from .errors import InsufficientCredits

if TYPE_CHECKING:
    from .keycache import RememberedKeys
    from .keys import Principal

Submit = Callable[..., "asyncio.Future[Any]"]


class Holds:
    def __init__(self, submit: Submit, known_keys: RememberedKeys) -> None:
        self._submit = submit  # fn(db, ...) on the database thread, resolved after commit
        self._known_keys = known_keys
        self.row_id = 0  # the reservation's row (`open`)
        self.in_flight = 0  # worst cases of the requests held against the reservation
        self._pledged = 0  # worst cases of the requests held against the balance itself
        self._open = 0  # those requests, until their settlement commits
        self._committed = 0  # the reservation after the last movement seen to commit
        self._queued: dict[int, int] = {}  # movement number → change it should make
        self._movements = 0
        # The account's available balance after the last movement seen to commit, and what
        # the movements queued since will take from it: together they tell when a growth
        # is certain, and whether a charge leaves the reservation whole.
        self._available: int | None = None
        self._unconfirmed = 0
        self._growing: asyncio.Future[Any] | None = None  # the latest growth, until committed

    @property
    def reserved(self) -> int:
        """The reservation once every queued movement has committed as expected."""
        return self._committed + sum(self._queued.values())

    async def open(self) -> None:
        self.row_id, opened = await self._submit(ledger.open_reservation)
        self._available = opened.available

    async def close(self) -> None:
        """Give the reservation back (the daemon is stopping, nothing is in flight)."""
        if self.row_id:
            await self._submit(ledger.close_reservation, self.row_id)

    def seen_elsewhere(self) -> None:
        """Another process committed: until a movement of this daemon reads the balance
        again, no growth is certain and no charge is expected to leave the reservation whole.
        (Called from the database thread too: one assignment.)"""
        self._available = None

    # -- placing --------------------------------------------------------------------------
    def place(
        self,
        request_id: str,
        worst: int,
        principal: Principal,
        authorization: str | None,
        streamed: bool,
    ) -> tuple[ledger.Hold, asyncio.Future[Any] | None, bool]:
        """Hold ``worst`` for a request. Returns the hold, the database movement it still
        depends on (to confirm before any output) and whether the upstream call must wait
        for that movement."""
        if principal.budget_micro is not None or principal.project_budget_micro is not None:
            return self._hold_row(request_id, worst, principal, authorization)
        if not streamed and self._certain(authorization, worst):
            self._pledged += worst
            hold = ledger.Hold(
                0, request_id, worst, principal.key_id, principal.project_id, backing="balance"
            )
            return hold, None, False
        hold = ledger.Hold(
            0, request_id, worst, principal.key_id, principal.project_id, backing="reservation"
        )
        self.in_flight += worst
        self._open += 1
        need = self.in_flight
        if need <= self.reserved:
            return hold, self._growing, False
        # Twice what is in flight, so a steady load stops growing it. When this daemon's
        # view shows the balance covers that, the requests arriving meanwhile count on it
        # (held in memory, confirmed with this growth), so the growth is all or nothing.
        want = 2 * need
        if self._certain(authorization, want - self.reserved):
            need, certain = want, True
        else:
            certain = self._certain(authorization, need - self.reserved)
        growth = need - self.reserved
        row_id, pledged = self.row_id, self._pledged

        def _grow(db: Any) -> ledger.Reserved:
            self._known_keys.reverify(db, authorization)
            return ledger.reserve(db, row_id, need, want, worst, pledged)

        future = self._movement(_grow, growth, spends=growth)
        self._growing = future
        future.add_done_callback(self._grown)
        return hold, future, not certain

    def _hold_row(
        self, request_id: str, worst: int, principal: Principal, authorization: str | None
    ) -> tuple[ledger.Hold, asyncio.Future[Any], bool]:
        """A hold of its own, budgets checked (the upstream call waits for it)."""

        def _hold(db: Any) -> ledger.Hold:
            current = self._known_keys.reverify(db, authorization) or principal
            return ledger.hold(
                db,
                worst,
                request_id,
                key_id=principal.key_id,
                project_id=principal.project_id,
                key_name=principal.key_label or principal.prefix,
                project_name=principal.project_name,
                budgets=current.budget_micro is not None
                or current.project_budget_micro is not None,
            )

        hold = ledger.Hold(0, request_id, worst, principal.key_id, principal.project_id)
        future = self._submit(_hold)
        future.add_done_callback(self._hold_placed)
        return hold, future, True

    def _certain(self, authorization: str | None, amount: int) -> bool:
        """True when ``amount`` is in the balance unless another process committed meanwhile:
        this daemon saw the balance after its last committed movement, what its queued
        movements and its requests held against the balance may still take is subtracted,
        and the key is still remembered (keys are forgotten, and the balance unknown, once
        another process's commit is seen). If another process did spend or revoke in
        between (a second daemon on the same home, a negative adjustment, `layers keys
        revoke`), the client still gets its 402 or 401 before any output; only the upstream
        calls started meanwhile are wasted."""
        return (
            authorization is not None
            and self._known_keys.knows(authorization)
            and self._spare() >= amount
        )

    def _spare(self) -> int:
        """What this daemon's view leaves of the balance outside the reservation (-1 when
        it has no view). Read once: the database thread may clear it (`seen_elsewhere`)."""
        available = self._available
        if available is None:
            return -1
        return available - self._unconfirmed - self._pledged

    # -- closing --------------------------------------------------------------------------
    async def settle(
        self, hold: ledger.Hold | None, actual: int | None, also: ledger.AlsoFn | None
    ) -> tuple[int, int]:
        """Charge ``actual`` (``None``: release, the request failed) and run ``also`` in the
        same transaction (with no hold, ``also`` alone: a request refused before it held
        anything). Returns (charged, the balance the key's requests can still use)."""
        if hold is None or hold.backing == "balance":
            if hold is not None:
                self._pledged -= hold.amount
            if actual is None:
                await self._submit(_record_only, also)
                return 0, 0
            assert hold is not None
            charge = actual

            def _from_balance(db: Any) -> tuple[int, int]:
                return ledger.charge_from_balance(db, hold, charge, also=also)

            charged, available = await self._movement(_from_balance, 0, actual)
            return charged, available + max(self.reserved - self.in_flight, 0)
        if hold.backing == "row":

            def _close(db: Any) -> tuple[int, int]:
                if actual is None:
                    ledger.release(db, hold, also=also)
                    charged = 0
                else:
                    charged = ledger.settle(db, hold, actual, also=also)
                return charged, ledger.balance(db).available

            return await self._submit(_close)
        self.in_flight -= hold.amount
        # Idle: no other request is between its hold and its committed settlement. Counting
        # those still settling keeps a steady load from giving the reservation back.
        idle = self._open == 1
        charge = actual or 0
        if idle:
            change, spends = -self.reserved, charge
        elif self._spare() >= charge:
            change, spends = 0, charge  # the balance outside the reservation pays
        else:
            change, spends = -min(charge, self.reserved), 0
        row_id = self.row_id

        def _charge(db: Any) -> tuple[int, ledger.Reserved]:
            return ledger.charge_reserved(db, row_id, hold, charge, idle=idle, also=also)

        try:
            charged, left = await self._movement(_charge, change, spends)
        finally:
            self._open -= 1
        if self._open == 0 and self.reserved:
            # the others settled while this one did: the daemon is idle now, and the
            # reservation goes back before this response leaves, as an inline one would
            await self._give_back()
            left = ledger.Reserved(0, left.available + left.amount)
        return charged, left.available + max(left.amount - self.in_flight, 0)

    def abandon(self, hold: ledger.Hold | None) -> None:
        """A request ended with nothing to record (cancelled): whatever it holds is given
        back. Movements run in the order queued, so a hold row still being placed is
        released right after it."""
        if hold is None:
            return
        if hold.backing == "balance":
            self._pledged -= hold.amount
            return
        if hold.backing == "row":
            self._submit(ledger.release, hold).add_done_callback(_ignore)
            return
        self.in_flight -= hold.amount
        self._open -= 1
        if self._open == 0 and self.reserved:
            asyncio.ensure_future(self._give_back()).add_done_callback(_ignore)

    async def _give_back(self) -> None:
        row_id, nothing = self.row_id, ledger.Hold(0, "", 0)
        await self._movement(
            lambda db: ledger.charge_reserved(db, row_id, nothing, 0, idle=True), -self.reserved
        )

    # -- bookkeeping ------------------------------------------------------------------------
    def _movement(
        self, fn: Callable[[Any], Any], change: int, spends: int = 0
    ) -> asyncio.Future[Any]:
        """Queue a movement expected to change the reservation by ``change`` and to take
        ``spends`` from the balance outside it."""
        self._movements += 1
        number = self._movements
        self._queued[number] = change
        self._unconfirmed += spends
        future = self._submit(fn)

        def committed(done: asyncio.Future[Any]) -> None:
            del self._queued[number]
            self._unconfirmed -= spends
            if done.cancelled():
                return
            exc = done.exception()
            if exc is None:  # a Reserved, or (charged, a Reserved or the available balance)
                result = done.result()
                left = result[1] if isinstance(result, tuple) else result
                if isinstance(left, ledger.Reserved):
                    self._committed, self._available = left.amount, left.available
                else:
                    self._available = left
            elif isinstance(exc, InsufficientCredits):  # what this daemon knew was wrong
                self._available = None

        future.add_done_callback(committed)
        return future

    def _grown(self, done: asyncio.Future[Any]) -> None:
        if self._growing is done:
            self._growing = None

    def _hold_placed(self, done: asyncio.Future[Any]) -> None:
        """A hold row placed: the available balance it left."""
        if done.cancelled():
            return
        if done.exception() is None:
            placed: ledger.Hold = done.result()
            if placed.available_after is not None:
                self._available = placed.available_after
        elif isinstance(done.exception(), InsufficientCredits):
            self._available = None


def _record_only(db: Any, also: ledger.AlsoFn | None) -> None:
    """A failed request that held nothing in the database: nothing moves, its row is
    written."""
    if also is not None:
        with immediate(db) as conn:
            also(conn)


def _ignore(done: asyncio.Future[Any]) -> None:
    """Retrieve the outcome of a movement nobody awaits (it is logged by nobody)."""
    if not done.cancelled():
        done.exception()
