"""`layers keys`: create, list, revoke, rotate and update API keys.

A secret is printed exactly once, by `create` and `rotate`; only its hash is stored.
"""

from __future__ import annotations

from typing import Any

import typer

from ..pricing import format_credits, micro_to_credits
from . import render

JSON = typer.Option(False, "--json", help="Print JSON (stable keys) instead of a table.")
ONCE = "Copy it now: this secret will not be shown again (Layers keeps only its hash)."

app = typer.Typer(help="API keys: one key reaches every provider.", no_args_is_help=True)


def key_json(k: dict[str, Any]) -> dict[str, Any]:
    """A key as `--json` shows it: never the hash, never the secret."""
    return {
        "id": k["id"],
        "label": k["label"],
        "prefix": k["prefix"],
        "kind": k["kind"],
        "project": k["project_name"],
        "status": k["status"],
        "created_at": k["created_at"],
        "last_used_at": k["last_used_at"],
        "expires_at": k["expires_at"],
        "revoked_at": k["revoked_at"],
        "rotated_to": k["rotated_to"],
        "rpm": k["rpm"],
        "tpm": k["tpm"],
        "budget_micro": k["budget_micro"],
        "budget_credits": None
        if k["budget_micro"] is None
        else micro_to_credits(k["budget_micro"]),
        "spent_micro": k["spent_micro"],
        "spent_credits": micro_to_credits(k["spent_micro"]),
    }


_STATUS_STYLE = {"active": "green", "revoked": "red", "expired": "yellow", "archived": "dim"}


def limits_text(k: dict[str, Any]) -> str:
    parts = []
    if k["rpm"]:
        parts.append(f"{k['rpm']:,} rpm")
    if k["tpm"]:
        parts.append(f"{k['tpm']:,} tpm")
    if k["budget_micro"] is not None:
        parts.append(
            f"{format_credits(k['spent_micro'])}/{format_credits(k['budget_micro'])} credits"
        )
    return ", ".join(parts)


def _when(ts: str | None) -> str | None:
    return ts[:16].replace("T", " ") if ts else None


def key_rows(keys: list[dict[str, Any]], project: bool = True) -> tuple[list[str], list[list[Any]]]:
    columns = ["ID", "Label", "Prefix", "Project", "Created", "Last used", "Status", "Limits"]
    rows = []
    for k in keys:
        status = k["status"] + (" (test)" if k["kind"] == "test" else "")
        if k["status"] == "active" and k["expires_at"]:
            status += f", expires {k['expires_at'][:10]}"
        rows.append(
            [
                k["id"],
                k["label"],
                k["prefix"],
                k["project_name"],
                _when(k["created_at"]),
                _when(k["last_used_at"]) or "never",
                render.styled(status, _STATUS_STYLE.get(k["status"], "")),
                limits_text(k),
            ]
        )
    if not project:
        columns.remove("Project")
        rows = [r[:3] + r[4:] for r in rows]
    return columns, rows


def _show_secret(key: dict[str, Any], secret: str, json: bool, verb: str) -> None:
    if json:
        render.json_out({"key": key_json(key), "secret": secret})
    else:
        render.note(f"{verb} key {key['id']} for project {key['project_name']}.")
        render.plain(secret)
    render.warn(ONCE)


@app.command()
def create(
    ctx: typer.Context,
    project: str = typer.Option(..., "--project", "-p", help="Project the key belongs to."),
    name: str = typer.Option("", "--name", help="A label to recognise the key by."),
    expires: str | None = typer.Option(
        None, "--expires", help="Lifetime (30d, 12h, 2w, 1y) or a date (2027-01-31)."
    ),
    rpm: int | None = typer.Option(None, "--rpm", help="Requests per minute limit."),
    tpm: int | None = typer.Option(None, "--tpm", help="Tokens per minute limit."),
    budget: str | None = typer.Option(
        None, "--budget", help="Spending cap in credits (`500`) or dollars (`$5`)."
    ),
    test: bool = typer.Option(
        False, "--test", help="A lyr_test_ key: always served by the offline simulator."
    ),
    json: bool = typer.Option(False, "--json", help="Print the key and secret as JSON."),
) -> None:
    """Create a key and print its secret once."""
    key, secret = ctx.obj.service.create_key(
        project,
        label=name,
        kind="test" if test else "live",
        expires=expires,
        rpm=rpm,
        tpm=tpm,
        budget=budget,
    )
    _show_secret(key, secret, json, "Created")


@app.command("list")
def list_(
    ctx: typer.Context,
    project: str | None = typer.Option(None, "--project", "-p", help="Only this project's keys."),
    all_: bool = typer.Option(False, "--all", help="Include revoked and expired keys."),
    json: bool = JSON,
) -> None:
    """List keys: id, label, prefix, project, created, last used, status and limits."""
    keys = ctx.obj.service.list_keys(project, include_inactive=all_)
    if json:
        render.json_out([key_json(k) for k in keys])
        return
    hint = "" if all_ else " Add --all to include revoked and expired keys."
    render.table(
        *key_rows(keys),
        empty=f"No keys. Create one with `layers keys create --project NAME`.{hint}",
    )


@app.command()
def revoke(
    ctx: typer.Context,
    key: str = typer.Argument(..., metavar="ID|PREFIX", help="Key id or prefix."),
) -> None:
    """Revoke a key: it stops working at once; its history stays."""
    k = ctx.obj.service.revoke_key(key)
    render.line(f"Revoked key {k['id']} ({k['prefix']}…) of project {k['project_name']}.")


@app.command()
def rotate(
    ctx: typer.Context,
    key: str = typer.Argument(..., metavar="ID", help="Key id or prefix."),
    json: bool = typer.Option(False, "--json", help="Print the new key and secret as JSON."),
) -> None:
    """Replace a key's secret: same project, label and limits; the old secret is revoked."""
    new, secret = ctx.obj.service.rotate_key(key)
    _show_secret(new, secret, json, f"Rotated {key} into")


@app.command()
def update(
    ctx: typer.Context,
    key: str = typer.Argument(..., metavar="ID", help="Key id or prefix."),
    rpm: int | None = typer.Option(None, "--rpm", help="Requests per minute (0 clears)."),
    tpm: int | None = typer.Option(None, "--tpm", help="Tokens per minute (0 clears)."),
    budget: str | None = typer.Option(
        None, "--budget", help="Cap in credits (`500`), dollars (`$5`), or `none`."
    ),
    name: str | None = typer.Option(None, "--name", help="New label."),
    json: bool = JSON,
) -> None:
    """Change a key's limits, budget or label."""
    k = ctx.obj.service.update_key(key, rpm=rpm, tpm=tpm, budget=budget, label=name)
    if json:
        render.json_out(key_json(k))
        return
    render.line(f"Updated key {k['id']}: {limits_text(k) or 'no limits'}.")
