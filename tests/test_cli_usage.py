"""`layers usage` and `layers requests list|show` over a seeded request table."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from layers_cli import requestlog
from layers_cli.requestlog import RequestRow
from layers_cli.service import Layers
from layers_cli.settings import load_settings
from tests.support.cli import run

SONNET = "anthropic/claude-sonnet-4.5"
GPT = "openai/gpt-4o"
TOTAL_KEYS = [
    "requests", "succeeded", "prompt_tokens", "completion_tokens", "cached_tokens",
    "reasoning_tokens", "images", "base_micro", "base_usd", "credits_micro", "credits",
    "cost_usd",
]  # fmt: skip


def _ago(days: int) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@pytest.fixture
def seeded():
    """Two projects, two keys, four requests (one failed, one 10 days old)."""
    svc = Layers(load_settings())
    svc.create_project("playground")
    svc.create_project("agents")
    k1, _ = svc.create_key("playground", label="web")
    k2, _ = svc.create_key("agents", label="bot")
    rows = [
        RequestRow(
            id="req_sonnet", created_at=_ago(0), endpoint="chat.completions", key_id=k1["id"],
            project_id=k1["project_id"], model=SONNET, provider="anthropic", simulated=True,
            prompt_tokens=2000, completion_tokens=1000, base_micro=2_100_000,
            credits_micro=3_360_000, markup="0.6", latency_ms=420, ttft_ms=120,
            finish_reason="stop", metadata={"pattern": "chat/basic"},
        ),
        RequestRow(
            id="req_gpt", created_at=_ago(1), endpoint="chat.completions", key_id=k2["id"],
            project_id=k2["project_id"], model=GPT, provider="openai", prompt_tokens=1000,
            completion_tokens=500, cached_tokens=200, reasoning_tokens=0, base_micro=700_000,
            credits_micro=1_120_000, markup="0.6", latency_ms=300,
        ),
        RequestRow(
            id="req_failed", created_at=_ago(1), endpoint="chat.completions", key_id=k1["id"],
            project_id=k1["project_id"], model=GPT, provider="openai", status="error",
            http_status=502, error_code="provider_server_error", error="upstream said 500",
        ),
        RequestRow(
            id="req_old", created_at=_ago(10), endpoint="chat.completions", key_id=k1["id"],
            project_id=k1["project_id"], model=SONNET, provider="anthropic", prompt_tokens=100,
            completion_tokens=10, reasoning_tokens=5, base_micro=45_000, credits_micro=72_000,
            markup="0.6",
        ),
    ]  # fmt: skip
    with svc.db.conn:
        for row in rows:
            requestlog.insert(svc.db.conn, row)
    yield {"svc": svc, "keys": (k1, k2)}
    svc.close()


def _usage(*args: str) -> dict:
    result = run("usage", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_usage_totals(seeded):
    data = _usage()
    assert list(data) == ["by", "filters", "total", "groups"]
    total = data["total"]
    assert list(total) == TOTAL_KEYS
    assert total["requests"] == 4 and total["succeeded"] == 3
    assert total["prompt_tokens"] == 3100 and total["completion_tokens"] == 1510
    assert total["cached_tokens"] == 200 and total["reasoning_tokens"] == 5
    assert total["credits_micro"] == 4_552_000
    assert total["credits"] == 4.552
    assert total["cost_usd"] == pytest.approx(0.04552)

    table = run("usage")
    assert table.exit_code == 0
    for text in ("3,100", "1,510", "200", "4.552", "total"):
        assert text in table.stdout


def test_usage_grouped_by_model_project_key_and_day(seeded):
    by_model = {g["group"]: g for g in _usage("--by", "model")["groups"]}
    assert by_model[SONNET]["requests"] == 2 and by_model[SONNET]["credits_micro"] == 3_432_000
    assert by_model[GPT]["requests"] == 2
    by_project = {g["group"]: g["requests"] for g in _usage("--by", "project")["groups"]}
    assert by_project == {"playground": 3, "agents": 1}
    k1, k2 = seeded["keys"]
    by_key = {g["group"]: g["requests"] for g in _usage("--by", "key")["groups"]}
    assert by_key == {k1["id"]: 3, k2["id"]: 1}
    days = [g["group"] for g in _usage("--by", "day")["groups"]]
    assert days == sorted(days) and len(days) in (2, 3)
    assert "playground" in run("usage", "--by", "project").stdout


def test_usage_filters(seeded):
    assert _usage("--project", "agents")["total"]["requests"] == 1
    assert _usage("--model", SONNET)["total"]["requests"] == 2
    k1, _ = seeded["keys"]
    assert _usage("--key", k1["id"])["total"]["requests"] == 3
    assert _usage("--key", k1["prefix"])["total"]["requests"] == 3
    assert _usage("--since", "7d")["total"]["requests"] == 3
    since = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()
    assert _usage("--since", since)["total"]["requests"] == 3


def test_usage_csv(seeded):
    result = run("usage", "--by", "model", "--csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == [
        "model", "requests", "succeeded", "prompt_tokens", "completion_tokens", "cached_tokens",
        "reasoning_tokens", "images", "base_usd", "cost_usd", "credits",
    ]  # fmt: skip
    assert rows[-1]["model"] == "total" and rows[-1]["credits"] == "4.552"
    assert {r["model"] for r in rows[:-1]} == {SONNET, GPT}


def test_usage_bad_input(seeded):
    result = run("usage", "--project", "nope")
    assert result.exit_code == 4
    assert "Existing projects: agents, playground" in result.stderr
    result = run("usage", "--since", "last tuesday")
    assert result.exit_code == 2
    assert "--since 'last tuesday'" in result.stderr
    result = run("usage", "--model", "gpt-99")
    assert result.exit_code == 4 and "does not exist" in result.stderr
    assert run("usage", "--by", "week").exit_code == 2
    both = run("usage", "--json", "--csv")
    assert both.exit_code == 2 and "--json" in both.output


def test_usage_on_an_empty_home():
    data = _usage()
    assert data["total"]["requests"] == 0 and data["groups"] == []
    result = run("usage")
    assert result.exit_code == 0
    assert "No requests match" in result.stderr


def test_requests_list_and_filters(seeded):
    result = run("requests", "list")
    assert result.exit_code == 0, result.output
    assert result.stdout.index("req_sonnet") < result.stdout.index("req_old")
    assert "simulated" in result.stdout
    data = json.loads(run("requests", "list", "--json").stdout)
    assert [r["id"] for r in data][0] == "req_sonnet" and len(data) == 4
    assert {"id", "status", "model", "project", "credits_micro", "credits"} <= set(data[0])
    failed = json.loads(run("requests", "list", "--status", "error", "--json").stdout)
    assert [r["id"] for r in failed] == ["req_failed"]
    by_project = json.loads(run("requests", "list", "--project", "agents", "--json").stdout)
    assert [r["id"] for r in by_project] == ["req_gpt"]
    assert len(json.loads(run("requests", "list", "--limit", "2", "--json").stdout)) == 2
    assert run("requests", "list", "--limit", "0").exit_code == 2


def test_requests_show_explains_the_charge(seeded):
    result = run("requests", "show", "req_sonnet")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for text in (
        "2,000 tokens × $3.00 / 1M tokens", "$0.006", "1,000 tokens × $15.00 / 1M tokens",
        "$0.015", "$0.021", "× (1 + 60%)", "3.36 credits", "anthropic (simulated)", "420 ms",
        "pattern=chat/basic",
    ):  # fmt: skip
        assert text in out, text
    data = json.loads(run("requests", "show", "req_sonnet", "--json").stdout)
    assert data["request"]["id"] == "req_sonnet"
    assert data["request"]["credits_micro"] == data["charge"]["micro"] == 3_360_000


def test_requests_show_failed_request_and_unknown_id(seeded):
    result = run("requests", "show", "req_failed")
    assert result.exit_code == 0, result.output
    assert "upstream said 500" in result.stdout and "HTTP 502" in result.stdout
    assert "Nothing was charged" in result.stdout
    missing = run("requests", "show", "req_nope")
    assert missing.exit_code == 4
    assert "No request 'req_nope'" in missing.stderr and "layers requests list" in missing.stderr
