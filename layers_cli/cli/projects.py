"""`layers projects`: create, list, show, rename, archive and budget."""

from __future__ import annotations

from typing import Any

import typer

from ..pricing import format_credits, micro_to_credits
from . import render

JSON = typer.Option(False, "--json", help="Print JSON (stable keys) instead of a table.")

app = typer.Typer(
    help="Projects group keys and usage; all share the account's credits.", no_args_is_help=True
)


def _credits(micro: int | None) -> float | None:
    return None if micro is None else micro_to_credits(micro)


def project_json(p: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": p["id"],
        "name": p["name"],
        "description": p["description"],
        "status": "archived" if p["archived_at"] else "active",
        "created_at": p["created_at"],
        "archived_at": p["archived_at"],
        "active_keys": p.get("active_keys"),
        "budget_micro": p["budget_micro"],
        "budget_credits": _credits(p["budget_micro"]),
        "spent_micro": p["spent_micro"],
        "spent_credits": micro_to_credits(p["spent_micro"]),
    }


def budget_text(budget: int | None, spent: int) -> str:
    if budget is None:
        return f"none ({format_credits(spent)} spent)"
    return f"{format_credits(spent)} of {format_credits(budget)} credits"


def project_rows(projects: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    columns = ["Name", "Status", "Keys", "Budget", "Created", "Description"]
    rows = [
        [
            p["name"],
            render.styled("archived", "dim") if p["archived_at"] else "active",
            p.get("active_keys", ""),
            budget_text(p["budget_micro"], p["spent_micro"]),
            p["created_at"][:10],
            p["description"],
        ]
        for p in projects
    ]
    return columns, rows


@app.command()
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", help="Unique project name."),
    description: str = typer.Option("", "--description", "-d", help="What the project is for."),
    budget: str | None = typer.Option(
        None, "--budget", help="Spending cap in credits (`500`) or dollars (`$5`)."
    ),
) -> None:
    """Create a project."""
    p = ctx.obj.service.create_project(name, description, budget)
    render.line(f"Created project {p['name']}.")
    render.note(f"Next: layers keys create --project {p['name']}")


@app.command("list")
def list_(
    ctx: typer.Context,
    json: bool = JSON,
    active: bool = typer.Option(False, "--active", help="Hide archived projects."),
) -> None:
    """List projects, archived ones included."""
    projects = ctx.obj.service.list_projects(include_archived=not active)
    if json:
        render.json_out([project_json(p) for p in projects])
        return
    render.table(
        *project_rows(projects),
        right=["Keys"],
        empty="No projects yet. Create one with `layers projects create NAME`.",
    )


@app.command()
def show(
    ctx: typer.Context, name: str = typer.Argument(..., metavar="NAME"), json: bool = JSON
) -> None:
    """Show a project, its keys and this month's usage."""
    from .keys import key_json, key_rows
    from .usage import totals_json, usage_fields

    p = ctx.obj.service.show_project(name)
    if json:
        render.json_out(
            {
                **project_json(p),
                "keys": [key_json(k) for k in p["keys"]],
                "usage_this_month": totals_json(p["usage_this_month"]),
            }
        )
        return
    render.fields(
        [
            ("Name", p["name"]),
            ("Status", f"archived {p['archived_at'][:10]}" if p["archived_at"] else "active"),
            ("Description", p["description"]),
            ("Created", p["created_at"][:19].replace("T", " ")),
            ("Budget", budget_text(p["budget_micro"], p["spent_micro"])),
        ],
        title=f"Project {p['name']}",
    )
    render.line()
    render.table(*key_rows(p["keys"], project=False), title="Keys", empty="No keys yet.")
    render.line()
    render.fields(usage_fields(p["usage_this_month"]), title="This month")


@app.command()
def rename(
    ctx: typer.Context,
    old: str = typer.Argument(..., metavar="OLD"),
    new: str = typer.Argument(..., metavar="NEW"),
) -> None:
    """Rename a project (its keys, history and budget stay)."""
    p = ctx.obj.service.rename_project(old, new)
    render.line(f"Renamed project {old} to {p['name']}.")


@app.command()
def archive(ctx: typer.Context, name: str = typer.Argument(..., metavar="NAME")) -> None:
    """Archive a project: its keys stop working at once; its history stays."""
    p = ctx.obj.service.archive_project(name)
    render.line(f"Archived project {p['name']}; its keys no longer work.")


@app.command(context_settings={"ignore_unknown_options": True})
def budget(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME"),
    amount: str = typer.Argument(
        ..., metavar="AMOUNT|none", help="Credits (`500`), dollars (`$5`) or `none`."
    ),
) -> None:
    """Set or clear (`none`) a project's spending cap."""
    p = ctx.obj.service.set_project_budget(name, amount)
    if p["budget_micro"] is None:
        render.line(f"Project {p['name']} has no budget now.")
    else:
        render.line(
            f"Project {p['name']} budget: {budget_text(p['budget_micro'], p['spent_micro'])}."
        )
