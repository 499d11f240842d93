"""The hourly usage rollup: reports read from it equal the raw aggregate over `requests`
exactly, for any rows and any filters; the migration backfills it; the triggers keep it
through inserts, replacements, updates and deletes; the CLI and GET /v1/usage use it."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlite_utils import Database

from layers_cli import keys, requestlog
from layers_cli.db import open_db
from layers_cli.migrations import MIGRATIONS
from layers_cli.requestlog import Filters, RequestRow
from layers_cli.service import Layers
from layers_cli.settings import load_settings
from tests.support.cli import run
from tests.support.gateway import running_gateway

# -- the oracle: the aggregate straight over `requests` (the query reports used before) ---------

RAW_GROUPINGS = {
    "day": "substr(r.created_at, 1, 10)",
    "model": "r.model",
    "project": "p.name",
    "key": "r.key_id",
}
RAW_AGGREGATES = (
    "COUNT(*) AS requests, COALESCE(SUM(r.status = 'ok'), 0) AS succeeded,"
    " COALESCE(SUM(r.prompt_tokens), 0) AS prompt_tokens,"
    " COALESCE(SUM(r.completion_tokens), 0) AS completion_tokens,"
    " COALESCE(SUM(r.cached_tokens), 0) AS cached_tokens,"
    " COALESCE(SUM(r.reasoning_tokens), 0) AS reasoning_tokens,"
    " COALESCE(SUM(r.images), 0) AS images,"
    " COALESCE(SUM(r.base_micro), 0) AS base_micro,"
    " COALESCE(SUM(r.credits_micro), 0) AS credits_micro"
)


def raw_usage(db: Database, filters: Filters, by: str | None) -> dict[str, Any]:
    where, params = filters.where()
    total = next(iter(db.query(f"SELECT {RAW_AGGREGATES} FROM requests r{where}", params)))
    groups: list[dict[str, Any]] = []
    if by:
        expr = RAW_GROUPINGS[by]
        join = " LEFT JOIN projects p ON p.id = r.project_id" if by == "project" else ""
        order = "grp" if by == "day" else "credits_micro DESC, grp"
        groups = list(
            db.query(
                f"SELECT {expr} AS grp, {RAW_AGGREGATES} FROM requests r{join}{where}"
                f" GROUP BY {expr} ORDER BY {order}",
                params,
            )
        )
    return {"total": total, "groups": groups, "by": by}


def raw_list(db: Database, filters: Filters, limit: int) -> list[str]:
    where, params = filters.where()
    return [
        row["id"]
        for row in db.query(
            f"SELECT r.id FROM requests r{where} ORDER BY r.created_at DESC, r.rowid DESC LIMIT ?",
            [*params, limit],
        )
    ]


def memory_db() -> Database:
    db = Database(sqlite3.connect(":memory:"))
    MIGRATIONS.apply(db)
    for pid, name in ((1, "alpha"), (2, "Beta"), (3, "gamma")):
        db.execute(
            "INSERT INTO projects (id, name, created_at) VALUES (?, ?, '2026-01-01')", [pid, name]
        )
    return db


def rollup_cells(db: Database) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT hour, project_id, key_id, model, status, requests, prompt_tokens, credits_micro"
        " FROM usage_rollup ORDER BY 1, 2, 3, 4, 5"
    ).fetchall()


# -- random rows and filters --------------------------------------------------------------

START = datetime(2026, 11, 29, 22, tzinfo=UTC)
HOURS = 2  # rows from 21:00 to 00:59 across a midnight: few hours, each with several rows
PROJECTS = [None, 1, 2, 3, 99]  # 99: a project id with no projects row
KEYS = [None, "key_a", "key_b"]
MODELS = [None, "openai/gpt-4o", "stub/fast"]
STATUSES = ["ok", "error", "cancelled"]


def stamp(seconds: float) -> str:
    when = START + timedelta(seconds=seconds)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# rows and bounds share these instants, so that rows sit on, just before and just after the
# bounds, and the hours the bounds cut hold rows on both sides of them
instants = st.builds(
    lambda hour, offset: hour * 3600 + offset,
    st.integers(-1, HOURS),
    st.one_of(
        st.sampled_from([0.0, 0.001, 600.0, 1800.0, 1800.001, 3599.999]),
        st.floats(0, 3599.999, allow_nan=False).map(lambda s: round(s, 3)),
    ),
)
rows = st.builds(
    dict,
    at=instants,
    project_id=st.sampled_from(PROJECTS),
    key_id=st.sampled_from(KEYS),
    model=st.sampled_from(MODELS),
    status=st.sampled_from(STATUSES),
    prompt_tokens=st.integers(0, 5000),
    completion_tokens=st.integers(0, 5000),
    cached_tokens=st.integers(0, 500),
    reasoning_tokens=st.integers(0, 500),
    images=st.integers(0, 3),
    base_micro=st.integers(0, 10**7),
    credits_micro=st.integers(0, 10**7),
)


def bound(kind: str, seconds: float) -> str:
    """A since/until as users and the service produce them: a full timestamp (from ``7d``),
    a date, an hour prefix, or a whole hour."""
    full = stamp(seconds)
    return {"full": full, "date": full[:10], "hour": full[:13], "whole": full[:13] + ":00:00.000Z"}[
        kind
    ]


bounds = st.one_of(
    st.none(),
    st.tuples(st.sampled_from(["full", "full", "date", "hour", "whole"]), instants).map(
        lambda t: bound(*t)
    ),
)


def maybe(values: list[Any]) -> st.SearchStrategy[Any]:
    """No filter half the time, so that some rows match most queries."""
    return st.one_of(st.none(), st.sampled_from(values))


filters = st.builds(
    Filters,
    project_id=maybe(PROJECTS),
    key_id=maybe(KEYS),
    model=maybe(MODELS),
    status=maybe([*STATUSES, "nosuch"]),
    since=bounds,
    until=bounds,
)


def insert_rows(db: Database, specs: list[dict[str, Any]]) -> None:
    with db.conn:
        for i, spec in enumerate(specs):
            spec = dict(spec)
            created_at = stamp(spec.pop("at"))
            requestlog.insert(
                db.conn, RequestRow(id=f"req_{i}", created_at=created_at, endpoint="chat", **spec)
            )


@settings(max_examples=80, deadline=None)
@given(
    specs=st.lists(rows, min_size=4, max_size=40),
    edits=st.lists(st.tuples(st.sampled_from(["replace", "delete", "update"]), rows), max_size=8),
    queries=st.lists(
        st.tuples(filters, st.sampled_from([None, "day", "model", "project", "key"])),
        min_size=1,
        max_size=6,
    ),
    limit=st.integers(1, 30),
)
def test_reports_equal_the_raw_aggregate(specs, edits, queries, limit):
    db = memory_db()
    insert_rows(db, specs)
    with db.conn:  # replaced, deleted and updated rows must not linger in the rollup
        for n, (op, spec) in enumerate(edits):
            target = f"req_{n % max(len(specs), 1)}"
            spec = dict(spec)
            created_at = stamp(spec.pop("at"))
            if op == "replace":
                requestlog.insert(
                    db.conn, RequestRow(id=target, created_at=created_at, endpoint="chat", **spec)
                )
            elif op == "delete":
                db.conn.execute("DELETE FROM requests WHERE id = ?", [target])
            else:
                db.conn.execute(
                    "UPDATE requests SET created_at = ?, model = ?, status = ?, credits_micro = ?"
                    " WHERE id = ?",
                    [created_at, spec["model"], spec["status"], spec["credits_micro"], target],
                )
    assert requestlog.check_rollup(db) == {"ok": True, "mismatched_cells": []}
    for f, by in queries:
        assert requestlog.usage(db, f, by) == raw_usage(db, f, by)
        listed = [row["id"] for row in requestlog.list_requests(db, f, limit)]
        assert listed == raw_list(db, f, limit)
    # a key's last use (`keys list`) is found through the rollup's newest hour for it
    for key_id in ("key_a", "key_b"):
        db.execute(
            "INSERT INTO api_keys (id, project_id, kind, prefix, hash, created_at)"
            " VALUES (?, 1, 'live', ?, ?, '2026-01-01')",
            [key_id, key_id, key_id],
        )
    raw = "SELECT MAX(created_at) FROM requests WHERE key_id = ?"
    assert {k["id"]: k["last_used_at"] for k in keys.list_keys(db)} == {
        key_id: db.execute(raw, [key_id]).fetchone()[0] for key_id in ("key_a", "key_b")
    }


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(rows, min_size=1, max_size=40))
def test_rollup_has_one_cell_per_hour_project_key_model_status(specs):
    db = memory_db()
    insert_rows(db, specs)
    expected = db.execute(
        "SELECT substr(created_at, 1, 13), project_id, key_id, model, status, COUNT(*),"
        " SUM(prompt_tokens), SUM(credits_micro) FROM requests GROUP BY 1, 2, 3, 4, 5"
        " ORDER BY 1, 2, 3, 4, 5"
    ).fetchall()
    assert rollup_cells(db) == expected


# -- upkeep: replacement, deletion, check and rebuild ---------------------------------------

ROW = dict(
    project_id=1, key_id="key_a", model="stub/fast", status="ok", prompt_tokens=100,
    completion_tokens=20, cached_tokens=0, reasoning_tokens=0, images=0, base_micro=1000,
    credits_micro=1600,
)  # fmt: skip


@pytest.mark.parametrize("recursive_triggers", ["on", "off"])
def test_a_replaced_row_is_counted_once_in_its_new_cell(recursive_triggers):
    db = memory_db()
    db.execute(f"PRAGMA recursive_triggers = {recursive_triggers}")
    first = RequestRow(
        id="req_1", created_at="2026-11-30T10:59:59.999Z", endpoint="chat", model="stub/fast",
        prompt_tokens=10, credits_micro=100,
    )  # fmt: skip
    with db.conn:
        requestlog.insert(db.conn, first)
        requestlog.insert(db.conn, first)  # a retried write of the same row
    assert rollup_cells(db) == [("2026-11-30T10", None, None, "stub/fast", "ok", 1, 10, 100)]
    moved = RequestRow(
        id="req_1", created_at="2026-11-30T11:00:00.000Z", endpoint="chat", model="openai/gpt-4o",
        status="error", prompt_tokens=7, credits_micro=0,
    )  # fmt: skip
    with db.conn:
        requestlog.insert(db.conn, moved)
    assert db.execute("SELECT COUNT(*) FROM requests").fetchone()[0] == 1
    assert rollup_cells(db) == [("2026-11-30T11", None, None, "openai/gpt-4o", "error", 1, 7, 0)]
    with db.conn:
        db.execute("DELETE FROM requests")
    assert rollup_cells(db) == []


def test_check_rollup_names_the_cells_that_disagree_and_rebuild_repairs_them():
    db = memory_db()
    insert_rows(db, [{**ROW, "at": 10.0}, {**ROW, "at": 7200.0, "model": "openai/gpt-4o"}])
    assert requestlog.check_rollup(db)["ok"]
    with db.conn:
        db.execute("UPDATE usage_rollup SET credits_micro = credits_micro + 1 WHERE model = ?",
                   ["openai/gpt-4o"])  # fmt: skip
    result = requestlog.check_rollup(db)
    assert not result["ok"]
    [cell] = result["mismatched_cells"]
    assert cell["hour"] == "2026-11-30T00" and cell["model"] == "openai/gpt-4o"
    assert cell["credits_micro"] == 1 and cell["requests"] == 0
    assert requestlog.rebuild_rollup(db) == 2
    assert requestlog.check_rollup(db)["ok"]


# -- the migration backfills rows written before it ----------------------------------------


def test_migration_backfills_the_rollup_from_existing_rows(tmp_path):
    path = tmp_path / "old.db"
    old = Database(sqlite3.connect(path))
    MIGRATIONS.apply(old, stop_before="m002_usage_rollup")
    assert "usage_rollup" not in old.table_names()
    old.execute("INSERT INTO projects (id, name, created_at) VALUES (1, 'alpha', '2026-01-01')")
    specs = [
        {**ROW, "at": 0.0},
        {**ROW, "at": 1.5, "prompt_tokens": 7},
        {**ROW, "at": 3599.999, "status": "error", "credits_micro": 0},
        {**ROW, "at": 3600.0, "key_id": None, "project_id": None, "model": None},
        {**ROW, "at": 86400.0, "model": "openai/gpt-4o", "images": 2},
    ]
    with old.conn:
        for i, spec in enumerate(specs):  # the m001 writer: INSERT OR REPLACE, no rollup
            spec = dict(spec)
            values = {"id": f"req_{i}", "created_at": stamp(spec.pop("at")), **spec}
            old.execute(
                f"INSERT OR REPLACE INTO requests (endpoint, http_status, {', '.join(values)})"
                f" VALUES ('chat', 200, {', '.join('?' * len(values))})",
                list(values.values()),
            )
    old.close()

    db = open_db(path)  # what the first `layers` command after the upgrade does
    assert "m002_usage_rollup" in [m.name for m in MIGRATIONS.applied(db)]
    assert rollup_cells(db) == [
        ("2026-11-29T22", 1, "key_a", "stub/fast", "error", 1, 100, 0),
        ("2026-11-29T22", 1, "key_a", "stub/fast", "ok", 2, 107, 3200),
        ("2026-11-29T23", None, None, None, "ok", 1, 100, 1600),
        ("2026-11-30T22", 1, "key_a", "openai/gpt-4o", "ok", 1, 100, 1600),
    ]
    assert requestlog.check_rollup(db)["ok"]
    for by in (None, "day", "model", "project", "key"):
        for f in (
            Filters(),
            Filters(since=stamp(1.0)),
            Filters(until=stamp(3600.0), key_id="key_a"),
        ):
            assert requestlog.usage(db, f, by) == raw_usage(db, f, by)
    # and the triggers take over from there
    insert_rows(db, [{**ROW, "at": 2.0}])
    assert requestlog.check_rollup(db)["ok"]
    db.close()


# -- through the CLI and over HTTP ----------------------------------------------------------


def _ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@pytest.fixture
def ledger_rows():
    """Rows on both sides of `--since 2h` and of several hour and day boundaries."""
    svc = Layers(load_settings())
    svc.create_project("playground")
    svc.create_project("agents")
    k1, _ = svc.create_key("playground", label="web")
    k2, _ = svc.create_key("agents", label="bot")
    specs = [
        ("req_now", _ago(minutes=1), k1, "anthropic/claude-sonnet-4.5", "ok", 1000, 3_000),
        ("req_1h", _ago(minutes=61), k2, "openai/gpt-4o", "ok", 400, 1_200),
        ("req_in", _ago(minutes=118), k1, "openai/gpt-4o", "error", 0, 0),
        ("req_out", _ago(minutes=122), k1, "openai/gpt-4o", "ok", 50, 160),
        ("req_day", _ago(hours=30), k2, "anthropic/claude-sonnet-4.5", "ok", 20, 64),
        ("req_old", _ago(days=40), k1, "openai/gpt-4o", "ok", 5, 16),
    ]
    with svc.db.conn:
        for rid, at, key, model, status, tokens, micro in specs:
            requestlog.insert(
                svc.db.conn,
                RequestRow(
                    id=rid, created_at=at, endpoint="chat.completions", key_id=key["id"],
                    project_id=key["project_id"], model=model, status=status,
                    http_status=200 if status == "ok" else 502, prompt_tokens=tokens,
                    completion_tokens=tokens // 2, base_micro=micro // 2, credits_micro=micro,
                ),
            )  # fmt: skip
    yield svc
    svc.close()


def _usage_json(*args: str) -> dict[str, Any]:
    result = run("usage", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--since", "2h"],
        ["--since", "2h", "--by", "model"],
        ["--since", "7d", "--by", "day"],
        ["--by", "project"],
        ["--by", "key", "--model", "openai/gpt-4o"],
        ["--project", "agents", "--by", "model", "--since", "2d"],
    ],
)
def test_cli_usage_equals_the_raw_aggregate(ledger_rows, args):
    data = _usage_json(*args)
    opts = dict(zip(args[::2], args[1::2], strict=True))
    by = opts.pop("--by", None)
    f = ledger_rows.filters(**{k.lstrip("-"): v for k, v in opts.items()})
    raw = raw_usage(ledger_rows.db, f, by)
    for field in ("requests", "succeeded", "prompt_tokens", "credits_micro", "base_micro"):
        assert data["total"][field] == raw["total"][field]
    assert [(g["group"], g["requests"], g["credits_micro"]) for g in data["groups"]] == [
        (g["grp"], g["requests"], g["credits_micro"]) for g in raw["groups"]
    ]


def test_cli_usage_since_two_hours_cuts_inside_an_hour(ledger_rows):
    data = _usage_json("--since", "2h", "--by", "model")
    assert data["total"]["requests"] == 3 and data["total"]["succeeded"] == 2
    assert data["total"]["credits_micro"] == 4_200
    assert [(g["group"], g["requests"]) for g in data["groups"]] == [
        ("anthropic/claude-sonnet-4.5", 1),
        ("openai/gpt-4o", 2),
    ]
    table = run("usage", "--since", "2h")
    assert table.exit_code == 0 and "total" in table.stdout and "1,400" in table.stdout
    csv_out = run("usage", "--csv", "--by", "day").stdout.splitlines()
    assert csv_out[0].startswith("day,requests,") and csv_out[-1].startswith("total,6,5,")


def test_cli_requests_list_filters_newest_first(ledger_rows):
    def ids(*args: str) -> list[str]:
        result = run("requests", "list", "--json", *args)
        assert result.exit_code == 0, result.output
        return [r["id"] for r in json.loads(result.stdout)]

    assert ids() == ["req_now", "req_1h", "req_in", "req_out", "req_day", "req_old"]
    assert ids("--limit", "2") == ["req_now", "req_1h"]
    assert ids("--status", "error") == ["req_in"]
    assert ids("--status", "nosuch") == []
    assert ids("--model", "openai/gpt-4o", "--limit", "3") == ["req_1h", "req_in", "req_out"]
    assert ids("--project", "agents") == ["req_1h", "req_day"]
    assert ids("--project", "playground", "--model", "anthropic/claude-sonnet-4.5") == ["req_now"]


def test_get_v1_usage_over_http_equals_the_raw_aggregate(tmp_path):
    with running_gateway(tmp_path / "home") as gw:
        client = gw.client()
        for model in ("openai/gpt-4o-mini", "openai/gpt-4o-mini", "anthropic/claude-sonnet-4.5"):
            client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=8
            )
        with pytest.raises(Exception):  # noqa: B017 - a failed request is counted too
            client.chat.completions.create(model="nosuch/model", messages=[])
        headers = {"Authorization": f"Bearer {gw.secret}"}
        svc = gw.service()
        try:
            assert requestlog.check_rollup(svc.db)["ok"]
            for query, by in (("", None), ("?by=model", "model"), ("?since=1h&by=key", "key")):
                body = httpx.get(f"{gw.base_url}/usage{query}", headers=headers).json()
                f = svc.filters(since="1h" if "since" in query else None)
                raw = raw_usage(svc.db, f, by)
                assert body["object"] == "usage" and body["by"] == by
                assert body["total"]["requests"] == raw["total"]["requests"] == 4
                assert body["total"]["succeeded"] == raw["total"]["succeeded"] == 3
                assert body["total"]["prompt_tokens"] == raw["total"]["prompt_tokens"]
                assert body["total"]["credits"] == raw["total"]["credits_micro"] / 10**6
                assert [(g["group"], g["requests"]) for g in body["groups"]] == [
                    (g["grp"], g["requests"]) for g in raw["groups"]
                ]
        finally:
            svc.close()
