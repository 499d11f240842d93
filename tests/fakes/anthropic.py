"""A fake Anthropic Messages API: ``POST /v1/messages`` (also ``/messages``).

It checks requests the way the real API does where an adapter could get it wrong (unknown
top-level fields, roles, empty text, tool_use/tool_result pairing, thinking signatures and
budgets, thinking with forced tools or sampling, the current generations' refusal of sampling
parameters and budget thinking, cache breakpoints) and answers deterministically from the
request:

* ``output_config.format`` → the text is JSON built from the schema.
* tools → ``tool_use`` for a forced tool, or for every tool named in the last user text
  (``tool_choice: any`` with none named → the first tool); otherwise ``Echo: <text>``
  (or ``Tool result: <content>`` after tool results).
* ``thinking`` enabled or adaptive → a signed thinking block first (the signature is a hash of
  the text, so only the exact text comes back valid); ``redacted`` in the prompt adds a
  redacted block.
* ``refuse`` → stop_reason ``refusal``; ``cite`` → a text block with a web citation; stop
  sequences and ``max_tokens`` (counted in words) cut the text.
* cache_control → the prefix up to the last breakpoint is written on first sight and read after.

Streams use named events (message_start, content_block_*, ping, message_delta, message_stop).
`FakeState` failures: status (+ body, headers), delay, malformed body, and
``stream_error_after=N`` (N events, then ``event: error`` overloaded_error).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from . import Failure, FakeState

ALLOWED_FIELDS = {
    "model", "messages", "max_tokens", "system", "temperature", "top_p", "top_k",
    "stop_sequences", "stream", "tools", "tool_choice", "thinking", "metadata",
    "service_tier", "output_config",
}  # fmt: skip
ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
    403: "permission_error", 404: "not_found_error", 413: "request_too_large",
    429: "rate_limit_error", 500: "api_error", 503: "api_error", 504: "timeout_error",
    529: "overloaded_error",
}  # fmt: skip
IMAGE_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}
USER_BLOCKS = {"text", "image", "document", "tool_result"}
ASSISTANT_BLOCKS = {"text", "tool_use", "thinking", "redacted_thinking"}
# Model rules the fake enforces (current generations): no custom sampling, no budget thinking.
NO_SAMPLING = r"claude-(?:opus|sonnet|haiku|fable)-5|claude-opus-4-[78]"
ADAPTIVE_ONLY = r"claude-(?:opus|sonnet|haiku)-5-5|claude-fable-5"
REDACTED = base64.b64encode(b"redacted thinking").decode()


def sign(thinking: str) -> str:
    """The fake's thinking signature: only the exact text verifies."""
    return "sig_" + hashlib.sha256(thinking.encode()).hexdigest()[:24]


def error_body(status: int, message: str) -> dict[str, Any]:
    kind = ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fake"}


def _tokens(text: str) -> int:
    return max(1, len(text) // 4) if text else 0


def _text_of(content: Any) -> str:
    """All text in a message's content, tool results included."""
    if isinstance(content, str):
        return content
    parts = []
    for block in content or []:
        if block.get("type") == "text":
            parts.append(block["text"])
        elif block.get("type") == "tool_result":
            parts.append(_text_of(block.get("content") or ""))
    return " ".join(parts)


def example(schema: Any, name: str = "") -> Any:
    """A deterministic value that matches a (simple) JSON schema."""
    if not isinstance(schema, dict):
        return None
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return example(schema[key][0], name)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties") or {}
        return {key: example(sub, key) for key, sub in props.items()}
    if kind == "array":
        return [example(schema.get("items") or {"type": "string"}, name)]
    return {"string": f"example {name or 'text'}", "integer": 1, "number": 1.5,
            "boolean": True}.get(kind)  # fmt: skip


# -- validation ----------------------------------------------------------------------------


def validate(body: Any) -> str | None:
    """The first problem the real API would report, or None."""
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    for key in body:
        if key not in ALLOWED_FIELDS:
            return f"{key}: Extra inputs are not permitted"
    if not isinstance(body.get("model"), str):
        return "model: Field required"
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        return "max_tokens: Field required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for problem in (
        _check_system(body.get("system")),
        _check_messages(messages),
        _check_tools(body),
        _check_thinking(body, messages),
        _check_sampling(body),
        _check_cache(body),
    ):
        if problem:
            return problem
    if set(body.get("output_config") or {}) - {"format", "effort"}:
        return "output_config: Extra inputs are not permitted"
    fmt = (body.get("output_config") or {}).get("format")
    if fmt is not None and (
        fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict)
    ):
        return "output_config.format: expected {type: json_schema, schema}"
    if "metadata" in body and set(body["metadata"]) - {"user_id"}:
        return "metadata: only user_id is allowed"
    return None


def _check_system(system: Any) -> str | None:
    if system is None or isinstance(system, str):
        return None
    if not isinstance(system, list) or any(
        b.get("type") != "text" or not b.get("text") for b in system
    ):
        return "system: must be a string or a list of non-empty text blocks"
    return None


def _check_block(block: dict[str, Any], where: str) -> str | None:
    kind = block.get("type")
    if kind == "text" and not block.get("text"):
        return f"{where}: text content blocks must be non-empty"
    if kind == "image":
        source = block.get("source") or {}
        if source.get("type") == "base64":
            if source.get("media_type") not in IMAGE_TYPES or not source.get("data"):
                return f"{where}: invalid base64 image source"
        elif source.get("type") != "url" or not str(source.get("url", "")).startswith("http"):
            return f"{where}: invalid image source"
    if kind == "thinking" and block.get("signature") != sign(block.get("thinking", "")):
        return f"{where}: Invalid `signature` in `thinking` block"
    if kind == "tool_use" and not isinstance(block.get("input"), dict):
        return f"{where}: tool_use.input must be an object"
    return None


def _check_messages(messages: list[Any]) -> str | None:
    previous_uses: set[str] = set()
    for i, msg in enumerate(messages):
        where = f"messages.{i}"
        role = msg.get("role")
        if role not in ("user", "assistant"):
            return f"{where}.role: Input should be 'user' or 'assistant'"
        content = msg.get("content")
        if isinstance(content, str):
            if not content:
                return f"{where}: text content blocks must be non-empty"
            blocks: list[dict[str, Any]] = []
        elif isinstance(content, list) and content:
            blocks = content
        else:
            return f"{where}.content: must be a non-empty string or list"
        allowed = USER_BLOCKS if role == "user" else ASSISTANT_BLOCKS
        for j, block in enumerate(blocks):
            if block.get("type") not in allowed:
                return f"{where}.content.{j}.type: {block.get('type')!r} is not allowed for {role}"
            problem = _check_block(block, f"{where}.content.{j}")
            if problem:
                return problem
        results = [b for b in blocks if b.get("type") == "tool_result"]
        if results:
            if blocks[: len(results)] != results:
                return f"{where}: tool_result blocks must come first in the content"
            for block in results:
                if block.get("tool_use_id") not in previous_uses:
                    return f"{where}: unexpected `tool_use_id` {block.get('tool_use_id')!r}"
        if previous_uses and role == "user":
            missing = previous_uses - {b.get("tool_use_id") for b in results}
            if missing:
                return f"{where}: tool_use ids without tool_result blocks: {sorted(missing)}"
        previous_uses = {b["id"] for b in blocks if b.get("type") == "tool_use"}
    tail = _text_of(messages[-1]["content"])
    if messages[-1]["role"] == "assistant" and tail != tail.rstrip():
        return "final assistant content cannot end with trailing whitespace"
    return None


def _check_tools(body: dict[str, Any]) -> str | None:
    tools = body.get("tools")
    names = set()
    for i, tool in enumerate(tools or []):
        if not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", str(tool.get("name", ""))):
            return f"tools.{i}.name: invalid tool name"
        schema = tool.get("input_schema")
        if "type" not in tool and (not isinstance(schema, dict) or schema.get("type") != "object"):
            return f"tools.{i}.input_schema.type: Input should be 'object'"
        if set(tool) - {"name", "description", "input_schema", "cache_control", "strict", "type"}:
            return f"tools.{i}: Extra inputs are not permitted"
        names.add(tool["name"])
    choice = body.get("tool_choice")
    if choice is not None:
        if not tools:
            return "tool_choice: may only be specified while providing tools"
        if choice.get("type") not in ("auto", "any", "tool", "none"):
            return "tool_choice.type: invalid"
        if choice["type"] == "tool" and choice.get("name") not in names:
            return f"tool_choice.name: no tool named {choice.get('name')!r}"
    return None


def _thinking_on(body: dict[str, Any]) -> bool:
    return (body.get("thinking") or {}).get("type") in ("enabled", "adaptive")


def _check_thinking(body: dict[str, Any], messages: list[dict[str, Any]]) -> str | None:
    thinking = body.get("thinking") or {}
    if thinking and thinking.get("type") not in ("enabled", "adaptive", "disabled"):
        return "thinking.type: Input should be 'enabled', 'adaptive' or 'disabled'"
    if thinking.get("type") == "enabled":
        if re.search(ADAPTIVE_ONLY, body["model"]):
            return f"thinking.type.enabled is not supported for {body['model']}; use adaptive"
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024:
            return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
        if budget >= body["max_tokens"]:
            return "`max_tokens` must be greater than `thinking.budget_tokens`"
    effort = (body.get("output_config") or {}).get("effort")
    if effort is not None and effort not in ("low", "medium", "high", "xhigh", "max"):
        return "output_config.effort: invalid value"
    if not _thinking_on(body):
        return None
    if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
        return "Thinking may not be enabled when tool_choice forces tool use."
    last, before = messages[-1], messages[-2] if len(messages) > 1 else None
    if before and isinstance(last["content"], list) and isinstance(before["content"], list):
        in_loop = any(b.get("type") == "tool_result" for b in last["content"])
        first = before["content"][0].get("type")
        if in_loop and first not in ("thinking", "redacted_thinking"):
            return (
                "Expected `thinking` or `redacted_thinking`, but found `tool_use`. When `thinking` "
                "is enabled, a final `assistant` message must start with a thinking block."
            )
    return None


def _check_sampling(body: dict[str, Any]) -> str | None:
    temperature = body.get("temperature")
    if temperature is not None and not 0 <= temperature <= 1:
        return "temperature: Input should be less than or equal to 1"
    sampling = {"temperature", "top_p", "top_k"} & set(body)
    if sampling and re.search(NO_SAMPLING, body["model"]):
        return f"{sorted(sampling)[0]} is not supported for {body['model']}"
    if _thinking_on(body):
        if temperature not in (None, 1) or "top_k" in body:
            return "temperature/top_k may not be changed when thinking is enabled"
        if body.get("top_p") is not None and body["top_p"] < 0.95:
            return "top_p must be at least 0.95 when thinking is enabled"
    stops = body.get("stop_sequences")
    if stops is not None and not all(isinstance(s, str) and s.strip() for s in stops):
        return "stop_sequences: each must contain non-whitespace"
    return None


def _segments(body: dict[str, Any]) -> list[tuple[Any, bool]]:
    """Prompt pieces in cache order (tools, system, messages) with their breakpoint flag."""
    out: list[tuple[Any, bool]] = [(t, "cache_control" in t) for t in body.get("tools") or []]
    system = body.get("system")
    if isinstance(system, str):
        out.append((system, False))
    else:
        out += [(b, "cache_control" in b) for b in system or []]
    for msg in body["messages"]:
        if isinstance(msg["content"], str):
            out.append((msg["content"], False))
        else:
            out += [(b, "cache_control" in b) for b in msg["content"]]
    return out


def _check_cache(body: dict[str, Any]) -> str | None:
    marks = [s for s, flagged in _segments(body) if flagged]
    if len(marks) > 4:
        return f"A maximum of 4 blocks with cache_control may be provided. Found {len(marks)}."
    for block in marks:
        if block["cache_control"].get("type") != "ephemeral":
            return "cache_control.type: Input should be 'ephemeral'"
    return None


# -- answers -------------------------------------------------------------------------------


def _segment_tokens(segment: Any) -> int:
    if isinstance(segment, dict) and segment.get("type") == "image":
        return 100
    return _tokens(segment if isinstance(segment, str) else json.dumps(segment, sort_keys=True))


def _usage(body: dict[str, Any], cache_seen: set[str], output_tokens: int) -> dict[str, Any]:
    segments = _segments(body)
    total = sum(_segment_tokens(s) for s, _ in segments)
    marks = [i for i, (_, flagged) in enumerate(segments) if flagged]
    write = read = 0
    if marks:
        prefix = segments[: marks[-1] + 1]
        prefix_tokens = sum(_segment_tokens(s) for s, _ in prefix)
        key = hashlib.sha256(
            json.dumps([s for s, _ in prefix], sort_keys=True, default=str).encode()
        ).hexdigest()
        if key in cache_seen:
            read = prefix_tokens
        else:
            write = prefix_tokens
            cache_seen.add(key)
    return {
        "input_tokens": total - write - read,
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read,
        "cache_creation": {"ephemeral_5m_input_tokens": write, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _tool_uses(body: dict[str, Any], prompt: str, after_results: bool) -> list[dict[str, Any]]:
    tools = [t for t in body.get("tools") or [] if "input_schema" in t]
    choice = body.get("tool_choice") or {"type": "auto"}
    if not tools or choice["type"] == "none":
        return []
    if choice["type"] == "tool":
        chosen = [t for t in tools if t["name"] == choice["name"]]
    else:
        chosen = [] if after_results else [t for t in tools if t["name"].lower() in prompt.lower()]
        if not chosen and choice["type"] == "any":
            chosen = tools[:1]
    if choice.get("disable_parallel_tool_use"):
        chosen = chosen[:1]
    return [
        {"type": "tool_use", "id": f"toolu_{i + 1:02d}", "name": t["name"],
         "input": example(t["input_schema"])}
        for i, t in enumerate(chosen)
    ]  # fmt: skip


def answer(body: dict[str, Any], cache_seen: set[str]) -> dict[str, Any]:
    """The deterministic Anthropic message for a valid request."""
    last = body["messages"][-1]
    prompt = _text_of(last["content"])
    after_results = isinstance(last["content"], list) and any(
        b.get("type") == "tool_result" for b in last["content"]
    )
    blocks: list[dict[str, Any]] = []
    if _thinking_on(body):
        thought = f"Considering: {prompt[:60]}"
        blocks.append({"type": "thinking", "thinking": thought, "signature": sign(thought)})
        if "redacted" in prompt:
            blocks.append({"type": "redacted_thinking", "data": REDACTED})
    stop_reason, stop_sequence = "end_turn", None
    fmt = (body.get("output_config") or {}).get("format")
    uses = [] if fmt else _tool_uses(body, prompt, after_results)
    if fmt:
        blocks.append({"type": "text", "text": json.dumps(example(fmt["schema"]))})
    elif uses:
        blocks += uses
        stop_reason = "tool_use"
    elif "refuse" in prompt:
        blocks.append({"type": "text", "text": "I can't help with that."})
        stop_reason = "refusal"
    else:
        text = f"Tool result: {prompt}" if after_results else f"Echo: {prompt}"
        for stop in body.get("stop_sequences") or []:
            if stop in text:
                text, stop_reason, stop_sequence = text[: text.index(stop)], "stop_sequence", stop
                break
        words = text.split(" ")
        if len(words) > body["max_tokens"]:
            text, stop_reason = " ".join(words[: body["max_tokens"]]), "max_tokens"
        block: dict[str, Any] = {"type": "text", "text": text}
        if "cite" in prompt:
            block["citations"] = [
                {"type": "web_search_result_location", "url": "https://example.com/source",
                 "title": "Example source", "cited_text": text[:20], "encrypted_index": "eA=="}
            ]  # fmt: skip
        blocks.append(block)
    output = json.dumps([b.get("text") or b.get("thinking") or b.get("input") for b in blocks])
    return {
        "id": "msg_fake_"
        + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12],
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": blocks,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": _usage(body, cache_seen, _tokens(output)),
    }


def _pieces(text: str, size: int = 8) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def events(message: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The named SSE events that stream ``message``."""
    usage = dict(message["usage"])
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None,
             "usage": {**usage, "output_tokens": 1}}  # fmt: skip
    out: list[tuple[str, dict[str, Any]]] = [("message_start", {"message": start})]
    for index, block in enumerate(message["content"]):
        kind = block["type"]
        deltas: list[dict[str, Any]] = []
        if kind == "text":
            opening: dict[str, Any] = {"type": "text", "text": ""}
            deltas += [
                {"type": "citations_delta", "citation": c} for c in block.get("citations", [])
            ]
            deltas += [{"type": "text_delta", "text": p} for p in _pieces(block["text"])]
        elif kind == "thinking":
            opening = {"type": "thinking", "thinking": "", "signature": ""}
            deltas += [
                {"type": "thinking_delta", "thinking": p} for p in _pieces(block["thinking"])
            ]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        elif kind == "tool_use":
            opening = {**block, "input": {}}
            arguments = json.dumps(block["input"])
            deltas.append({"type": "input_json_delta", "partial_json": ""})
            if arguments != "{}":
                half = len(arguments) // 2
                deltas += [{"type": "input_json_delta", "partial_json": p}
                           for p in (arguments[:half], arguments[half:])]  # fmt: skip
        else:
            opening = block
        out.append(("content_block_start", {"index": index, "content_block": opening}))
        if index == 0:
            out.append(("ping", {}))
        out += [("content_block_delta", {"index": index, "delta": d}) for d in deltas]
        out.append(("content_block_stop", {"index": index}))
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
    out.append(
        ("message_delta", {"delta": delta, "usage": {"output_tokens": usage["output_tokens"]}})
    )
    out.append(("message_stop", {}))
    return out


def _frame(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode()


def _failure_response(failure: Failure) -> Response:
    status = failure.status or 500
    body = (
        failure.body if failure.body is not None else error_body(status, f"Fake failure {status}")
    )
    if isinstance(body, str | bytes):
        return Response(body, status_code=status, headers=failure.headers)
    return JSONResponse(body, status_code=status, headers=failure.headers)


def create_app(state: FakeState) -> Starlette:
    """The fake Anthropic API over ``state`` (requests recorded, failures scripted)."""
    cache_seen: set[str] = set()

    async def messages(request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        state.requests.append(
            {"path": request.url.path, "headers": dict(request.headers), "json": body}
        )
        failure = state.take_failure()
        if failure and failure.delay:
            await asyncio.sleep(failure.delay)
        if failure and failure.status:
            return _failure_response(failure)
        if failure and failure.malformed:
            return Response(b"<html>this is not json", media_type="application/json")
        auth = request.headers.get("x-api-key") or request.headers.get("authorization", "")[7:]
        if not auth:
            return JSONResponse(error_body(401, "x-api-key header is required"), status_code=401)
        if not request.headers.get("anthropic-version"):
            return JSONResponse(
                error_body(400, "anthropic-version header is required"), status_code=400
            )
        problem = validate(body)
        if problem:
            return JSONResponse(error_body(400, problem), status_code=400)
        message = answer(body, cache_seen)
        if not body.get("stream"):
            return JSONResponse(message, headers={"request-id": "req_fake"})
        cut = failure.stream_error_after if failure else None

        async def frames() -> Any:
            for n, (name, data) in enumerate(events(message)):
                if cut is not None and n >= cut:
                    overloaded = error_body(529, "Overloaded")
                    yield _frame("error", {"error": overloaded["error"]})
                    return
                yield _frame(name, data)
                await asyncio.sleep(0)

        return StreamingResponse(frames(), media_type="text/event-stream")

    routes = [Route(path, messages, methods=["POST"]) for path in ("/v1/messages", "/messages")]
    return Starlette(routes=routes)
