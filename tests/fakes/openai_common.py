"""Pieces shared by the fake OpenAI-compatible upstreams (`openai`, `perplexity`): request
recording, scripted failures, SSE framing, and deterministic content (schema samples, tool
calls, a real tiny PNG, unit vectors)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import struct
import zlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from . import Failure, FakeState

CREATED = 1700000000
ERRORS = {
    400: ("Invalid request.", "invalid_request_error", None),
    401: ("Incorrect API key provided: te******ey.", "invalid_request_error", "invalid_api_key"),
    403: ("Country, region, or territory not supported.", "invalid_request_error", None),
    404: ("The model does not exist.", "invalid_request_error", "model_not_found"),
    429: ("Rate limit reached for requests.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}


def error_body(message: str, kind: str, code: Any = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def default_error(status: int) -> dict:
    message, kind, code = ERRORS.get(status, (f"HTTP {status}", "server_error", None))
    return error_body(message, kind, code)


async def record(state: FakeState, request: Request) -> Any:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    state.requests.append(
        {"path": request.url.path, "headers": dict(request.headers), "json": body}
    )
    return body


async def scripted(
    state: FakeState, *, stream: bool, errors: Any = default_error
) -> tuple[Response | None, Failure | None]:
    """Apply the next scripted failure: delay, error status, malformed JSON body."""
    failure = state.take_failure()
    if failure is None:
        return None, None
    if failure.delay:
        await asyncio.sleep(failure.delay)
    if failure.status:
        body = failure.body if failure.body is not None else errors(failure.status)
        return JSONResponse(body, status_code=failure.status, headers=failure.headers), failure
    if failure.malformed and not stream:
        return Response(
            '{"id": "chatcmpl-broken", "choices": [', media_type="application/json"
        ), None
    return None, failure


def unauthorized(request: Request) -> Response | None:
    header = request.headers.get("authorization", "")
    if header.startswith("Bearer ") and header[7:].strip():
        return None
    body = error_body(
        "You didn't provide an API key. You need to provide your API key in an Authorization "
        "header using Bearer auth.",
        "invalid_request_error",
    )
    return JSONResponse(body, status_code=401)


def sse_response(
    events: list[dict[str, Any]], failure: Failure | None, *, done: bool = True
) -> StreamingResponse:
    """``data: <json>`` events, then ``[DONE]``; a scripted failure cuts in with an error
    frame (``stream_error_after``) or a line that is not JSON (``malformed``)."""

    async def body() -> AsyncIterator[str]:
        for number, event in enumerate(events):
            if failure and failure.stream_error_after == number:
                frame = failure.body or default_error(500)
                frame = frame if "error" in frame else {"error": frame}
                yield f"data: {json.dumps(frame)}\n\n"
                return
            if failure and failure.malformed and number == 1:
                yield "data: {not json\n\n"
                return
            yield f"data: {json.dumps(event)}\n\n"
        if done:
            yield "data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream")


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def last_text(messages: list[dict[str, Any]], role: str = "user") -> str:
    for message in reversed(messages):
        if message.get("role") == role:
            return text_of(message.get("content"))
    return ""


def sample(schema: Any, name: str = "") -> Any:
    """A value matching a JSON schema (the common subset), deterministically."""
    if not isinstance(schema, dict):
        return None
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return sample(schema[key][0], name)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {key: sample(sub, key) for key, sub in props.items()}
    if kind == "array":
        return [sample(schema.get("items") or {"type": "string"}, name)]
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1.5))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return "Paris" if name == "city" else f"{name or 'value'}-1"


def fake_tool_calls(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Calls for the request's tools: the named one, all of them (parallel), or the first."""
    tools = [t for t in body.get("tools") or [] if t.get("type") == "function"]
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name")
        tools = [t for t in tools if t["function"].get("name") == wanted]
    elif body.get("parallel_tool_calls") is False or len(tools) < 2:
        tools = tools[:1]
    return [
        {
            "id": f"call_{number + 1}",
            "type": "function",
            "function": {
                "name": tool["function"]["name"],
                "arguments": json.dumps(sample(tool["function"].get("parameters") or {})),
            },
        }
        for number, tool in enumerate(tools[:3])
    ]


def count_tokens(text: str) -> int:
    return len(text.split()) if text else 0


def prompt_tokens(body: dict[str, Any]) -> int:
    size = len(json.dumps(body.get("messages") or [])) + len(json.dumps(body.get("tools") or []))
    return max(1, size // 4)


def pieces(text: str) -> list[str]:
    return re.findall(r"\s*\S+\s*", text) if text else []


def tiny_png(seed: str, size: int = 2) -> bytes:
    """A real (2x2, RGB) PNG whose colour depends on ``seed``."""
    red, green, blue = hashlib.sha256(seed.encode()).digest()[:3]
    rows = b"".join(b"\x00" + bytes([red, green, blue]) * size for _ in range(size))

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def vector(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector for ``text``."""
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        values.extend((byte - 127.5) / 127.5 for byte in digest)
        counter += 1
    values = values[:dimensions]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def is_reasoning_model(model: str) -> bool:
    return bool(re.match(r"^(o\d|gpt-5)", model)) and "-chat" not in model
