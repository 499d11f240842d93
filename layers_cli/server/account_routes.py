"""Layers' own endpoints: credits, the calling key, one request's record, usage, health."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from ..errors import InvalidRequest, NotFound
from ..gateway import Gateway
from ..pricing import micro_to_credits, micro_to_usd
from .asgi import JSON


def _totals(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "requests": row["requests"],
        "succeeded": row.get("succeeded") or 0,
        "prompt_tokens": row["prompt_tokens"],
        "completion_tokens": row["completion_tokens"],
        "cached_tokens": row["cached_tokens"],
        "reasoning_tokens": row["reasoning_tokens"],
        "images": row["images"],
        "cost_usd": micro_to_usd(row["credits_micro"]),
        "credits": micro_to_credits(row["credits_micro"]),
    }


def routes(gw: Gateway, guarded: Any) -> list[Route]:
    layers = gw.layers

    async def credits(request: Request) -> JSON:
        await gw.authenticate(request.headers.get("authorization"))
        b = await gw.call(layers.balance)
        return JSON(
            {
                "object": "credits",
                "balance": micro_to_credits(b["balance_micro"]),
                "balance_usd": micro_to_usd(b["balance_micro"]),
                "held": micro_to_credits(b["held_micro"]),
                "open_holds": b["open_holds"],
                "total_used": micro_to_credits(b["used_micro"]),
                "total_used_usd": micro_to_usd(b["used_micro"]),
            }
        )

    async def key(request: Request) -> JSON:
        p = await gw.authenticate(request.headers.get("authorization"))
        usage = await gw.call(layers.key_usage, p.key_id)
        state = gw.limit_headers(p)
        return JSON(
            {
                "object": "key",
                "id": p.key_id,
                "label": p.key_label,
                "prefix": p.prefix,
                "kind": p.kind,
                "project": p.project_name,
                "limits": {
                    "rpm": p.rpm,
                    "tpm": p.tpm,
                    "budget_credits": micro_to_credits(p.budget_micro) if p.budget_micro else None,
                    "requests_remaining_this_minute": state.remaining,
                },
                "usage": {
                    "today": _totals(usage["today"]),
                    "this_month": _totals(usage["this_month"]),
                },
            }
        )

    async def generation(request: Request) -> JSON:
        p = await gw.authenticate(request.headers.get("authorization"))
        request_id = request.query_params.get("id")
        if not request_id:
            raise InvalidRequest("Pass the request id: GET /v1/generation?id=req_…", param="id")
        row = await gw.call(layers.get_request, request_id)
        if row["project_id"] not in (None, p.project_id):
            raise NotFound(f"No request '{request_id}' in project {p.project_name}.", param="id")
        return JSON(
            {
                "object": "generation",
                "id": row["id"],
                "created_at": row["created_at"],
                "model": row["model"],
                "provider": row["provider"],
                "upstream_model": row["upstream_model"],
                "endpoint": row["endpoint"],
                "simulated": row["simulated"],
                "status": row["status"],
                "http_status": row["http_status"],
                "streamed": row["streamed"],
                "finish_reason": row["finish_reason"],
                "prompt_tokens": row["prompt_tokens"],
                "completion_tokens": row["completion_tokens"],
                "cached_tokens": row["cached_tokens"],
                "cache_write_tokens": row["cache_write_tokens"],
                "reasoning_tokens": row["reasoning_tokens"],
                "images": row["images"],
                "estimated": row["estimated"],
                "cost_usd": micro_to_usd(row["credits_micro"]),
                "provider_cost_usd": micro_to_usd(row["base_micro"]),
                "credits": micro_to_credits(row["credits_micro"]),
                "latency_ms": row["latency_ms"],
                "ttft_ms": row["ttft_ms"],
                "metadata": row["metadata"],
                "error": row["error"],
                "project": row.get("project_name"),
            }
        )

    async def usage(request: Request) -> JSON:
        await gw.authenticate(request.headers.get("authorization"))
        q = request.query_params
        report = await gw.call(
            layers.usage,
            by=q.get("by"),
            project=q.get("project"),
            key=q.get("key"),
            model=q.get("model"),
            since=q.get("since"),
        )
        return JSON(
            {
                "object": "usage",
                "by": report["by"],
                "total": _totals(report["total"]),
                "groups": [{"group": g["grp"], **_totals(g)} for g in report["groups"]],
            }
        )

    async def health(request: Request) -> JSON:
        return JSON(
            {
                "status": "ok",
                "providers": {
                    name: ("live" if r.live else "simulated") for name, r in gw.routes.items()
                },
            }
        )

    return [
        Route("/v1/credits", guarded(credits), methods=["GET"]),
        Route("/v1/key", guarded(key), methods=["GET"]),
        Route("/v1/generation", guarded(generation), methods=["GET"]),
        Route("/v1/usage", guarded(usage), methods=["GET"]),
        Route("/health", guarded(health), methods=["GET"]),
    ]
