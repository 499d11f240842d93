"""Layers API keys: generated once, stored as a SHA-256 hash and a short display prefix.

A secret is ``lyr_live_`` or ``lyr_test_`` followed by 43 random URL-safe characters
(32 bytes). ``lyr_test_`` keys are always served by the offline simulator. The secret is
returned by `create_key` / `rotate_key` exactly once and never stored or logged.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .db import immediate, iso, now_iso, parse_date
from .errors import AuthenticationError, Conflict, InvalidRequest, NotFound

if TYPE_CHECKING:
    from sqlite_utils import Database

KIND_PREFIX = {"live": "lyr_live_", "test": "lyr_test_"}
RANDOM_BYTES = 32
DISPLAY_RANDOM_CHARS = 6
_SECRET_RE = re.compile(r"^lyr_(live|test)_[A-Za-z0-9_-]{32,}$")
_DURATION_RE = re.compile(r"^\s*(\d+)\s*([mhdwy])\s*$")
_DURATION_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True)
class Principal:
    """Who is calling: the verified key and its project."""

    key_id: str
    key_label: str
    kind: str
    prefix: str
    project_id: int
    project_name: str
    rpm: int | None
    tpm: int | None
    budget_micro: int | None
    project_budget_micro: int | None
    expires_at: str | None = None

    @property
    def is_test(self) -> bool:
        return self.kind == "test"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def generate_secret(kind: str = "live") -> str:
    if kind not in KIND_PREFIX:
        raise InvalidRequest(f"Key kind must be 'live' or 'test', not '{kind}'.")
    return KIND_PREFIX[kind] + secrets.token_urlsafe(RANDOM_BYTES)


def display_prefix(secret: str) -> str:
    kind = "live" if secret.startswith(KIND_PREFIX["live"]) else "test"
    return secret[: len(KIND_PREFIX[kind]) + DISPLAY_RANDOM_CHARS]


def parse_expiry(text: str | None, now: datetime | None = None) -> str | None:
    """``30d``, ``12h``, ``2w``, ``1y`` or an ISO date → an ISO timestamp (UTC)."""
    if not text:
        return None
    now = now or datetime.now(UTC)
    match = _DURATION_RE.match(text)
    if match:
        n, unit = int(match.group(1)), match.group(2)
        if n <= 0:
            raise InvalidRequest("--expires must be in the future.", param="expires")
        delta = timedelta(days=365 * n) if unit == "y" else timedelta(**{_DURATION_UNITS[unit]: n})
        return iso(now + delta)
    when = parse_date(text, "--expires", "a duration (30d, 12h, 2w, 1y)")
    if when <= now:
        raise InvalidRequest("--expires must be in the future.", param="expires")
    return iso(when)


def _new_key_id() -> str:
    return "key_" + secrets.token_hex(6)


def create_key(
    db: Database,
    project_id: int,
    *,
    label: str = "",
    kind: str = "live",
    expires_at: str | None = None,
    rpm: int | None = None,
    tpm: int | None = None,
    budget_micro: int | None = None,
) -> tuple[dict[str, Any], str]:
    """Create a key; returns (its row, the secret). The secret is not kept anywhere."""
    for name, value in (("rpm", rpm), ("tpm", tpm), ("budget", budget_micro)):
        if value is not None and value <= 0:
            raise InvalidRequest(f"--{name} must be positive.", param=name)
    secret = generate_secret(kind)
    row = {
        "id": _new_key_id(),
        "project_id": project_id,
        "label": label,
        "kind": kind,
        "prefix": display_prefix(secret),
        "hash": hash_secret(secret),
        "created_at": now_iso(),
        "expires_at": expires_at,
        "rpm": rpm,
        "tpm": tpm,
        "budget_micro": budget_micro,
    }
    with immediate(db) as conn:
        conn.execute(
            f"INSERT INTO api_keys ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            list(row.values()),
        )
    return get_key(db, row["id"]), secret


# A key's last use is its newest request row: the rollup's newest hour for the key (read
# newest first along its hour-led index), then that hour's rows through `requests_created`.
# The request path writes nothing to the key for it (`api_keys.last_used_at` is not kept).
# The hour is looked up twice, as a scalar each time: joined instead, SQLite materialises the
# subquery and sorts the whole rollup for every key.
_NEWEST_HOUR = (
    "(SELECT u.hour FROM usage_rollup u WHERE u.key_id = k.id ORDER BY u.hour DESC LIMIT 1)"
)
_LAST_USED = (
    f"(SELECT MAX(r.created_at) FROM requests r WHERE r.created_at >= {_NEWEST_HOUR}"
    f" AND r.created_at < {_NEWEST_HOUR} || ';' AND r.key_id = k.id)"  # ';' follows ':'
)
_KEY_SELECT = (
    "SELECT k.id, k.project_id, k.label, k.kind, k.prefix, k.hash, k.created_at,"
    f" {_LAST_USED} AS last_used_at,"
    " k.expires_at, k.revoked_at, k.rotated_to, k.rpm, k.tpm, k.budget_micro, k.spent_micro,"
    " p.name AS project_name, p.archived_at AS project_archived_at"
    " FROM api_keys k JOIN projects p ON p.id = k.project_id"
)


def key_status(row: dict[str, Any], now: str | None = None) -> str:
    now = now or now_iso()
    if row["revoked_at"]:
        return "revoked"
    if row["expires_at"] and row["expires_at"] <= now:
        return "expired"
    if row.get("project_archived_at"):
        return "archived"
    return "active"


def get_key(db: Database, id_or_prefix: str) -> dict[str, Any]:
    """A key by id (``key_…``) or display prefix (``lyr_live_AbC…``)."""
    rows = list(
        db.query(f"{_KEY_SELECT} WHERE k.id = ? OR k.prefix = ?", [id_or_prefix, id_or_prefix])
    )
    if not rows and len(id_or_prefix) >= 8:
        rows = list(db.query(f"{_KEY_SELECT} WHERE k.prefix LIKE ?", [id_or_prefix + "%"]))
    if not rows:
        raise NotFound(
            f"No key '{id_or_prefix}'.",
            hint="Run `layers keys list --all` to see key ids and prefixes.",
            param="key",
        )
    if len(rows) > 1:
        raise Conflict(
            f"'{id_or_prefix}' matches {len(rows)} keys; use the key id instead.",
            hint="Run `layers keys list --all`.",
        )
    row = rows[0]
    row["status"] = key_status(row)
    return row


def list_keys(
    db: Database, project_id: int | None = None, include_inactive: bool = False
) -> list[dict[str, Any]]:
    sql, params = _KEY_SELECT, []
    if project_id is not None:
        sql += " WHERE k.project_id = ?"
        params.append(project_id)
    rows = list(db.query(sql + " ORDER BY k.created_at, k.id", params))
    now = now_iso()
    for row in rows:
        row["status"] = key_status(row, now)
    return rows if include_inactive else [r for r in rows if r["status"] == "active"]


def revoke_key(db: Database, id_or_prefix: str) -> dict[str, Any]:
    row = get_key(db, id_or_prefix)
    if row["revoked_at"]:
        raise Conflict(f"Key {row['id']} ({row['prefix']}…) is already revoked.")
    with immediate(db) as conn:
        conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (now_iso(), row["id"]))
    return get_key(db, row["id"])


def rotate_key(db: Database, id_or_prefix: str) -> tuple[dict[str, Any], str]:
    """A new secret with the same project, label, limits and budget; the old key is revoked."""
    old = get_key(db, id_or_prefix)
    if old["revoked_at"]:
        raise Conflict(
            f"Key {old['id']} ({old['prefix']}…) is revoked and cannot be rotated.",
            hint=f"Create a new key with `layers keys create --project {old['project_name']}`.",
        )
    secret = generate_secret(old["kind"])
    new_id = _new_key_id()
    now = now_iso()
    with immediate(db) as conn:
        conn.execute(
            "INSERT INTO api_keys (id, project_id, label, kind, prefix, hash, created_at,"
            " expires_at, rpm, tpm, budget_micro, spent_micro)"
            " SELECT ?, project_id, label, kind, ?, ?, ?, expires_at, rpm, tpm, budget_micro,"
            " spent_micro FROM api_keys WHERE id = ?",
            (new_id, display_prefix(secret), hash_secret(secret), now, old["id"]),
        )
        conn.execute(
            "UPDATE api_keys SET revoked_at = ?, rotated_to = ? WHERE id = ?",
            (now, new_id, old["id"]),
        )
    return get_key(db, new_id), secret


def update_key(
    db: Database,
    id_or_prefix: str,
    *,
    rpm: int | None = None,
    tpm: int | None = None,
    budget_micro: int | None = None,
    label: str | None = None,
) -> dict[str, Any]:
    row = get_key(db, id_or_prefix)
    changes: dict[str, Any] = {}
    for name, value in (("rpm", rpm), ("tpm", tpm), ("budget_micro", budget_micro)):
        if value is not None:
            if value < 0:
                raise InvalidRequest(f"--{name.split('_')[0]} cannot be negative.")
            changes[name] = value or None  # 0 clears the limit
    if label is not None:
        changes["label"] = label
    if changes:
        with immediate(db) as conn:
            sets = ", ".join(f"{k} = ?" for k in changes)
            conn.execute(f"UPDATE api_keys SET {sets} WHERE id = ?", [*changes.values(), row["id"]])
    return get_key(db, row["id"])


def verify(db: Database, authorization: str | None) -> Principal:
    """Turn an ``Authorization`` header into a `Principal`, or say exactly what is wrong.

    Messages never echo the secret: at most its display prefix.
    """
    if not authorization:
        raise AuthenticationError(
            "Missing API key: send `Authorization: Bearer lyr_live_…`.",
            hint="Create one with `layers keys create --project NAME`.",
            code="missing_api_key",
        )
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError(
            "Malformed Authorization header: expected `Bearer <key>`.", code="invalid_api_key"
        )
    if not _SECRET_RE.match(token):
        raise AuthenticationError(
            "Malformed API key: Layers keys start with `lyr_live_` or `lyr_test_` followed by "
            "at least 32 characters.",
            code="invalid_api_key",
        )
    rows = list(db.query(f"{_KEY_SELECT} WHERE k.hash = ?", [hash_secret(token)]))
    prefix = display_prefix(token)
    if not rows:
        raise AuthenticationError(
            f"Unknown API key {prefix}…: no key with this secret exists in this Layers home.",
            hint="Check the key, or create one with `layers keys create --project NAME`.",
            code="invalid_api_key",
        )
    row = rows[0]
    status = key_status(row)
    if status == "revoked":
        raise AuthenticationError(
            f"API key {row['prefix']}… was revoked on {row['revoked_at'][:10]}.",
            hint="Use its replacement or create a new key with `layers keys create`.",
            code="revoked_api_key",
        )
    if status == "expired":
        raise AuthenticationError(
            f"API key {row['prefix']}… expired on {row['expires_at'][:10]}.",
            hint="Create a new key with `layers keys create`.",
            code="expired_api_key",
        )
    if status == "archived":
        raise AuthenticationError(
            f"API key {row['prefix']}… belongs to project '{row['project_name']}', which is "
            "archived.",
            hint="Use a key of an active project.",
            code="archived_project",
        )
    budget = db.conn.execute(
        "SELECT budget_micro FROM projects WHERE id = ?", (row["project_id"],)
    ).fetchone()[0]
    return Principal(
        key_id=row["id"],
        key_label=row["label"],
        kind=row["kind"],
        prefix=row["prefix"],
        project_id=row["project_id"],
        project_name=row["project_name"],
        rpm=row["rpm"],
        tpm=row["tpm"],
        budget_micro=row["budget_micro"],
        project_budget_micro=budget,
        expires_at=row["expires_at"],
    )
