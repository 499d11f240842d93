"""The OpenAI-compatible endpoints: chat completions (whole and SSE), images, embeddings,
models. Each handler parses, calls one gateway method, and renders.

The three POST endpoints carry the traffic, so they are bare ASGI (`asgi.Endpoint`); the
model listing stays ordinary starlette."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from ..gateway import Gateway
from ..openai_shape import model_body
from .asgi import JSON, ASGIApp, Endpoint, Handler, Receive, Scope, header, read_json
from .sse import SSEResponse

SIMULATE_HEADER = "x-layers-simulate"
_AUTHORIZATION = b"authorization"
_SIMULATE = SIMULATE_HEADER.encode()

GatewayCall = Callable[
    [str | None, Any, str | None], Awaitable[tuple[dict[str, Any], dict[str, str]]]
]


def endpoints(gw: Gateway) -> dict[tuple[str, str], Endpoint]:
    """The hot endpoints by (method, path), served without starlette's per-request machinery."""

    async def chat_completions(scope: Scope, receive: Receive) -> ASGIApp:
        auth, simulate = header(scope, _AUTHORIZATION), header(scope, _SIMULATE)
        body = await read_json(receive)
        if isinstance(body, dict) and body.get("stream") is True:
            stream = await gw.chat_stream(auth, body, simulate)
            return SSEResponse(stream, stream.headers)
        result, headers = await gw.chat(auth, body, simulate)
        return JSON(result, headers=headers)

    def whole(call: GatewayCall) -> Handler:
        async def handler(scope: Scope, receive: Receive) -> ASGIApp:
            body = await read_json(receive)
            result, headers = await call(
                header(scope, _AUTHORIZATION), body, header(scope, _SIMULATE)
            )
            return JSON(result, headers=headers)

        return handler

    return {
        ("POST", "/v1/chat/completions"): Endpoint(chat_completions),
        ("POST", "/v1/images/generations"): Endpoint(whole(gw.images)),
        ("POST", "/v1/embeddings"): Endpoint(whole(gw.embeddings)),
    }


def routes(gw: Gateway, guarded: Any) -> list[Route]:
    models_cache: dict[str, Any] = {}

    async def list_models(request: Request) -> JSON:
        if "list" not in models_cache:
            models_cache["list"] = {
                "object": "list",
                "data": [model_body(m) for m in gw.catalog.list()],
            }
        return JSON(models_cache["list"])

    async def get_model(request: Request) -> JSON:
        model = gw.catalog.get(request.path_params["model_id"])
        return JSON(model_body(model))

    return [
        Route("/v1/models", guarded(list_models), methods=["GET"]),
        Route("/v1/models/{model_id:path}", guarded(get_model), methods=["GET"]),
    ]
