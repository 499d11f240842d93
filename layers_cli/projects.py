"""Projects of the one account in a data home: names are unique (case-insensitive)."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

from .db import immediate, now_iso
from .errors import Conflict, InvalidRequest, NotFound

if TYPE_CHECKING:
    from sqlite_utils import Database

DEFAULT_PROJECT = "default"


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 64 or any(c in name for c in "\n\r\t"):
        raise InvalidRequest("A project name needs 1 to 64 characters on one line.", param="name")
    return name


def list_projects(db: Database, include_archived: bool = True) -> list[dict[str, Any]]:
    sql = (
        "SELECT p.*, (SELECT COUNT(*) FROM api_keys k WHERE k.project_id = p.id"
        " AND k.revoked_at IS NULL) AS active_keys FROM projects p"
    )
    if not include_archived:
        sql += " WHERE p.archived_at IS NULL"
    return list(db.query(sql + " ORDER BY p.name"))


def get_project(db: Database, name: str) -> dict[str, Any]:
    rows = list(db.query("SELECT * FROM projects WHERE name = ?", [name.strip()]))
    if not rows:
        names = [p["name"] for p in list_projects(db)]
        known = ", ".join(names) if names else "none yet"
        raise NotFound(
            f"No project named '{name}'. Existing projects: {known}.",
            hint=f"Create it with `layers projects create {name}`.",
            param="project",
        )
    return rows[0]


def create_project(
    db: Database, name: str, description: str = "", budget_micro: int | None = None
) -> dict[str, Any]:
    name = _check_name(name)
    if budget_micro is not None and budget_micro <= 0:
        raise InvalidRequest("--budget must be positive.", param="budget")
    try:
        with immediate(db) as conn:
            conn.execute(
                "INSERT INTO projects (name, description, created_at, budget_micro)"
                " VALUES (?, ?, ?, ?)",
                (name, description, now_iso(), budget_micro),
            )
    except sqlite3.IntegrityError as exc:
        raise Conflict(
            f"A project named '{name}' already exists.",
            hint="Pick another name, or see `layers projects list`.",
            param="name",
        ) from exc
    return get_project(db, name)


def rename_project(db: Database, old: str, new: str) -> dict[str, Any]:
    project = get_project(db, old)
    new = _check_name(new)
    try:
        with immediate(db) as conn:
            conn.execute("UPDATE projects SET name = ? WHERE id = ?", (new, project["id"]))
    except sqlite3.IntegrityError as exc:
        raise Conflict(f"A project named '{new}' already exists.", param="name") from exc
    return get_project(db, new)


def archive_project(db: Database, name: str) -> dict[str, Any]:
    """Archive: its keys stop working at once; its history stays."""
    project = get_project(db, name)
    if project["archived_at"]:
        raise Conflict(f"Project '{project['name']}' is already archived.")
    with immediate(db) as conn:
        conn.execute("UPDATE projects SET archived_at = ? WHERE id = ?", (now_iso(), project["id"]))
    return get_project(db, project["name"])


def set_budget(db: Database, name: str, budget_micro: int | None) -> dict[str, Any]:
    project = get_project(db, name)
    with immediate(db) as conn:
        conn.execute(
            "UPDATE projects SET budget_micro = ? WHERE id = ?", (budget_micro, project["id"])
        )
    return get_project(db, project["name"])


def ensure_project(db: Database, name: str) -> dict[str, Any]:
    try:
        return get_project(db, name)
    except NotFound:
        return create_project(db, name, "Created by `layers serve` on a fresh home.")
