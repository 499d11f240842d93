"""`layers usage` and `layers requests list|show`: what was used, and why it cost that.

Amounts are integer micro-credits from the request log: credits = micro / 10⁶ and the USD the
user paid = micro / 10⁸ (1 credit = $0.01). ``base`` is the provider's list price, before markup.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Any

import typer

from ..pricing import MICRO_PER_CREDIT, MICRO_PER_USD, format_credits, format_usd, micro_to_credits
from . import render
from .models import charge_json, charge_rows

JSON = typer.Option(False, "--json", help="Print JSON (stable keys) instead of a table.")

requests_app = typer.Typer(
    help="The request log: every call the gateway saw.", no_args_is_help=True
)


class By(StrEnum):
    day = "day"
    model = "model"
    project = "project"
    key = "key"


def _exact(micro: int, per: int) -> str:
    return f"{(Decimal(micro) / per).normalize():f}"


def totals_json(t: dict[str, Any]) -> dict[str, Any]:
    """One usage aggregate with stable keys (micro-credits exact, credits/USD as numbers)."""
    return {
        "requests": t["requests"],
        "succeeded": t["succeeded"] or 0,
        "prompt_tokens": t["prompt_tokens"],
        "completion_tokens": t["completion_tokens"],
        "cached_tokens": t["cached_tokens"],
        "reasoning_tokens": t["reasoning_tokens"],
        "images": t["images"],
        "base_micro": t["base_micro"],
        "base_usd": t["base_micro"] / MICRO_PER_USD,
        "credits_micro": t["credits_micro"],
        "credits": micro_to_credits(t["credits_micro"]),
        "cost_usd": t["credits_micro"] / MICRO_PER_USD,
    }


def usage_fields(t: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        ("Requests", f"{t['requests']:,} ({t['succeeded'] or 0:,} succeeded)"),
        (
            "Tokens",
            f"{t['prompt_tokens']:,} in ({t['cached_tokens']:,} cached), "
            f"{t['completion_tokens']:,} out ({t['reasoning_tokens']:,} reasoning)",
        ),
        ("Images", f"{t['images']:,}"),
        (
            "Cost",
            f"{format_credits(t['credits_micro'])} credits ({format_usd(t['credits_micro'])})",
        ),
        ("Provider list price", format_usd(t["base_micro"])),
    ]


CSV_FIELDS = [
    "requests", "succeeded", "prompt_tokens", "completion_tokens", "cached_tokens",
    "reasoning_tokens", "images", "base_usd", "cost_usd", "credits",
]  # fmt: skip


def _csv_row(label: str, t: dict[str, Any]) -> list[Any]:
    return [
        label, t["requests"], t["succeeded"] or 0, t["prompt_tokens"], t["completion_tokens"],
        t["cached_tokens"], t["reasoning_tokens"], t["images"],
        _exact(t["base_micro"], MICRO_PER_USD), _exact(t["credits_micro"], MICRO_PER_USD),
        _exact(t["credits_micro"], MICRO_PER_CREDIT),
    ]  # fmt: skip


def _table_row(label: Any, t: dict[str, Any]) -> list[Any]:
    return [
        label,
        render.integer(t["requests"]),
        render.integer(t["prompt_tokens"]),
        render.integer(t["completion_tokens"]),
        render.integer(t["cached_tokens"]),
        render.integer(t["reasoning_tokens"]),
        format_usd(t["base_micro"]),
        format_usd(t["credits_micro"]),
        format_credits(t["credits_micro"]),
    ]


def usage(
    ctx: typer.Context,
    project: str | None = typer.Option(None, "--project", "-p", help="Only this project."),
    key: str | None = typer.Option(None, "--key", "-k", help="Only this key (id or prefix)."),
    model: str | None = typer.Option(None, "--model", "-m", help="Only this model id."),
    since: str | None = typer.Option(None, "--since", help="7d, 24h, 2w or a date (2026-11-01)."),
    by: By | None = typer.Option(None, "--by", help="Group rows by day, model, project or key."),
    json: bool = JSON,
    csv: bool = typer.Option(False, "--csv", help="Print CSV (one row per group, then total)."),
) -> None:
    """Requests, tokens (in, out, cached, reasoning), USD cost and credits."""
    if json and csv:
        raise typer.BadParameter("choose one of --json and --csv", param_hint="--json/--csv")
    report = ctx.obj.service.usage(
        by=by.value if by else None, project=project, key=key, model=model, since=since
    )
    total, groups, by_name = report["total"], report["groups"], report["by"]
    if json:
        render.json_out(
            {
                "by": by_name,
                "filters": {"project": project, "key": key, "model": model, "since": since},
                "total": totals_json(total),
                "groups": [{"group": g["grp"], **totals_json(g)} for g in groups],
            }
        )
        return
    if csv:
        render.csv_out(
            [by_name or "group", *CSV_FIELDS],
            [*(_csv_row(str(g["grp"]), g) for g in groups), _csv_row("total", total)],
        )
        return
    if not total["requests"]:
        render.note("No requests match. Usage appears here once the gateway has served some.")
    columns = [(by_name or "").capitalize() or "", "Requests", "In", "Out", "Cached",
               "Reasoning", "Base $", "Cost $", "Credits"]  # fmt: skip
    rows = [_table_row(g["grp"], g) for g in groups]
    rows.append(_table_row(render.styled("total", "bold"), total))
    render.table(columns, rows, right=columns[1:])


# -- requests ---------------------------------------------------------------------------------


def request_json(r: dict[str, Any]) -> dict[str, Any]:
    keys = [
        "id", "created_at", "endpoint", "status", "http_status", "model", "provider",
        "upstream_model", "key_id", "project_name", "simulated", "streamed", "finish_reason",
        "prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens",
        "reasoning_tokens", "images", "estimated", "base_micro", "credits_micro", "markup",
        "latency_ms", "ttft_ms", "metadata", "error_code", "error",
    ]  # fmt: skip
    data = {k: r.get(k) for k in keys}
    data["project"] = data.pop("project_name")
    data["credits"] = micro_to_credits(r["credits_micro"])
    data["cost_usd"] = r["credits_micro"] / MICRO_PER_USD
    return data


_STATUS_STYLE = {"ok": "green"}


@requests_app.command("list")
def list_(
    ctx: typer.Context,
    project: str | None = typer.Option(None, "--project", "-p", help="Only this project."),
    model: str | None = typer.Option(None, "--model", "-m", help="Only this model id."),
    status: str | None = typer.Option(None, "--status", help="Only this status (ok, error, …)."),
    limit: int = typer.Option(50, "--limit", "-n", help="At most N requests, newest first."),
    json: bool = JSON,
) -> None:
    """List recent requests, newest first."""
    rows = ctx.obj.service.list_requests(limit=limit, project=project, model=model, status=status)
    if json:
        render.json_out([request_json(r) for r in rows])
        return
    render.table(
        ["ID", "When", "Project", "Model", "Status", "In", "Out", "Credits", "ms", ""],
        [
            [
                r["id"],
                r["created_at"][:19].replace("T", " "),
                r.get("project_name"),
                r["model"],
                render.styled(r["status"], _STATUS_STYLE.get(r["status"], "red")),
                render.integer(r["prompt_tokens"]),
                render.integer(r["completion_tokens"]),
                format_credits(r["credits_micro"]),
                render.integer(r["latency_ms"]),
                "simulated" if r["simulated"] else "",
            ]
            for r in rows
        ],
        right=["In", "Out", "Credits", "ms"],
        empty="No requests match. Requests appear here once `layers serve` has handled some.",
    )


@requests_app.command()
def show(
    ctx: typer.Context, request_id: str = typer.Argument(..., metavar="ID"), json: bool = JSON
) -> None:
    """Show one request and explain its charge: tokens × prices × markup = credits."""
    result = ctx.obj.service.explain_request(request_id)
    r, c = result["request"], result["charge"]
    if json:
        render.json_out({"request": request_json(r), "charge": charge_json(c) if c else None})
        return
    tokens = (
        f"{r['prompt_tokens']:,} prompt ({r['cached_tokens']:,} cached, "
        f"{r['cache_write_tokens']:,} cache write), {r['completion_tokens']:,} completion "
        f"({r['reasoning_tokens']:,} reasoning)"
    )
    pairs: list[tuple[str, Any]] = [
        ("ID", r["id"]),
        ("When", r["created_at"]),
        ("Endpoint", r["endpoint"]),
        ("Status", f"{r['status']} (HTTP {r['http_status']})"),
        ("Model", r["model"]),
        ("Provider", f"{r['provider'] or ''}{' (simulated)' if r['simulated'] else ''}"),
        ("Project", r.get("project_name")),
        ("Key", f"{r['key_id']} ({r.get('key_prefix')})" if r["key_id"] else None),
        ("Tokens", tokens + (" [estimated]" if r["estimated"] else "")),
        ("Images", r["images"] or None),
        ("Latency", f"{r['latency_ms']:,} ms" if r["latency_ms"] is not None else None),
        ("Time to first token", f"{r['ttft_ms']:,} ms" if r["ttft_ms"] is not None else None),
        ("Streamed", "yes" if r["streamed"] else "no"),
        ("Finish reason", r["finish_reason"]),
        ("Charged", f"{format_credits(r['credits_micro'])} credits"),
    ]
    if r["error"]:
        pairs.append(("Error", f"{r['error_code'] or ''}: {r['error']}"))
    if r.get("metadata"):
        pairs.append(("Metadata", ", ".join(f"{k}={v}" for k, v in r["metadata"].items())))
    render.fields(pairs, title=f"Request {r['id']}")
    render.line()
    if c is None:
        render.note("No charge to explain: the model is not in the catalog any more.")
        return
    if r["status"] != "ok" and not r["credits_micro"]:
        render.line("Nothing was charged: the request failed before any output was billed.")
        return
    render.table(
        ["", "", "USD"], charge_rows(c), title="How the charge was computed", right=["USD"]
    )
    if c.micro != r["credits_micro"]:
        render.note(
            f"Recorded charge {format_credits(r['credits_micro'])} credits differs from this "
            f"recomputation ({format_credits(c.micro)}): prices or markup changed since."
        )


def register(app: typer.Typer) -> None:
    app.command()(usage)
