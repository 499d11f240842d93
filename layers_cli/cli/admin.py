"""`layers info`, `layers account` and `layers ledger recover|verify`."""

from __future__ import annotations

from typing import Any

import typer

from ..pricing import format_credits, format_usd, micro_to_credits, micro_to_usd
from . import render
from .keys import key_json, key_rows
from .projects import project_json, project_rows

JSON = typer.Option(False, "--json", help="Print JSON (stable keys) instead of a table.")

ledger_app = typer.Typer(help="Check and repair the credit ledger.", no_args_is_help=True)


def balance_json(b: dict[str, Any]) -> dict[str, Any]:
    """The balance fields every command shows the same way."""
    return {
        "balance_micro": b["balance_micro"],
        "balance_credits": micro_to_credits(b["balance_micro"]),
        "balance_usd": micro_to_usd(b["balance_micro"]),
        "held_micro": b["held_micro"],
        "held_credits": micro_to_credits(b["held_micro"]),
        "open_holds": b["open_holds"],
        "entries_micro": b["entries_micro"],
        "used_micro": b["used_micro"],
        "used_credits": micro_to_credits(b["used_micro"]),
    }


def balance_fields(b: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        (
            "Balance",
            f"{format_credits(b['balance_micro'])} credits ({format_usd(b['balance_micro'])})",
        ),
        ("Held", f"{format_credits(b['held_micro'])} credits in {b['open_holds']} open hold(s)"),
        ("Used", f"{format_credits(b['used_micro'])} credits"),
    ]


def info(ctx: typer.Context, json: bool = JSON) -> None:
    """Show the data home: paths, schema version and counts."""
    data = ctx.obj.service.info()
    if json:
        render.json_out(data)
        return
    config = data["config"] + ("" if data["config_exists"] else "  (not present; optional)")
    counts = data["counts"]
    render.fields(
        [
            ("Version", data["version"]),
            ("Home", data["home"]),
            ("Database", data["database"]),
            ("Config", config),
            ("Schema version", data["schema_version"]),
            ("Projects", counts["projects"]),
            ("API keys", counts["api_keys"]),
            ("Ledger entries", counts["ledger_entries"]),
            ("Holds", counts["holds"]),
            ("Requests", counts["requests"]),
        ]
    )


def account(ctx: typer.Context, json: bool = JSON) -> None:
    """Show the account: balance in credits and USD, open holds, projects and keys."""
    data = ctx.obj.service.account()
    if json:
        render.json_out(
            {
                **balance_json(data),
                "projects": [project_json(p) for p in data["projects"]],
                "keys": [key_json(k) for k in data["keys"]],
            }
        )
        return
    render.fields(balance_fields(data), title="Account")
    render.line()
    render.table(*project_rows(data["projects"]), title="Projects", empty="No projects yet.")
    render.line()
    render.table(*key_rows(data["keys"]), title="Keys", empty="No keys yet.")


@ledger_app.command()
def recover(
    ctx: typer.Context,
    all_: bool = typer.Option(
        False, "--all", help="Release every open hold, also those of live processes."
    ),
    json: bool = JSON,
) -> None:
    """Release holds left open by a crashed process (credits go back to the balance)."""
    released = ctx.obj.service.recover_holds(all_processes=all_)
    if json:
        render.json_out(
            {
                "released": [
                    {"request_id": h.request_id, "amount_micro": h.amount} for h in released
                ],
                "released_micro": sum(h.amount for h in released),
            }
        )
        return
    if not released:
        render.line("No stale holds: nothing to release.")
        return
    total = sum(h.amount for h in released)
    render.table(
        ["Request", "Credits"],
        [[h.request_id, format_credits(h.amount)] for h in released],
        right=["Credits"],
    )
    render.line(f"Released {len(released)} hold(s): {format_credits(total)} credits.")


@ledger_app.command()
def verify(
    ctx: typer.Context,
    rebuild_usage: bool = typer.Option(
        False, "--rebuild-usage", help="First recompute the usage totals from the request rows."
    ),
    json: bool = JSON,
) -> None:
    """Recompute the balance from every ledger row, and usage from every request row."""
    result = ctx.obj.service.verify_ledger(rebuild_usage=rebuild_usage)
    if json:
        render.json_out(result)
    elif result["ok"]:
        render.line(
            f"Ledger OK: entries {format_credits(result['entries_micro'])} credits, "
            f"open holds {format_credits(result['held_micro'])} credits; usage totals match "
            "the request rows."
        )
    if not result["totals_ok"]:
        render.error(
            "The ledger's running totals disagree with its rows: entries "
            f"{result['entries_micro']} vs {result['cached_entries_micro']} µcredits, holds "
            f"{result['held_micro']} vs {result['cached_held_micro']} µcredits.",
            hint="Stop `layers serve`, back up layers.db and report this; do not top up meanwhile.",
        )
        raise typer.Exit(1)
    if not result["usage_rollup"]["ok"]:
        cells = result["usage_rollup"]["mismatched_cells"]
        render.error(
            f"The usage totals disagree with the request rows in {len(cells)} hour(s) "
            f"(first: {cells[0]['hour']}). Credits are not affected.",
            hint="Run `layers ledger verify --rebuild-usage` to recompute them.",
        )
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(info)
    app.command()(account)
