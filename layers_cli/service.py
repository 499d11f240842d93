"""The `Layers` facade: the one API both the CLI and the HTTP server call.

Management calls (projects, keys, credits, usage, models, providers) are plain synchronous
methods over the data home's database; the gateway's request flow lives in `gateway.py` and
is reached through `Layers.gateway()`. No SQL and no business rule lives in the CLI or in an
HTTP handler: they parse, call one method here, and render.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from decimal import Decimal
from functools import cached_property
from typing import TYPE_CHECKING, Any

from . import __version__, ledger, projects, requestlog
from . import keys as keys_mod
from .db import open_db, schema_version
from .errors import InvalidRequest, NotFound
from .pricing import MICRO_PER_CREDIT, charge, markup_for, parse_credits
from .settings import Settings, load_settings

if TYPE_CHECKING:
    from sqlite_utils import Database

    from .catalog import Catalog, ModelInfo
    from .gateway import Gateway


def _month_start() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-01T00:00:00.000Z")


def _day_start() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT00:00:00.000Z")


class Layers:
    """One data home: its database, its catalog and its settings."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()

    # -- resources, opened on first use so `layers --help` touches nothing ---------------
    @cached_property
    def db(self) -> Database:
        return open_db(self.settings.db_path)

    @cached_property
    def catalog(self) -> Catalog:
        from .catalog import load_catalog

        return load_catalog(self.settings)

    def gateway(self) -> Gateway:
        from .gateway import Gateway

        return Gateway(self)

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.close()
            del self.__dict__["db"]

    # -- home and account ----------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        db = self.db
        counts = {
            table: db.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("projects", "api_keys", "ledger_entries", "holds", "requests")
        }
        return {
            "home": str(self.settings.home),
            "database": str(self.settings.db_path),
            "config": str(self.settings.config_path),
            "config_exists": self.settings.config_path.exists(),
            "schema_version": schema_version(db),
            "counts": counts,
            "version": __version__,
        }

    def balance(self) -> dict[str, Any]:
        b = ledger.balance(self.db)
        used = -self.db.conn.execute(
            "SELECT COALESCE(SUM(amount_micro), 0) FROM ledger_entries WHERE kind = 'charge'"
        ).fetchone()[0]
        return {
            "balance_micro": b.available,
            "entries_micro": b.entries,
            "held_micro": b.held,
            "used_micro": used,
            "open_holds": len(ledger.open_holds(self.db)),
        }

    def account(self) -> dict[str, Any]:
        return {
            **self.balance(),
            "projects": self.list_projects(),
            "keys": self.list_keys(include_inactive=True),
        }

    # -- projects ------------------------------------------------------------------------
    def list_projects(self, include_archived: bool = True) -> list[dict[str, Any]]:
        return projects.list_projects(self.db, include_archived)

    def create_project(
        self, name: str, description: str = "", budget: str | None = None
    ) -> dict[str, Any]:
        budget_micro = parse_credits(budget) if budget else None
        return projects.create_project(self.db, name, description, budget_micro)

    def show_project(self, name: str) -> dict[str, Any]:
        project = projects.get_project(self.db, name)
        filters = requestlog.Filters(project_id=project["id"], since=_month_start())
        return {
            **project,
            "keys": keys_mod.list_keys(self.db, project["id"], include_inactive=True),
            "usage_this_month": requestlog.usage(self.db, filters)["total"],
        }

    def rename_project(self, old: str, new: str) -> dict[str, Any]:
        return projects.rename_project(self.db, old, new)

    def archive_project(self, name: str) -> dict[str, Any]:
        return projects.archive_project(self.db, name)

    def set_project_budget(self, name: str, budget: str | None) -> dict[str, Any]:
        budget_micro = parse_credits(budget) if budget and budget != "none" else None
        return projects.set_budget(self.db, name, budget_micro)

    # -- keys ----------------------------------------------------------------------------
    def create_key(
        self,
        project: str,
        *,
        label: str = "",
        kind: str = "live",
        expires: str | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        budget: str | None = None,
    ) -> tuple[dict[str, Any], str]:
        proj = projects.get_project(self.db, project)
        if proj["archived_at"]:
            raise InvalidRequest(f"Project '{proj['name']}' is archived; its keys cannot work.")
        return keys_mod.create_key(
            self.db,
            proj["id"],
            label=label,
            kind=kind,
            expires_at=keys_mod.parse_expiry(expires),
            rpm=rpm,
            tpm=tpm,
            budget_micro=parse_credits(budget) if budget else None,
        )

    def list_keys(
        self, project: str | None = None, include_inactive: bool = False
    ) -> list[dict[str, Any]]:
        project_id = projects.get_project(self.db, project)["id"] if project else None
        return keys_mod.list_keys(self.db, project_id, include_inactive)

    def revoke_key(self, id_or_prefix: str) -> dict[str, Any]:
        return keys_mod.revoke_key(self.db, id_or_prefix)

    def rotate_key(self, id_or_prefix: str) -> tuple[dict[str, Any], str]:
        return keys_mod.rotate_key(self.db, id_or_prefix)

    def update_key(
        self,
        id_or_prefix: str,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        budget: str | None = None,
        label: str | None = None,
    ) -> dict[str, Any]:
        budget_micro = None
        if budget is not None:
            budget_micro = 0 if budget in ("0", "none") else parse_credits(budget)
        return keys_mod.update_key(
            self.db, id_or_prefix, rpm=rpm, tpm=tpm, budget_micro=budget_micro, label=label
        )

    # -- credits -------------------------------------------------------------------------
    def topup(self, amount: str, note: str = "") -> dict[str, Any]:
        micro = parse_credits(amount)
        ledger.topup(self.db, micro, note=note)
        return {"added_micro": micro, **self.balance()}

    def history(self, limit: int | None = 50) -> list[dict[str, Any]]:
        if limit is not None and limit <= 0:
            raise InvalidRequest("--limit must be positive.", param="limit")
        return ledger.history(self.db, limit)

    def recover_holds(self, all_processes: bool = False) -> list[ledger.Hold]:
        return ledger.recover(self.db, all_processes=all_processes)

    def verify_ledger(self, rebuild_usage: bool = False) -> dict[str, Any]:
        """The ledger's running totals and the usage rollup, each against its rows;
        ``rebuild_usage`` first recomputes the rollup (it holds no money)."""
        if rebuild_usage:
            requestlog.rebuild_rollup(self.db)
        totals = ledger.verify(self.db)
        rollup = requestlog.check_rollup(self.db)
        return {
            **totals,
            "ok": totals["ok"] and rollup["ok"],
            "totals_ok": totals["ok"],
            "usage_rollup": rollup,
        }

    def bootstrap(self) -> dict[str, Any]:
        """Make a fresh home usable with no other step: a default project, one key
        (returned once) and the documented starter credits. Idempotent."""
        db = self.db
        result: dict[str, Any] = {"created_key": None, "secret": None, "granted_micro": 0}
        if not projects.list_projects(db):
            project = projects.ensure_project(db, projects.DEFAULT_PROJECT)
            key, secret = keys_mod.create_key(db, project["id"], label="created by layers serve")
            result.update(created_key=key, secret=secret)
        granted = db.conn.execute("SELECT starter_granted FROM account WHERE id = 1").fetchone()[0]
        if not granted and self.settings.starter_credits > 0:
            micro = self.settings.starter_credits * MICRO_PER_CREDIT
            ledger.topup(db, micro, kind="grant", note="starter credits")
            with db.conn:
                db.conn.execute("UPDATE account SET starter_granted = 1 WHERE id = 1")
            result["granted_micro"] = micro
        return result

    # -- usage and requests --------------------------------------------------------------
    def filters(
        self,
        *,
        project: str | None = None,
        key: str | None = None,
        model: str | None = None,
        status: str | None = None,
        since: str | None = None,
    ) -> requestlog.Filters:
        return requestlog.Filters(
            project_id=projects.get_project(self.db, project)["id"] if project else None,
            key_id=keys_mod.get_key(self.db, key)["id"] if key else None,
            model=self.catalog.get(model).id if model else None,
            status=status,
            since=requestlog.parse_since(since),
        )

    def usage(self, by: str | None = None, **filters: Any) -> dict[str, Any]:
        return requestlog.usage(self.db, self.filters(**filters), by)

    def key_usage(self, key_id: str) -> dict[str, Any]:
        today = requestlog.usage(self.db, requestlog.Filters(key_id=key_id, since=_day_start()))
        month = requestlog.usage(self.db, requestlog.Filters(key_id=key_id, since=_month_start()))
        return {"today": today["total"], "this_month": month["total"]}

    def list_requests(self, limit: int = 50, **filters: Any) -> list[dict[str, Any]]:
        if limit <= 0:
            raise InvalidRequest("--limit must be positive.", param="limit")
        return requestlog.list_requests(self.db, self.filters(**filters), limit)

    def get_request(self, request_id: str) -> dict[str, Any]:
        return requestlog.get_request(self.db, request_id)

    def explain_request(self, request_id: str) -> dict[str, Any]:
        """A request row plus the charge recomputed from first principles."""
        row = self.get_request(request_id)
        explanation: dict[str, Any] = {"request": row, "charge": None}
        if row["model"]:
            try:
                model = self.catalog.get(row["model"])
            except NotFound:
                return explanation
            from .providers.base import Usage

            usage = Usage(
                prompt_tokens=row["prompt_tokens"],
                completion_tokens=row["completion_tokens"],
                cached_tokens=row["cached_tokens"],
                cache_write_tokens=row["cache_write_tokens"],
                reasoning_tokens=row["reasoning_tokens"],
                images=row["images"],
            )
            markup = Decimal(row["markup"]) if row["markup"] else self.markup(model)
            explanation["charge"] = charge(model, usage, markup)
        return explanation

    # -- models --------------------------------------------------------------------------
    def markup(self, model: ModelInfo) -> Decimal:
        return markup_for(model, self.settings.markup)

    def list_models(self, **filters: Any) -> list[ModelInfo]:
        return self.catalog.list(**filters)

    def get_model(self, model_id: str) -> ModelInfo:
        return self.catalog.get(model_id)

    def price(
        self, model_id: str, *, input: int = 0, output: int = 0, cached: int = 0, images: int = 0
    ) -> tuple[ModelInfo, Any]:
        for name, value in (
            ("input", input),
            ("output", output),
            ("cached", cached),
            ("images", images),
        ):
            if value < 0:
                raise InvalidRequest(f"--{name} cannot be negative.", param=name)
        model = self.catalog.get(model_id)
        from .providers.base import Usage

        usage = Usage(
            prompt_tokens=input + cached,
            completion_tokens=output,
            cached_tokens=cached,
            images=images,
        )
        return model, charge(model, usage, self.markup(model))

    # -- provider credentials ------------------------------------------------------------
    def provider_status(self) -> list[dict[str, Any]]:
        from .routing import provider_routes

        return [route.describe() for route in provider_routes(self.settings).values()]

    def _known_provider(self, name: str) -> None:
        names = [p["name"] for p in self.provider_status()]
        if name not in names:
            raise NotFound(
                f"Unknown provider '{name}'. Known providers: {', '.join(names)}.",
                hint="Extra OpenAI-compatible upstreams are declared in config.toml "
                "[upstreams.NAME].",
                param="provider",
            )

    def set_provider_credential(self, name: str, secret: str) -> None:
        """Store a provider key in the OS keyring (never in the database)."""
        from .providers import CREDENTIAL_ENV
        from .secrets import set_credential

        self._known_provider(name)
        set_credential(name, secret, CREDENTIAL_ENV.get(name, ()))

    def remove_provider_credential(self, name: str) -> list[str]:
        """Delete a stored key; returns the environment variables that still make it live."""
        from .providers import CREDENTIAL_ENV
        from .secrets import delete_credential

        self._known_provider(name)
        if not delete_credential(name):
            raise NotFound(f"No {name} credential is stored in the keyring.")
        return [v for v in CREDENTIAL_ENV.get(name, ()) if os.environ.get(v)]

    def test_provider(self, name: str) -> dict[str, Any]:
        from .routing import probe_provider

        return probe_provider(self.settings, self.catalog, name)
