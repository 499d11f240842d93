"""Bare ASGI for the hot endpoints: read the body, answer JSON or an OpenAI-shaped error.

Starlette's per-request machinery (error and exception middleware, router, `Request` and
`Response` objects) costs more CPU than everything here; every request an app makes pays it
(issue 5). So the endpoints that carry the traffic are plain ASGI callables (`Endpoint`),
and `JSON` is a plain ASGI response that the starlette routes return as well.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from ..errors import InvalidRequest, LayersError, ProviderError
from ..gateway import new_request_id
from ..jsoncodec import dumps, loads

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Handler = Callable[[Scope, Receive], Awaitable[ASGIApp]]

_log = logging.getLogger("uvicorn.error")  # where the server logs its own failures


class JSON:
    """A JSON response, sent exactly as starlette's `JSONResponse` sends it (the given
    headers, then content-length and content-type) without building a header object."""

    __slots__ = ("body", "raw_headers", "status_code")

    def __init__(
        self, content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None
    ) -> None:
        self.status_code = status_code
        self.body = dumps(content)
        raw = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()
        ]
        raw.append((b"content-length", str(len(self.body)).encode("latin-1")))
        raw.append((b"content-type", b"application/json"))
        self.raw_headers = raw

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        await send({"type": "http.response.body", "body": self.body})


def error_response(exc: LayersError, request_id: str | None = None) -> JSON:
    request_id = request_id or exc.extra.get("request_id") or new_request_id()
    headers = {**exc.headers, "x-request-id": request_id}
    headers["x-should-retry"] = "true" if _client_should_retry(exc) else "false"
    return JSON(exc.to_body(request_id), status_code=exc.status, headers=headers)


def _client_should_retry(exc: LayersError) -> bool:
    """Clients retry 408/409/429/5xx by default; say exactly when it can help."""
    if isinstance(exc, ProviderError):
        return bool(exc.client_retry if exc.client_retry is not None else exc.retryable)
    return exc.status == 429


def internal_error() -> LayersError:
    """What a client sees when a bug escapes a handler (the trace goes to the log only)."""
    return LayersError(
        "Layers failed on this request because of an internal error.",
        hint="The gateway's log has the details; please report it.",
    )


class ClientDisconnected(Exception):
    """The client went away before its request body arrived: nobody is left to answer."""


async def read_body(receive: Receive) -> bytes:
    """The whole body, joined from however many ``http.request`` messages it came in."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnected
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def read_json(receive: Receive) -> Any:
    raw = await read_body(receive)
    if not raw:
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        return loads(raw)
    except ValueError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}.") from exc


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of a request header (``name`` in lower case, as servers pass it)."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")  # type: ignore[no-any-return]
    return None


class Endpoint:
    """A bare ASGI endpoint: ``handler(scope, receive)`` returns the response to send.

    A `LayersError` is answered with its OpenAI-shaped body. Anything else is logged (with its
    trace, on uvicorn's error log) and answered with a 500 body that names no detail. Being a
    class instance (not a function), starlette's `Route` mounts it as ASGI, unwrapped.
    `protocol.HotCycle` calls `respond` directly, without ASGI's send.
    """

    __slots__ = ("handler",)

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    async def respond(self, scope: Scope, receive: Receive) -> ASGIApp | None:
        """The response to send, or ``None`` when the client left before its body arrived."""
        try:
            return await self.handler(scope, receive)
        except LayersError as exc:
            return error_response(exc)
        except ClientDisconnected:
            return None
        except Exception:
            _log.exception("Exception in the %s %s handler", scope["method"], scope["path"])
            return error_response(internal_error())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.respond(scope, receive)
        if response is not None:
            await response(scope, receive, send)
