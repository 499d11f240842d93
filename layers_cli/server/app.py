"""The ASGI application: routes, JSON in and out, and `LayersError` → OpenAI error body.

`create_app(layers)` is the factory. The hot endpoints (chat completions, embeddings, images)
are bare ASGI, reached straight from `App` on an exact (method, path) match; everything else
(and the lifespan, which owns the gateway: its upstream HTTP client and its database thread)
goes to the starlette app. This package is the only one that imports starlette.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.requests import Request
from starlette.routing import Route

from ..errors import LayersError
from ..gateway import Gateway
from .asgi import JSON, Endpoint, Receive, Scope, Send, error_response, internal_error

if TYPE_CHECKING:
    from ..service import Layers

RequestHandler = Callable[[Request], Awaitable[JSON]]


def guarded(handler: RequestHandler) -> RequestHandler:
    """Every handler answers a `LayersError` with its OpenAI-shaped body, never a trace."""

    async def wrapper(request: Request) -> JSON:
        try:
            return await handler(request)
        except LayersError as exc:
            return error_response(exc)

    return wrapper


class App:
    """Sends an exact (method, path) match of a hot endpoint straight to it; the rest to
    starlette, which also has the hot endpoints mounted (for 405s, slash redirects and a
    ``root_path``), so skipping its router changes nothing but the cost."""

    def __init__(self, starlette: Starlette, hot: dict[tuple[str, str], Endpoint]) -> None:
        self.starlette = starlette
        self.hot = hot
        # for `protocol.HotCycle`, which matches the request line's raw method and target
        self.hot_raw = {(m.encode(), p.encode()): e for (m, p), e in hot.items()}
        self.state: State = starlette.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = self.hot.get((scope["method"], scope["path"]))
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await self.starlette(scope, receive, send)


def create_app(layers: Layers, gateway: Gateway | None = None) -> App:
    from . import account_routes, openai_routes

    gw = gateway or layers.gateway()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        await gw.start()
        try:
            yield {"gateway": gw}
        finally:
            await gw.stop()

    hot = openai_routes.endpoints(gw)
    routes = [
        *(Route(path, endpoint, methods=[method]) for (method, path), endpoint in hot.items()),
        *openai_routes.routes(gw, guarded),
        *account_routes.routes(gw, guarded),
    ]

    async def not_found(request: Request, exc: Exception) -> JSON:
        return error_response(
            LayersError(
                f"No route {request.method} {request.url.path}.",
                hint="The API lives under /v1 (chat/completions, images/generations, "
                "embeddings, models, credits, key, generation, usage).",
                status=404,
                code="not_found",
            )
        )

    async def method_not_allowed(request: Request, exc: Exception) -> JSON:
        return error_response(
            LayersError(
                f"{request.method} is not allowed on {request.url.path}.",
                status=405,
                code="method_not_allowed",
            )
        )

    async def server_error(request: Request, exc: Exception) -> JSON:
        return error_response(internal_error())

    starlette = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: not_found, 405: method_not_allowed, Exception: server_error},
    )
    starlette.state.gateway = gw
    return App(starlette, hot)
