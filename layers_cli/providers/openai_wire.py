"""Request and response translation for OpenAI-compatible upstreams.

The canonical request already *is* a Chat Completions body, so translating means filtering:
each upstream speaks its own dialect of the format (which fields it accepts, whether it knows
the ``developer`` role, whether it wants ``stream_options``, how it counts reasoning tokens).
A `Dialect` records those differences so one engine (`openai_compat`) serves them all.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from ..errors import ProviderError
from ..tokens import estimate_messages_tokens, estimate_text_tokens
from .base import Usage, error_for_status

# Request fields OpenAI accepts whose results a canonical Completion can carry.
OPENAI_FIELDS = frozenset(
    {
        "messages",
        "stop",
        "seed",
        "temperature",
        "top_p",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "user",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "reasoning_effort",
        "verbosity",
        "service_tier",
        "store",
        "prediction",
        "web_search_options",
        "prompt_cache_key",
        "safety_identifier",
        "functions",
        "function_call",
    }
)
# Set by the engine itself, never copied from the client's body.
MANAGED = frozenset({"model", "stream", "stream_options", "max_tokens", "max_completion_tokens"})
# Layers' own (hosted-service) fields, and fields whose results a Completion cannot carry
# (several choices, logprobs, audio output): never forwarded, not even to lenient upstreams.
DROPPED = frozenset(
    {
        "metadata",
        "cache",
        "thinking",
        "layers",
        "fallbacks",
        "n",
        "logprobs",
        "top_logprobs",
        "modalities",
        "audio",
        "stream_mode",
    }
)
MESSAGE_FIELDS = ("role", "content", "name", "tool_calls", "tool_call_id")
IMAGE_FIELDS = frozenset(
    {
        "prompt",
        "n",
        "size",
        "quality",
        "style",
        "background",
        "moderation",
        "output_format",
        "output_compression",
        "user",
    }
)

DEEPSEEK_FIELDS = frozenset(
    {
        "messages",
        "stop",
        "temperature",
        "top_p",
        "presence_penalty",
        "frequency_penalty",
        "tools",
        "tool_choice",
        "response_format",
        "reasoning_effort",
    }
)
# Mistral answers 422 "Extra inputs are not permitted" to anything else (stream_options too).
MISTRAL_FIELDS = frozenset(
    {
        "messages",
        "stop",
        "seed",
        "temperature",
        "top_p",
        "presence_penalty",
        "frequency_penalty",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "prediction",
        "prompt_mode",
        "safe_prompt",
    }
)


@dataclass(frozen=True)
class Dialect:
    """How one OpenAI-compatible upstream departs from OpenAI's own API."""

    # accepted top-level fields; None forwards unknown ones too (user-declared upstreams,
    # where the AI SDK's providerOptions extras such as top_k are what the user wants)
    fields: frozenset[str] | None = OPENAI_FIELDS
    renames: tuple[tuple[str, str], ...] = ()
    stream_options: bool = True  # accepts stream_options.include_usage
    developer_role: bool = False  # understands role "developer" (else sent as "system")
    keep_reasoning_content: bool = False  # wants earlier reasoning echoed back (DeepSeek)
    thinking: bool = False  # takes {"thinking": {"type": "enabled"|"disabled"}}
    json_schema: bool = True  # else json_schema response formats degrade to json_object
    # completion_tokens excludes reasoning_tokens (True), includes it (False), or unknown
    # (None: decided from total_tokens)
    reasoning_excluded: bool | None = None
    image_fields: frozenset[str] = IMAGE_FIELDS


DIALECTS: dict[str, Dialect] = {
    "openai": Dialect(developer_role=True, reasoning_excluded=False),
    "xai": Dialect(
        fields=OPENAI_FIELDS | {"search_parameters"},
        reasoning_excluded=True,  # "reasoning_tokens ... separated from the completion_tokens"
        image_fields=frozenset({"prompt", "n", "user"}),  # no size/quality/style
    ),
    "deepseek": Dialect(
        fields=DEEPSEEK_FIELDS,
        keep_reasoning_content=True,  # thinking-mode tool turns 400 without it
        thinking=True,
        json_schema=False,
    ),
    "mistral": Dialect(
        fields=MISTRAL_FIELDS, renames=(("seed", "random_seed"),), stream_options=False
    ),
}
GENERIC = Dialect(fields=None)


def build_chat_body(
    body: dict[str, Any], upstream_model: str, dialect: Dialect, *, stream: bool
) -> dict[str, Any]:
    """The upstream request body for a canonical chat body."""
    out: dict[str, Any] = {"model": upstream_model}
    for key, value in body.items():
        if key in MANAGED or key in DROPPED or value is None:
            continue
        if dialect.fields is not None and key not in dialect.fields:
            continue
        out[key] = value
    out["messages"] = convert_messages(body.get("messages") or [], dialect)
    if out.get("tools"):
        out["tools"] = convert_tools(out["tools"])
    else:  # OpenAI 400s on "tools": [] and on tool settings without tools
        for key in ("tools", "tool_choice", "parallel_tool_calls"):
            out.pop(key, None)
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if limit:
        out["max_tokens"] = limit
    fmt = out.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and not dialect.json_schema:
        out["response_format"] = {"type": "json_object"}
    thinking = body.get("thinking")
    if dialect.thinking and isinstance(thinking, dict) and thinking.get("type"):
        out["thinking"] = {"type": thinking["type"]}
    for old, new in dialect.renames:
        if old in out:
            out[new] = out.pop(old)
    if stream:
        out["stream"] = True
        if dialect.stream_options:
            out["stream_options"] = {"include_usage": True}
    return out


def convert_messages(messages: list[dict[str, Any]], dialect: Dialect) -> list[dict[str, Any]]:
    """Keep only the message fields every compatible upstream knows.

    Strips ``reasoning_content`` (the AI SDK echoes it; OpenAI rejects unknown message
    fields) unless the upstream needs it back, and ``cache_control`` (Anthropic-style).
    """
    out = []
    for message in messages:
        role = message.get("role")
        if role == "developer" and not dialect.developer_role:
            role = "system"
        item: dict[str, Any] = {"role": role}
        for key in MESSAGE_FIELDS[1:]:
            if message.get(key) is not None:
                item[key] = message[key]
        if "content" in item:
            item["content"] = convert_content(item["content"])
        if role == "assistant":
            if item.get("tool_calls"):
                item["tool_calls"] = [_tool_call(call) for call in item["tool_calls"]]
                item.setdefault("content", None)
            elif item.get("content") is None:
                # an echoed refusal keeps its text: not every upstream knows the field
                item["content"] = message.get("refusal") or ""
            reasoning = message.get("reasoning_content")
            if dialect.keep_reasoning_content and isinstance(reasoning, str) and reasoning:
                item["reasoning_content"] = reasoning
        out.append(item)
    return out


def convert_content(content: Any) -> Any:
    """Content parts without Layers/Anthropic-only keys (``cache_control``)."""
    if not isinstance(content, list):
        return content
    parts = []
    for part in content:
        if not isinstance(part, dict):
            parts.append({"type": "text", "text": str(part)})
            continue
        kind = part.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": part.get("text", "")})
        elif kind == "image_url":
            image = part.get("image_url")
            image = {"url": image} if isinstance(image, str) else dict(image or {})
            parts.append({"type": "image_url", "image_url": image})
        else:
            parts.append({k: v for k, v in part.items() if k != "cache_control"})
    return parts


def _tool_call(call: dict[str, Any]) -> dict[str, Any]:
    fn = call.get("function") or {}
    arguments = fn.get("arguments", "")
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments)
    return {
        "id": call.get("id") or new_call_id(),
        "type": "function",
        "function": {"name": fn.get("name", ""), "arguments": arguments},
    }


def convert_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for tool in tools:
        if tool.get("type") != "function" or not isinstance(tool.get("function"), dict):
            out.append({k: v for k, v in tool.items() if k != "cache_control"})
            continue
        fn = tool["function"]
        spec = {key: fn[key] for key in ("name", "description", "parameters") if key in fn}
        if fn.get("strict") is not None:
            spec["strict"] = fn["strict"]
        out.append({"type": "function", "function": spec})
    return out


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


# ---------------------------------------------------------------- responses


def split_content(content: Any) -> tuple[str | None, str]:
    """``(text, reasoning)`` from a message/delta ``content``.

    Content is a string (OpenAI) or, from Mistral's reasoning models, a list of ``text``
    and ``thinking`` parts.
    """
    if content is None or isinstance(content, str):
        return content, ""
    if not isinstance(content, list):
        return str(content), ""
    text, reasoning = [], []
    for part in content:
        if isinstance(part, str):
            text.append(part)
        elif isinstance(part, dict) and part.get("type") == "thinking":
            thought = part.get("thinking")
            if isinstance(thought, list):
                reasoning.extend(p.get("text", "") for p in thought if isinstance(p, dict))
            elif isinstance(thought, str):
                reasoning.append(thought)
        elif isinstance(part, dict) and isinstance(part.get("text"), str):
            text.append(part["text"])
    return "".join(text), "".join(reasoning)


def reasoning_of(message: dict[str, Any]) -> str:
    """Reasoning text: DeepSeek/xAI ``reasoning_content``, OpenRouter/vLLM ``reasoning``."""
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def parse_tool_calls(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        return []
    return [_tool_call(call) for call in raw if isinstance(call, dict)]


FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "function_call": "tool_calls",
    "model_length": "length",  # Mistral
    "insufficient_system_resource": "length",  # DeepSeek: output was cut short
    "max_tokens": "length",
}


def map_finish(reason: Any, has_tool_calls: bool) -> str:
    """An OpenAI finish reason; some compatible upstreams say ``stop`` after tool calls."""
    mapped = FINISH_REASONS.get(str(reason or ""), "stop")
    if has_tool_calls and mapped == "stop":
        return "tool_calls"
    return mapped


def as_int(value: Any) -> int:
    """A non-negative int from an upstream count that may be missing or malformed. An int
    or nothing, the usual cases, return without `int()` and `max()` (270 -> ~100 ns; a
    usage object reads seven)."""
    if type(value) is int:
        return value if value > 0 else 0
    if value is None:
        return 0
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


def usage_from(raw: Any, reasoning_excluded: bool | None = None) -> Usage | None:
    """`Usage` in OpenAI semantics from an upstream ``usage`` object (None if absent)."""
    if not isinstance(raw, dict):
        return None
    prompt = as_int(raw.get("prompt_tokens"))
    completion = as_int(raw.get("completion_tokens"))
    prompt_details = raw.get("prompt_tokens_details") or {}
    completion_details = raw.get("completion_tokens_details") or {}
    cached = as_int(prompt_details.get("cached_tokens")) or as_int(
        raw.get("prompt_cache_hit_tokens")
    )
    written = as_int(prompt_details.get("cache_write_tokens"))
    reasoning = as_int(completion_details.get("reasoning_tokens")) or as_int(
        raw.get("reasoning_tokens")
    )
    excluded = reasoning_excluded
    if excluded is None:
        total = raw.get("total_tokens")
        excluded = bool(reasoning) and total == prompt + completion + reasoning
    if excluded:
        completion += reasoning
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=min(cached, prompt),
        cache_write_tokens=written,
        reasoning_tokens=reasoning,
    )


def estimate_usage(body: dict[str, Any], output: str) -> Usage:
    """Layers' estimate when the upstream reported nothing (billing needs a number)."""
    return Usage(
        prompt_tokens=estimate_messages_tokens(body.get("messages") or [], body.get("tools")),
        completion_tokens=estimate_text_tokens(output),
        estimated=True,
    )


def error_from_frame(provider: str, error: Any) -> ProviderError:
    """The mapped error for an in-band ``data: {"error": ...}`` stream frame."""
    if not isinstance(error, dict):
        return error_for_status(provider, 500, str(error))
    message = str(error.get("message") or error)
    code, kind = error.get("code"), str(error.get("type") or "")
    status = code if isinstance(code, int) and 400 <= code <= 599 else None
    if status is None:
        hint = f"{kind} {code or ''}".lower()
        if "rate_limit" in hint or "rate limit" in hint:
            status = 429
        elif "overload" in hint or "unavailable" in hint:
            status = 503
        elif "invalid" in hint or "bad_request" in hint:
            status = 400
        else:
            status = 500
    return error_for_status(provider, status, message)
