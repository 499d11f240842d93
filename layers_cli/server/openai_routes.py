"""The OpenAI-compatible endpoints: chat completions (whole and SSE), images, embeddings,
models. Each handler parses, calls one gateway method, and renders."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import LayersError
from ..gateway import Gateway
from ..openai_shape import model_body
from .app import JSON, error_response, read_json
from .sse import SSEResponse

SIMULATE_HEADER = "x-layers-simulate"


def routes(gw: Gateway, guarded: Any) -> list[Route]:
    async def chat_completions(request: Request) -> Response:
        auth = request.headers.get("authorization")
        simulate = request.headers.get(SIMULATE_HEADER)
        try:
            body = await read_json(request)
        except LayersError as exc:
            return error_response(exc)
        if isinstance(body, dict) and body.get("stream") is True:
            stream = await gw.chat_stream(auth, body, simulate)
            return SSEResponse(stream, stream.headers)  # type: ignore[return-value]
        result, headers = await gw.chat(auth, body, simulate)
        return JSON(result, headers=headers)

    async def images(request: Request) -> Response:
        body = await read_json(request)
        result, headers = await gw.images(
            request.headers.get("authorization"), body, request.headers.get(SIMULATE_HEADER)
        )
        return JSON(result, headers=headers)

    async def embeddings(request: Request) -> Response:
        body = await read_json(request)
        result, headers = await gw.embeddings(
            request.headers.get("authorization"), body, request.headers.get(SIMULATE_HEADER)
        )
        return JSON(result, headers=headers)

    models_cache: dict[str, Any] = {}

    async def list_models(request: Request) -> Response:
        if "list" not in models_cache:
            models_cache["list"] = {
                "object": "list",
                "data": [model_body(m) for m in gw.catalog.list()],
            }
        return JSON(models_cache["list"])

    async def get_model(request: Request) -> Response:
        model = gw.catalog.get(request.path_params["model_id"])
        return JSON(model_body(model))

    return [
        Route("/v1/chat/completions", guarded(chat_completions), methods=["POST"]),
        Route("/v1/images/generations", guarded(images), methods=["POST"]),
        Route("/v1/embeddings", guarded(embeddings), methods=["POST"]),
        Route("/v1/models", guarded(list_models), methods=["GET"]),
        Route("/v1/models/{model_id:path}", guarded(get_model), methods=["GET"]),
    ]
