"""Anthropic Messages API adapter (``POST {base_url}/messages``).

`build_request` assembles the Anthropic request from the helpers in `anthropic_translate`;
this module makes the HTTP call and turns Anthropic's answer (a message, or a stream of named
SSE events) back into canonical form.

* Auth: ``x-api-key`` with ``anthropic-version: 2023-06-01`` (the documented pair; newer SDKs
  use a bearer token, which the API also takes).
* Usage in OpenAI semantics: ``prompt = input + cache_creation + cache_read``,
  ``cached = cache_read``, ``cache_write = cache_creation``, ``completion = output`` (thinking
  included; Anthropic reports no separate thinking count unless
  ``output_tokens_details.thinking_tokens`` is present).
* Thinking comes back as ``message.reasoning_content`` and, with signatures, as
  ``provider_metadata.anthropic.thinking`` (the shape an assistant message's
  ``thinking_blocks`` accepts on the next turn); the signatures are also cached by text hash.
* ``refusal`` maps to ``content_filter``; whatever text came with it stays in ``content``
  (no ``message.refusal``: the AI SDK would show the text twice).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..errors import CapabilityError, ProviderError, ProviderServerError, ProviderTimeout
from .anthropic_translate import (
    ANTHROPIC_VERSION,
    MAX_CACHE_BREAKPOINTS,
    THINKING_CACHE,
    Lookup,
    Plan,
    ThinkingCache,
    apply_response_format,
    apply_thinking,
    convert_messages,
    max_tokens_for,
    model_traits,
    to_tool,
    to_tool_choice,
)
from .base import (
    Chunk,
    Completion,
    EmbedResult,
    ImageResult,
    ToolCallDelta,
    UpstreamCall,
    Usage,
    error_for_status,
    iter_sse,
    open_stream,
    send,
)

if TYPE_CHECKING:
    from ..catalog import ModelInfo

NAME = "anthropic"
DEFAULT_BASE_URL = "https://api.anthropic.com/v1"


# -- request -------------------------------------------------------------------------------


def build_request(
    body: dict[str, Any],
    model: ModelInfo,
    upstream_model: str,
    *,
    stream: bool = False,
    signatures: Lookup | None = None,
) -> tuple[dict[str, Any], Plan]:
    """Translate one canonical chat body; returns the Anthropic payload and its `Plan`.

    ``signatures`` finds the signed thinking blocks for an echoed ``reasoning_content``.
    """
    traits = model_traits(model, upstream_model)
    plan = Plan()
    system, messages = convert_messages(body.get("messages") or [], signatures)
    payload: dict[str, Any] = {"model": upstream_model, "max_tokens": max_tokens_for(body, model)}
    tools = [to_tool(t, traits.structured) for t in body.get("tools") or []]
    choice = (
        to_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls")) if tools else None
    )
    if choice and choice["type"] in ("any", "tool") and traits.no_forced:
        name = choice.pop("name", None)  # keep only the named tool, let the model choose
        tools = [t for t in tools if name is None or t["name"] == name]
        choice["type"] = "auto"
    forced = bool(choice and choice["type"] in ("any", "tool"))
    apply_thinking(body, model, traits, payload, messages, plan, forced)
    if not plan.thinking and not traits.no_sampling:
        for key in ("temperature", "top_p", "top_k"):
            value = body.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                payload[key] = value
        if "temperature" in payload:  # OpenAI allows 0..2, Anthropic 0..1
            payload["temperature"] = min(max(float(payload["temperature"]), 0.0), 1.0)
    stops = body.get("stop")
    stops = [stops] if isinstance(stops, str) else stops or []
    stops = [s for s in stops if isinstance(s, str) and s.strip()]
    if stops:
        payload["stop_sequences"] = stops
    if isinstance(body.get("user"), str) and body["user"]:
        payload["metadata"] = {"user_id": body["user"]}
    tools, choice, hint = apply_response_format(body, payload, plan, tools, choice, traits)
    if hint:
        system.append({"type": "text", "text": hint})
    if tools:
        payload["tools"] = tools
        if choice:
            payload["tool_choice"] = choice
    payload["messages"] = messages
    if system:
        payload["system"] = system
    if body.get("cache") is True:
        apply_cache_flag(payload)
    _simplify(payload)
    if stream:
        payload["stream"] = True
    return payload, plan


def _blocks_with_cache(payload: dict[str, Any]) -> int:
    count = sum(1 for t in payload.get("tools") or [] if "cache_control" in t)
    count += sum(1 for b in payload.get("system") or [] if "cache_control" in b)
    for msg in payload.get("messages") or []:
        count += sum(1 for b in msg["content"] if "cache_control" in b)
    return count


def apply_cache_flag(payload: dict[str, Any]) -> None:
    """The hosted ``cache: true`` flag: breakpoints after the system prompt, the tools and the
    conversation so far, within Anthropic's limit of four."""
    targets: list[dict[str, Any]] = []
    if payload.get("system"):
        targets.append(payload["system"][-1])
    if payload.get("tools"):
        targets.append(payload["tools"][-1])
    if payload.get("messages"):
        cacheable = [
            b
            for b in payload["messages"][-1]["content"]
            if b.get("type") not in ("thinking", "redacted_thinking")
        ]
        if cacheable:
            targets.append(cacheable[-1])
    count = _blocks_with_cache(payload)
    for target in targets:
        if count >= MAX_CACHE_BREAKPOINTS:
            break
        if "cache_control" not in target:
            target["cache_control"] = {"type": "ephemeral"}
            count += 1


def _simplify(payload: dict[str, Any]) -> None:
    """Plain strings where no block needs more than text (what Anthropic's own docs show)."""
    system = payload.get("system")
    if system and all(set(b) == {"type", "text"} for b in system):
        payload["system"] = "\n\n".join(b["text"] for b in system)
    for msg in payload["messages"]:
        content = msg["content"]
        if len(content) == 1 and set(content[0]) == {"type", "text"}:
            msg["content"] = content[0]["text"]


# -- response ------------------------------------------------------------------------------

STOP_REASONS = {
    "end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
    "model_context_window_exceeded": "length", "tool_use": "tool_calls",
    "refusal": "content_filter",
}  # fmt: skip
# Anthropic error types → the HTTP status they come with (for errors inside a 200 stream).
ERROR_STATUS = {
    "invalid_request_error": 400, "authentication_error": 401, "billing_error": 402,
    "permission_error": 403, "not_found_error": 404, "request_too_large": 413,
    "rate_limit_error": 429, "api_error": 500, "overloaded_error": 529,
}  # fmt: skip


def error_from_body(data: dict[str, Any]) -> ProviderError:
    """The mapped error for an Anthropic error object (``event: error`` mid-stream)."""
    err = data.get("error") if isinstance(data.get("error"), dict) else {}
    kind = str(err.get("type") or "api_error")
    message = str(err.get("message") or kind)
    if kind == "timeout_error":
        return ProviderTimeout(
            f"{NAME} timed out while answering ({kind}: {message}).", provider=NAME
        )
    return error_for_status(NAME, ERROR_STATUS.get(kind, 500), message)


def usage_from(raw: dict[str, Any]) -> Usage:
    cache_write = int(raw.get("cache_creation_input_tokens") or 0)
    cache_read = int(raw.get("cache_read_input_tokens") or 0)
    details = raw.get("output_tokens_details") or {}
    return Usage(
        prompt_tokens=int(raw.get("input_tokens") or 0) + cache_write + cache_read,
        completion_tokens=int(raw.get("output_tokens") or 0),
        cached_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=int(details.get("thinking_tokens") or 0),
    )


def _metadata(
    usage: dict[str, Any], stop_reason: Any, stop_sequence: Any, thinking: list[dict[str, Any]]
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "cache_creation_input_tokens": int(usage.get("cache_creation_input_tokens") or 0),
        "cache_read_input_tokens": int(usage.get("cache_read_input_tokens") or 0),
        "cache_creation": usage.get("cache_creation"),
        "service_tier": usage.get("service_tier"),
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "thinking": thinking,
    }
    return {NAME: {k: v for k, v in meta.items() if v or k.endswith("input_tokens")}}


def _citation(citation: dict[str, Any], start: int, end: int) -> dict[str, Any] | None:
    if not isinstance(citation, dict) or not citation.get("url"):
        return None
    return {
        "type": "url_citation",
        "url_citation": {
            "start_index": start,
            "end_index": end,
            "url": citation["url"],
            "title": citation.get("title") or "",
        },
    }


def _finish(stop_reason: Any, has_tool_calls: bool) -> str:
    if has_tool_calls:
        return "tool_calls"
    finish = STOP_REASONS.get(str(stop_reason), "stop")
    return "stop" if finish == "tool_calls" else finish  # only the JSON tool was called


def translate_message(
    data: dict[str, Any], plan: Plan, cache: ThinkingCache = THINKING_CACHE
) -> Completion:
    """A whole Anthropic message → canonical `Completion`."""
    text = ""
    json_answer: str | None = None
    reasoning: list[str] = []
    thinking: list[dict[str, Any]] = []
    tool_calls: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for block in data.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            start = len(text)
            text += block.get("text") or ""
            for citation in block.get("citations") or []:
                note = _citation(citation, start, len(text))
                if note:
                    annotations.append(note)
        elif kind == "thinking":
            reasoning.append(block.get("thinking") or "")
            thinking.append({k: block.get(k) or "" for k in ("type", "thinking", "signature")})
        elif kind == "redacted_thinking":
            thinking.append({k: block.get(k) or "" for k in ("type", "data")})
        elif kind == "tool_use":
            arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
            if plan.json_tool and block.get("name") == plan.json_tool:
                json_answer = arguments
                continue
            tool_calls.append(
                {
                    "id": block.get("id") or f"toolu_{len(tool_calls)}",
                    "type": "function",
                    "function": {"name": block.get("name") or "", "arguments": arguments},
                }
            )
    content = json_answer if json_answer is not None else text
    message: dict[str, Any] = {"role": "assistant", "content": content or None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    reasoning_text = "\n\n".join(r for r in reasoning if r)
    if reasoning_text:
        message["reasoning_content"] = reasoning_text
        cache.put(reasoning_text, thinking)
    if annotations and json_answer is None:
        message["annotations"] = annotations
    raw_usage = data.get("usage") or {}
    return Completion(
        message=message,
        finish_reason=_finish(data.get("stop_reason"), bool(tool_calls)),
        usage=usage_from(raw_usage),
        provider_metadata=_metadata(
            raw_usage, data.get("stop_reason"), data.get("stop_sequence"), thinking
        ),
        upstream_id=data.get("id"),
    )


class StreamTranslator:
    """Turns Anthropic's named stream events into canonical `Chunk`s, keeping the state
    (blocks by index, tool-call numbering, usage) that the final chunks need."""

    def __init__(self, plan: Plan, cache: ThinkingCache = THINKING_CACHE) -> None:
        self.plan = plan
        self.cache = cache
        self.blocks: dict[int, dict[str, Any]] = {}
        self.tool_count = 0
        self.usage: dict[str, Any] = {}
        self.stop_reason: Any = None
        self.stop_sequence: Any = None
        self.reasoning: list[str] = []
        self.thinking: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []
        self.text_len = 0
        self.done = False

    def feed(self, kind: str, data: dict[str, Any]) -> list[Chunk]:
        if kind == "message_start":
            self.usage.update((data.get("message") or {}).get("usage") or {})
        elif kind == "content_block_start":
            return self._start(int(data.get("index", 0)), data.get("content_block") or {})
        elif kind == "content_block_delta":
            return self._delta(int(data.get("index", 0)), data.get("delta") or {})
        elif kind == "content_block_stop":
            return self._stop(int(data.get("index", 0)))
        elif kind == "message_delta":
            delta = data.get("delta") or {}
            self.stop_reason = delta.get("stop_reason") or self.stop_reason
            self.stop_sequence = delta.get("stop_sequence") or self.stop_sequence
            self.usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
        elif kind == "message_stop":
            self.done = True
        return []  # ping and unknown events carry nothing for the client

    def _start(self, index: int, block: dict[str, Any]) -> list[Chunk]:
        kind = block.get("type")
        state: dict[str, Any] = {"type": kind, "args": False, "notes": []}
        self.blocks[index] = state
        if kind == "text":
            return self._text(block.get("text") or "")
        if kind == "thinking":
            state.update(thinking="", signature=block.get("signature") or "")
            chunks = []
            if any(self.reasoning):  # separate consecutive thinking blocks like whole responses do
                chunks.append(Chunk(reasoning="\n\n"))
            self.reasoning.append("")
            if block.get("thinking"):
                chunks += self._reasoning(state, block["thinking"])
            return chunks
        if kind == "redacted_thinking":
            self.thinking.append({"type": "redacted_thinking", "data": block.get("data") or ""})
        elif kind == "tool_use":
            if self.plan.json_tool and block.get("name") == self.plan.json_tool:
                state["type"] = "json"
                return []
            state["tool_index"] = self.tool_count
            self.tool_count += 1
            call_id = block.get("id") or f"toolu_{state['tool_index']}"
            first = ToolCallDelta(state["tool_index"], call_id, block.get("name") or "", "")
            return [Chunk(tool_calls=[first])]
        return []

    def _text(self, text: str) -> list[Chunk]:
        self.text_len += len(text)
        return [Chunk(content=text)] if text else []

    def _reasoning(self, state: dict[str, Any], text: str) -> list[Chunk]:
        state["thinking"] += text
        self.reasoning[-1] += text
        return [Chunk(reasoning=text)]

    def _delta(self, index: int, delta: dict[str, Any]) -> list[Chunk]:
        state = self.blocks.get(index) or {"type": None}
        kind = delta.get("type")
        if kind == "text_delta":
            return self._text(delta.get("text") or "")
        if kind == "thinking_delta" and state["type"] == "thinking":
            return self._reasoning(state, delta.get("thinking") or "")
        if kind == "signature_delta" and state["type"] == "thinking":
            state["signature"] += delta.get("signature") or ""
        elif kind == "input_json_delta":
            partial = delta.get("partial_json") or ""
            if not partial:
                return []
            state["args"] = True
            if state["type"] == "json":
                return [Chunk(content=partial)]
            if state["type"] == "tool_use":
                return [Chunk(tool_calls=[ToolCallDelta(state["tool_index"], arguments=partial)])]
        elif kind == "citations_delta":  # it precedes the text it covers: placed at block stop
            note = _citation(delta.get("citation") or {}, self.text_len, self.text_len)
            if note and state["type"] == "text":
                state["notes"].append(note)
        return []

    def _stop(self, index: int) -> list[Chunk]:
        state = self.blocks.get(index) or {"type": None}
        if state["type"] == "text":
            for note in state["notes"]:
                note["url_citation"]["end_index"] = self.text_len
                self.annotations.append(note)
        elif state["type"] == "thinking":
            self.thinking.append(
                {"type": "thinking", "thinking": state["thinking"], "signature": state["signature"]}
            )
        elif state["type"] in ("tool_use", "json") and not state["args"]:
            state["args"] = True  # no deltas means an empty input object
            if state["type"] == "json":
                return [Chunk(content="{}")]
            return [Chunk(tool_calls=[ToolCallDelta(state["tool_index"], arguments="{}")])]
        return []

    def final(self) -> list[Chunk]:
        """The finish chunk (with any citations), then the one chunk with usage and metadata."""
        reasoning_text = "\n\n".join(r for r in self.reasoning if r)
        if reasoning_text:
            self.cache.put(reasoning_text, self.thinking)
        finish = _finish(self.stop_reason, self.tool_count > 0)
        metadata = _metadata(self.usage, self.stop_reason, self.stop_sequence, self.thinking)
        return [
            Chunk(finish_reason=finish, annotations=self.annotations or None),
            Chunk(usage=usage_from(self.usage), provider_metadata=metadata),
        ]


def _url(call: UpstreamCall) -> str:
    return f"{(call.base_url or DEFAULT_BASE_URL).rstrip('/')}/messages"


def _headers(call: UpstreamCall) -> dict[str, str]:
    return {
        "x-api-key": call.credential or "",
        "anthropic-version": ANTHROPIC_VERSION,
        "content-type": "application/json",
    }


def _parse(raw: str | bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ProviderServerError(
            f"{NAME} sent {what} that is not JSON: {str(raw)[:200]!r}", provider=NAME
        ) from exc
    if not isinstance(data, dict):
        raise ProviderServerError(f"{NAME} sent {what} that is not a JSON object.", provider=NAME)
    if data.get("type") == "error":
        raise error_from_body(data)
    return data


class AnthropicAdapter:
    """Chat only: Anthropic has no image generation or embeddings endpoint."""

    name = NAME

    def __init__(self, cache: ThinkingCache = THINKING_CACHE) -> None:
        self.cache = cache

    async def complete(self, call: UpstreamCall) -> Completion:
        payload, plan = build_request(
            call.body, call.model, call.upstream_model, signatures=self.cache.get
        )
        response = await send(NAME, call, "POST", _url(call), json=payload, headers=_headers(call))
        return translate_message(_parse(response.content, "a response"), plan, self.cache)

    async def stream(self, call: UpstreamCall) -> AsyncIterator[Chunk]:
        payload, plan = build_request(
            call.body, call.model, call.upstream_model, stream=True, signatures=self.cache.get
        )
        response = await open_stream(NAME, call, _url(call), json=payload, headers=_headers(call))
        translator = StreamTranslator(plan, self.cache)
        try:
            async for event, raw in iter_sse(NAME, response, call.timeout):
                data = _parse(raw, "a stream event")  # raises on `event: error`
                for chunk in translator.feed(event or str(data.get("type")), data):
                    yield chunk
                if translator.done:
                    break
        finally:
            await response.aclose()
        if not translator.done:
            raise ProviderServerError(
                f"{NAME} ended the stream before message_stop.", provider=NAME
            )
        for chunk in translator.final():
            yield chunk

    async def images(self, call: UpstreamCall) -> ImageResult:
        raise CapabilityError(
            f"{call.model.id} cannot generate images: Anthropic has no image generation API."
        )

    async def embed(self, call: UpstreamCall) -> EmbedResult:
        raise CapabilityError(
            f"{call.model.id} cannot create embeddings: Anthropic has no embeddings API."
        )


ADAPTER = AnthropicAdapter()
