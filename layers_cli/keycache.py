"""Verified API keys remembered by the daemon, forgotten when the database changes.

Verifying a key is a database read on the database thread for every request; remembering it
saves that trip. A remembered key is only as good as the rows it was read from, so every
key is forgotten as soon as another connection (the CLI revoking a key, changing a limit or
a budget) has committed: SQLite's ``data_version`` is compared before each batch of the
database thread and, when that thread is not busy, as each request arrives
(`forget_if_changed`). A growth of the reservation or a hold row re-verifies a key that was
forgotten meanwhile, and a request refused for another reason re-checks its key first (see
`Gateway.run`), so a revoked key is still told so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .db import now_iso
from .keys import verify

if TYPE_CHECKING:
    from .keys import Principal

MAX_REMEMBERED = 10_000


class RememberedKeys:
    def __init__(self) -> None:
        # the Authorization header → its key. Keyed by the header itself, which the daemon
        # holds anyway while it serves a request; never written anywhere. (Its SHA-256, as
        # the database stores, cost 2% of the event loop's work per request: issue 5.)
        self._by_header: dict[str, Principal] = {}
        self._data_version: int | None = None
        self._version_cursor: Any = None  # reused: the check runs as each request arrives

    def get(self, authorization: str | None) -> Principal | None:
        """The remembered key for this header, unless it has expired since."""
        if not authorization:
            return None
        principal = self._by_header.get(authorization)
        if principal is None:
            return None
        if principal.expires_at is not None and principal.expires_at <= now_iso():
            return None
        return principal

    def knows(self, authorization: str) -> bool:
        return authorization in self._by_header

    def remember(self, authorization: str | None, principal: Principal) -> None:
        if not authorization:
            return
        if len(self._by_header) >= MAX_REMEMBERED:
            self._by_header.clear()
        self._by_header[authorization] = principal

    def reverify(self, db: Any, authorization: str | None) -> Principal | None:
        """On the database thread: a key forgotten since its request was admitted (another
        process committed) is read again, so a revoked key is refused here (401). Returns it
        when it was read."""
        if authorization and not self.knows(authorization):
            current = verify(db, authorization)
            self.remember(authorization, current)
            return current
        return None

    def forget_if_changed(self, db: Any) -> bool:
        """Did another connection commit? (Never two threads at once: `DatabaseThread`
        runs it before each batch, and `try_now` only between batches.)"""
        cursor = self._version_cursor
        if cursor is None or cursor.connection is not db.conn:
            cursor = self._version_cursor = db.conn.cursor()
        version = cursor.execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version:
            return False
        self._data_version = version
        self._by_header.clear()
        return True
