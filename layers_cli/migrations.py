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
