"""Append-only, named schema migrations. Never edit a released one: add ``m00N_...``.

The schema version is the number of migrations applied; a database that has applied
migrations this code does not know was written by a newer Layers and is refused.
"""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

MIGRATIONS = Migrations("layers")


@MIGRATIONS()
def m001_initial(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE account (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            name TEXT NOT NULL DEFAULT 'default',
            created_at TEXT NOT NULL,
            -- running totals kept in the same transaction as every movement;
            -- `layers ledger verify` recomputes them from the rows
            entries_micro INTEGER NOT NULL DEFAULT 0,
            held_micro INTEGER NOT NULL DEFAULT 0,
            starter_granted INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE projects (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE COLLATE NOCASE,
            description TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            archived_at TEXT,
            budget_micro INTEGER,
            spent_micro INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            project_id INTEGER NOT NULL REFERENCES projects(id),
            label TEXT NOT NULL DEFAULT '',
            kind TEXT NOT NULL CHECK (kind IN ('live', 'test')),
            prefix TEXT NOT NULL,
            hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            last_used_at TEXT,
            expires_at TEXT,
            revoked_at TEXT,
            rotated_to TEXT,
            rpm INTEGER,
            tpm INTEGER,
            budget_micro INTEGER,
            spent_micro INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX api_keys_project ON api_keys(project_id);
        CREATE INDEX api_keys_prefix ON api_keys(prefix);
        CREATE TABLE ledger_entries (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created_at TEXT NOT NULL,
            kind TEXT NOT NULL
                CHECK (kind IN ('topup', 'grant', 'charge', 'refund', 'adjustment')),
            amount_micro INTEGER NOT NULL,
            request_id TEXT,
            key_id TEXT,
            project_id INTEGER,
            note TEXT NOT NULL DEFAULT ''
        );
        CREATE UNIQUE INDEX ledger_entries_request
            ON ledger_entries(request_id, kind) WHERE request_id IS NOT NULL;
        CREATE TABLE holds (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            request_id TEXT NOT NULL UNIQUE,
            amount_micro INTEGER NOT NULL CHECK (amount_micro >= 0),
            key_id TEXT,
            project_id INTEGER,
            pid INTEGER NOT NULL,
            status TEXT NOT NULL DEFAULT 'open'
                CHECK (status IN ('open', 'settled', 'released')),
            created_at TEXT NOT NULL,
            closed_at TEXT,
            charged_micro INTEGER
        );
        CREATE INDEX holds_open ON holds(status) WHERE status = 'open';
        CREATE TABLE requests (
            id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            key_id TEXT,
            project_id INTEGER,
            endpoint TEXT NOT NULL,
            model TEXT,
            provider TEXT,
            upstream_model TEXT,
            simulated INTEGER NOT NULL DEFAULT 0,
            streamed INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL,
            http_status INTEGER NOT NULL,
            finish_reason TEXT,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            cached_tokens INTEGER NOT NULL DEFAULT 0,
            cache_write_tokens INTEGER NOT NULL DEFAULT 0,
            reasoning_tokens INTEGER NOT NULL DEFAULT 0,
            images INTEGER NOT NULL DEFAULT 0,
            estimated INTEGER NOT NULL DEFAULT 0,
            base_micro INTEGER NOT NULL DEFAULT 0,
            credits_micro INTEGER NOT NULL DEFAULT 0,
            markup TEXT,
            latency_ms INTEGER,
            ttft_ms INTEGER,
            metadata TEXT,
            error_code TEXT,
            error TEXT
        );
        CREATE INDEX requests_created ON requests(created_at);
        CREATE INDEX requests_project ON requests(project_id, created_at);
        CREATE INDEX requests_key ON requests(key_id, created_at);
        CREATE INDEX requests_model ON requests(model, created_at);
        """
    )
    db.execute(
        "INSERT INTO account (id, created_at) VALUES (1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
    )


# The cells of the usage rollup: one row per UTC hour × project × key × model × status.
_CELL = ("hour", "project_id", "key_id", "model", "status")
_SUMS = (
    "prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens",
    "reasoning_tokens", "images", "base_micro", "credits_micro",
)  # fmt: skip


# The unique key of a cell; NULL project/key/model made comparable (NULLs never conflict).
_CELL_KEY = "hour, ifnull(project_id, -1), ifnull(key_id, ''), ifnull(model, ''), status"


def _rollup_add(row: str, sign: str) -> list[str]:
    """Trigger statements adding (``+``) or removing (``-``) request ``row`` (NEW/OLD)."""
    values = {
        "hour": f"substr({row}.created_at, 1, 13)",
        **{c: f"{row}.{c}" for c in _CELL[1:]},
    }
    if sign == "+":  # one upsert: a single probe of the unique cell index
        columns = ", ".join([*_CELL, "requests", *_SUMS])
        selected = ", ".join([*(values[c] for c in _CELL), "1", *(f"{row}.{c}" for c in _SUMS)])
        sums = ", ".join(f"{c} = {c} + excluded.{c}" for c in _SUMS)
        return [
            f"INSERT INTO usage_rollup ({columns}) VALUES ({selected})"
            f" ON CONFLICT({_CELL_KEY}) DO UPDATE SET requests = requests + 1, {sums};"
        ]
    match = (
        f"hour = {values['hour']} AND ifnull(project_id, -1) = ifnull({row}.project_id, -1)"
        f" AND ifnull(key_id, '') = ifnull({row}.key_id, '')"
        f" AND ifnull(model, '') = ifnull({row}.model, '') AND status = {row}.status"
    )
    sums = ", ".join(f"{c} = {c} - {row}.{c}" for c in _SUMS)
    return [
        f"UPDATE usage_rollup SET requests = requests - 1, {sums} WHERE {match};",
        f"DELETE FROM usage_rollup WHERE {match} AND requests = 0;",
    ]


@MIGRATIONS()
def m002_usage_rollup(db: Database) -> None:
    """Hourly usage totals kept by triggers, so usage reports read thousands of rollup rows
    instead of every request. Triggers (not application code) keep it, so no writer of
    `requests` (the gateway, a bulk import, a manual DELETE or UPDATE) can make it disagree,
    with one exception: REPLACE's implicit delete fires the delete trigger only under
    ``PRAGMA recursive_triggers``, so `requestlog.insert` rewrites a row with an upsert."""
    sums = ",\n            ".join(f"{c} INTEGER NOT NULL DEFAULT 0" for c in _SUMS)
    db.execute(
        f"""
        CREATE TABLE usage_rollup (
            hour TEXT NOT NULL,  -- substr(requests.created_at, 1, 13): 2026-11-30T14 (UTC)
            project_id INTEGER,
            key_id TEXT,
            model TEXT,
            status TEXT NOT NULL,
            requests INTEGER NOT NULL DEFAULT 0,
            {sums}
        )
        """
    )
    db.execute(f"CREATE UNIQUE INDEX usage_rollup_cell ON usage_rollup({_CELL_KEY})")
    columns = ", ".join([*_CELL, "requests", *_SUMS])
    db.execute(
        f"INSERT INTO usage_rollup ({columns})"
        f" SELECT substr(created_at, 1, 13), project_id, key_id, model, status, COUNT(*),"
        f" {', '.join(f'SUM({c})' for c in _SUMS)}"
        " FROM requests GROUP BY 1, 2, 3, 4, 5"
    )
    watched = ", ".join(["created_at", *_CELL[1:], *_SUMS])
    for name, event, body in (
        ("insert", "INSERT", _rollup_add("NEW", "+")),
        ("delete", "DELETE", _rollup_add("OLD", "-")),
        ("update", f"UPDATE OF {watched}", _rollup_add("OLD", "-") + _rollup_add("NEW", "+")),
    ):
        db.execute(
            f"CREATE TRIGGER requests_rollup_{name} AFTER {event} ON requests BEGIN\n"
            + "\n".join(body)
            + "\nEND"
        )


@MIGRATIONS()
def m003_ledger_totals_by_trigger(db: Database) -> None:
    """The running totals a ledger entry moves (the account's entries, and what a charge's
    key and project have spent) kept by a trigger in the statement that writes the entry:
    the settlement of a request is one statement fewer per total, and no writer of
    `ledger_entries` can make them disagree. Entries are append-only."""
    db.execute(
        """
        CREATE TRIGGER ledger_entries_totals AFTER INSERT ON ledger_entries BEGIN
            UPDATE account SET entries_micro = entries_micro + NEW.amount_micro WHERE id = 1;
            UPDATE api_keys SET spent_micro = spent_micro - NEW.amount_micro
                WHERE NEW.kind = 'charge' AND id = NEW.key_id;
            UPDATE projects SET spent_micro = spent_micro - NEW.amount_micro
                WHERE NEW.kind = 'charge' AND id = NEW.project_id;
        END
        """
    )


def _rebuild(db: Database, table: str, create: str) -> None:
    """Replace ``table`` by one made with ``create`` (same columns), keeping its rows, ids,
    AUTOINCREMENT counter, indexes and triggers: SQLite's documented procedure for a schema
    change that ALTER TABLE cannot make."""
    kept = [
        sql
        for (sql,) in db.execute(
            "SELECT sql FROM sqlite_schema WHERE tbl_name = ? AND type IN ('index', 'trigger')"
            " AND sql IS NOT NULL",
            [table],
        ).fetchall()
    ]
    counter = db.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", [table]).fetchone()
    db.execute(create.replace(f"CREATE TABLE {table} (", f"CREATE TABLE {table}_new (", 1))
    db.execute(f"INSERT INTO {table}_new SELECT * FROM {table}")
    db.execute(f"DROP TABLE {table}")
    db.execute(f"ALTER TABLE {table}_new RENAME TO {table}")
    for sql in kept:
        db.execute(sql)
    if counter is not None:
        db.execute(
            "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?", [counter[0], table]
        )


@MIGRATIONS()
def m004_cheaper_ledger_writes(db: Database) -> None:
    """Two costs every settlement paid, gone (measured on SQLite 3.40, Debian 12's):

    * The same CHECK rules, spelled as ``=`` chains. SQLite evaluates ``x IN ('a', 'b',
      'c')`` in a CHECK (three values or more) by building a temporary b-tree for the list
      on every row written: a pager opened and closed per charge entry (~5 µs).
    * ``ledger_entries`` without AUTOINCREMENT, whose counter row in ``sqlite_sequence`` was
      one more page written per commit. Entries are never deleted, so ``max(id) + 1`` never
      reuses an id.

    A CHECK cannot be altered, so both tables are rebuilt."""
    _rebuild(
        db,
        "ledger_entries",
        """
        CREATE TABLE ledger_entries (
            id INTEGER PRIMARY KEY,
            created_at TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (
                kind = 'topup' OR kind = 'grant' OR kind = 'charge' OR kind = 'refund'
                OR kind = 'adjustment'
            ),
            amount_micro INTEGER NOT NULL,
            request_id TEXT,
            key_id TEXT,
            project_id INTEGER,
            note TEXT NOT NULL DEFAULT ''
        )
        """,
    )
    _rebuild(
        db,
        "holds",
        """
        CREATE TABLE holds (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            request_id TEXT NOT NULL UNIQUE,
            amount_micro INTEGER NOT NULL CHECK (amount_micro >= 0),
            key_id TEXT,
            project_id INTEGER,
            pid INTEGER NOT NULL,
            status TEXT NOT NULL DEFAULT 'open'
                CHECK (status = 'open' OR status = 'settled' OR status = 'released'),
            created_at TEXT NOT NULL,
            closed_at TEXT,
            charged_micro INTEGER
        )
        """,
    )


@MIGRATIONS()
def m005_requests_indexed_by_time_only(db: Database) -> None:
    """Every request row paid for four secondary indexes; three (project, key, model, each
    then created_at) are dropped, ~30 µs of a ~170 µs settlement at 16 connections and ~75
    µs at one (measured on this gateway's bench). Readers no longer need them: listings and
    the hours a usage report cuts are read hour by hour (the rollup says which hours hold
    matching rows, `requests_created` ranges over one), and a key's last use is looked for
    in the newest hour the rollup has for it."""
    for name in ("requests_project", "requests_key", "requests_model"):
        db.execute(f"DROP INDEX IF EXISTS {name}")
