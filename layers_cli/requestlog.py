"""The request table: one row per request the gateway saw, failed ones too.

Rows are written by the service (inside the settle/release transaction when money moved),
read by `layers requests`, `layers usage`, ``GET /v1/usage`` and ``GET /v1/generation``.
Usage reports are single aggregate queries over indexed columns, so they stay fast as the
table grows.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlite_utils import Database

from .db import iso, parse_date
from .errors import InvalidRequest, NotFound

COLUMNS = [
    "id",
    "created_at",
    "key_id",
    "project_id",
    "endpoint",
    "model",
    "provider",
    "upstream_model",
    "simulated",
    "streamed",
    "status",
    "http_status",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "images",
    "estimated",
    "base_micro",
    "credits_micro",
    "markup",
    "latency_ms",
    "ttft_ms",
    "metadata",
    "error_code",
    "error",
]
_INSERT = (
    f"INSERT OR REPLACE INTO requests ({', '.join(COLUMNS)})"
    f" VALUES ({', '.join('?' * len(COLUMNS))})"
)
GROUPINGS = {
    "day": "substr(r.created_at, 1, 10)",
    "model": "r.model",
    "project": "p.name",
    "key": "r.key_id",
}
_SINCE_RE = re.compile(r"^\s*(\d+)\s*([hdwm])\s*$")


@dataclass
class RequestRow:
    id: str
    created_at: str
    endpoint: str
    status: str = "ok"
    http_status: int = 200
    key_id: str | None = None
    project_id: int | None = None
    model: str | None = None
    provider: str | None = None
    upstream_model: str | None = None
    simulated: bool = False
    streamed: bool = False
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    images: int = 0
    estimated: bool = False
    base_micro: int = 0
    credits_micro: int = 0
    markup: str | None = None
    latency_ms: int | None = None
    ttft_ms: int | None = None
    metadata: dict[str, Any] | None = field(default=None)
    error_code: str | None = None
    error: str | None = None

    def values(self) -> list[Any]:
        """The row in `COLUMNS` order (attribute reads: `asdict` deep-copies, ~0.2 ms)."""
        data = dict(self.__dict__)
        data["metadata"] = json.dumps(self.metadata) if self.metadata else None
        data["simulated"] = int(self.simulated)
        data["streamed"] = int(self.streamed)
        data["estimated"] = int(self.estimated)
        return [data[c] for c in COLUMNS]


def insert(conn: sqlite3.Connection, row: RequestRow) -> None:
    conn.execute(_INSERT, row.values())
    if row.key_id:
        conn.execute(
            "UPDATE api_keys SET last_used_at = ? WHERE id = ?", (row.created_at, row.key_id)
        )


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    if row.get("metadata"):
        row["metadata"] = json.loads(row["metadata"])
    for flag in ("simulated", "streamed", "estimated"):
        if flag in row:
            row[flag] = bool(row[flag])
    return row


def get_request(db: Database, request_id: str) -> dict[str, Any]:
    rows = list(
        db.query(
            "SELECT r.*, p.name AS project_name, k.prefix AS key_prefix FROM requests r"
            " LEFT JOIN projects p ON p.id = r.project_id"
            " LEFT JOIN api_keys k ON k.id = r.key_id WHERE r.id = ?",
            [request_id],
        )
    )
    if not rows:
        raise NotFound(
            f"No request '{request_id}'.",
            hint="Run `layers requests list` to see recent request ids.",
            param="id",
        )
    return _decode(rows[0])


def parse_since(text: str | None, now: datetime | None = None) -> str | None:
    """``7d``, ``24h``, ``2w``, ``3m`` (months of 30 days) or a date → ISO lower bound."""
    if not text:
        return None
    now = now or datetime.now(UTC)
    match = _SINCE_RE.match(text)
    if match:
        n, unit = int(match.group(1)), match.group(2)
        days = {"h": n / 24, "d": n, "w": 7 * n, "m": 30 * n}[unit]
        return iso(now - timedelta(days=days))
    return iso(parse_date(text, "--since", "a duration (7d, 24h, 2w)"))


@dataclass
class Filters:
    project_id: int | None = None
    key_id: str | None = None
    model: str | None = None
    status: str | None = None
    since: str | None = None
    until: str | None = None

    def where(self) -> tuple[str, list[Any]]:
        clauses, params = [], []
        for column, value in (
            ("r.project_id", self.project_id),
            ("r.key_id", self.key_id),
            ("r.model", self.model),
            ("r.status", self.status),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if self.since:
            clauses.append("r.created_at >= ?")
            params.append(self.since)
        if self.until:
            clauses.append("r.created_at < ?")
            params.append(self.until)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def list_requests(db: Database, filters: Filters, limit: int = 50) -> list[dict[str, Any]]:
    where, params = filters.where()
    rows = db.query(
        "SELECT r.*, p.name AS project_name FROM requests r"
        f" LEFT JOIN projects p ON p.id = r.project_id{where}"
        " ORDER BY r.created_at DESC, r.rowid DESC LIMIT ?",
        [*params, limit],
    )
    return [_decode(row) for row in rows]


_AGGREGATES = (
    "COUNT(*) AS requests, SUM(r.status = 'ok') AS succeeded,"
    " COALESCE(SUM(r.prompt_tokens), 0) AS prompt_tokens,"
    " COALESCE(SUM(r.completion_tokens), 0) AS completion_tokens,"
    " COALESCE(SUM(r.cached_tokens), 0) AS cached_tokens,"
    " COALESCE(SUM(r.reasoning_tokens), 0) AS reasoning_tokens,"
    " COALESCE(SUM(r.images), 0) AS images,"
    " COALESCE(SUM(r.base_micro), 0) AS base_micro,"
    " COALESCE(SUM(r.credits_micro), 0) AS credits_micro"
)


def usage(db: Database, filters: Filters, by: str | None = None) -> dict[str, Any]:
    """Totals and (optionally) rows grouped by day, model, project or key."""
    if by is not None and by not in GROUPINGS:
        raise InvalidRequest(f"--by must be one of {', '.join(GROUPINGS)}, not '{by}'.", param="by")
    where, params = filters.where()
    join = " LEFT JOIN projects p ON p.id = r.project_id" if by == "project" else ""
    total = next(iter(db.query(f"SELECT {_AGGREGATES} FROM requests r{where}", params)))
    total["succeeded"] = total["succeeded"] or 0
    groups: list[dict[str, Any]] = []
    if by:
        expr = GROUPINGS[by]
        groups = list(
            db.query(
                f"SELECT {expr} AS grp, {_AGGREGATES} FROM requests r{join}{where}"
                f" GROUP BY {expr} ORDER BY {'grp' if by == 'day' else 'credits_micro DESC'}",
                params,
            )
        )
    return {"total": total, "groups": groups, "by": by}
