"""The starlette application: routes, JSON in and out, and `LayersError` → OpenAI error body.

`create_app(layers)` is the factory; the lifespan owns the gateway (its upstream HTTP client and its
database thread). This package is the only one that imports starlette.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import InvalidRequest, LayersError, ProviderError
from ..gateway import Gateway, new_request_id
from ..jsoncodec import dumps, loads

if TYPE_CHECKING:
    from ..service import Layers

Handler = Callable[[Request], Awaitable[Response]]


class JSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return dumps(content)


def error_response(exc: LayersError, request_id: str | None = None) -> Response:
    request_id = request_id or exc.extra.get("request_id") or new_request_id()
    headers = {**exc.headers, "x-request-id": request_id}
    headers["x-should-retry"] = "true" if _client_should_retry(exc) else "false"
    return JSON(exc.to_body(request_id), status_code=exc.status, headers=headers)


def _client_should_retry(exc: LayersError) -> bool:
    """Clients retry 408/409/429/5xx by default; say exactly when it can help."""
    if isinstance(exc, ProviderError):
        return bool(exc.client_retry if exc.client_retry is not None else exc.retryable)
    return exc.status == 429


async def read_json(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        return loads(raw)
    except ValueError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}.") from exc


def guarded(handler: Handler) -> Handler:
    """Every handler answers a `LayersError` with its OpenAI-shaped body, never a trace."""

    async def wrapper(request: Request) -> Response:
        try:
            return await handler(request)
        except LayersError as exc:
            return error_response(exc)

    return wrapper


def create_app(layers: Layers, gateway: Gateway | None = None) -> Starlette:
    from . import account_routes, openai_routes

    gw = gateway or layers.gateway()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        await gw.start()
        try:
            yield {"gateway": gw}
        finally:
            await gw.stop()

    routes = [
        *openai_routes.routes(gw, guarded),
        *account_routes.routes(gw, guarded),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_response(
            LayersError(
                f"No route {request.method} {request.url.path}.",
                hint="The API lives under /v1 (chat/completions, images/generations, "
                "embeddings, models, credits, key, generation, usage).",
                status=404,
                code="not_found",
            )
        )

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        return error_response(
            LayersError(
                f"{request.method} is not allowed on {request.url.path}.",
                status=405,
                code="method_not_allowed",
            )
        )

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: not_found, 405: method_not_allowed},
    )
    app.state.gateway = gw
    return app
