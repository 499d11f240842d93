"""`layers credits`: top up, balance and history. 1 credit = $0.01."""

from __future__ import annotations

from typing import Any

import typer

from ..pricing import format_credits, format_usd, micro_to_credits
from . import render
from .admin import balance_fields, balance_json

JSON = typer.Option(False, "--json", help="Print JSON (stable keys) instead of a table.")

app = typer.Typer(
    help="Prepaid credits shared by every key of the account (1 credit = $0.01).",
    no_args_is_help=True,
)


def _signed(micro: int) -> str:
    return ("+" if micro > 0 else "") + format_credits(micro)


def entry_json(e: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": e["id"],
        "created_at": e["created_at"],
        "kind": e["kind"],
        "amount_micro": e["amount_micro"],
        "amount_credits": micro_to_credits(e["amount_micro"]),
        "balance_micro": e["balance_micro"],
        "balance_credits": micro_to_credits(e["balance_micro"]),
        "request_id": e["request_id"],
        "key_id": e["key_id"],
        "project_id": e["project_id"],
        "note": e["note"],
    }


# `layers credits topup -5` reaches the amount check instead of failing as an unknown option.
@app.command(context_settings={"ignore_unknown_options": True})
def topup(
    ctx: typer.Context,
    amount: str = typer.Argument(..., metavar="AMOUNT", help="Credits (`500`) or dollars (`$5`)."),
    note: str = typer.Option("", "--note", help="Why (kept in the ledger)."),
    json: bool = JSON,
) -> None:
    """Add credits to the account."""
    result = ctx.obj.service.topup(amount, note)
    if json:
        render.json_out(
            {
                "added_micro": result["added_micro"],
                "added_credits": micro_to_credits(result["added_micro"]),
                **balance_json(result),
            }
        )
        return
    added = result["added_micro"]
    render.line(
        f"Added {format_credits(added)} credits ({format_usd(added)}). "
        f"Balance: {format_credits(result['balance_micro'])} credits "
        f"({format_usd(result['balance_micro'])})."
    )


@app.command()
def balance(ctx: typer.Context, json: bool = JSON) -> None:
    """Show the balance available to requests (entries minus open holds)."""
    b = ctx.obj.service.balance()
    if json:
        render.json_out(balance_json(b))
        return
    render.fields(balance_fields(b))


@app.command()
def history(
    ctx: typer.Context,
    limit: int | None = typer.Option(None, "--limit", "-n", help="Only the newest N entries."),
    json: bool = JSON,
) -> None:
    """List every ledger entry, newest first, with the balance after it."""
    entries = ctx.obj.service.history(limit)
    if json:
        render.json_out([entry_json(e) for e in entries])
        return
    render.table(
        ["#", "When", "Kind", "Credits", "Balance", "Request", "Note"],
        [
            [
                e["id"],
                e["created_at"][:19].replace("T", " "),
                e["kind"],
                render.styled(
                    _signed(e["amount_micro"]), "red" if e["amount_micro"] < 0 else "green"
                ),
                format_credits(e["balance_micro"]),
                e["request_id"],
                e["note"],
            ]
            for e in entries
        ],
        right=["#", "Credits", "Balance"],
        empty="No ledger entries yet. Add credits with `layers credits topup 500`.",
    )
