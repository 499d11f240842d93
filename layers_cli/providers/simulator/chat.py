"""One simulated chat turn, decided in full before any of it is sent.

`build_reply` works out the whole answer (text or tool calls, reasoning, citations, usage)
from the request alone. The adapter then either returns it whole or cuts it into chunks, so
a stream always reassembles to exactly the non-streamed answer.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from ...catalog.model import ModelInfo
from ...tokens import CHARS_PER_TOKEN, estimate_messages_tokens, estimate_text_tokens
from ..base import Usage
from . import writing
from .caching import PromptCache
from .prompt import Digest, Hints, hints_from, image_urls, last_user_index, text_of
from .schema_check import SchemaError
from .schema_fill import fill_schema
from .tools import ToolCall, calls_tools, describe_plan, function_tools, plan_calls
from .values import guess_schema

EFFORT_SENTENCES = {"minimal": 3, "low": 4, "medium": 6, "high": 9, "xhigh": 11, "max": 11}
_TERSE = re.compile(r"\b(terse|brief|briefly|concise|concisely|short|one sentence)\b", re.I)
_ASKED_KEYS = re.compile(
    r"\b(?:keys|fields|properties|attributes)\b\s*(?:named|called|like)?\s*:?\s*"
    r"((?:[`\"']?[A-Za-z_]\w*[`\"']?(?:\s*,\s*(?:and\s+)?|\s+and\s+)?){1,12})",
    re.IGNORECASE,
)


@dataclass
class Reply:
    content: str | None
    reasoning: str | None
    tool_calls: list[ToolCall]
    finish_reason: str
    usage: Usage
    annotations: list[dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    provider_metadata: dict[str, Any] = field(default_factory=dict)
    upstream_id: str = ""


def build_reply(body: dict[str, Any], model: ModelInfo, cache: PromptCache) -> Reply:
    """The complete answer to a chat request, deterministic in the request."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    d = Digest.of(model.id, body)
    display = model.display_name or model.id
    last_user = last_user_index(messages)
    asking = messages[last_user] if last_user is not None else (messages[-1] if messages else {})
    question = text_of(asking.get("content"))
    results = tool_results(messages, last_user)
    hints = hints_from(question, extra="\n".join(r for _, r in results))
    keys = hints.keywords
    tools = function_tools(body)
    fmt, schema = response_format(body)

    calls: list[ToolCall] = []
    content: str | None = None
    sources: list[dict[str, Any]] = []
    images = image_urls(asking.get("content")) if model.has("vision") else []
    if calls_tools(body, tools) and not results:
        choice = body.get("tool_choice", body.get("function_call"))
        calls = plan_calls(d, tools, choice, body.get("parallel_tool_calls"), hints)
        plan = describe_plan(calls)
    elif fmt in ("json_schema", "json_object"):
        content = json_document(d, schema, messages, question, hints, display)
        plan = "The answer must be a single JSON object" + (
            " that matches the requested schema." if schema else "."
        )
    elif results:
        content = writing.after_tools(d, results, question, display)
        plan = "I have the tool results, so I can answer from them directly and quote them."
    elif images:
        content = writing.vision(d, [_describe(url) for url in images], question, display)
        plan = "I should describe what the image really shows: its size, format and colours."
    elif (said := writing.direct(question, display)) is not None:
        content = said
        plan = "This needs a direct reply, nothing more."
    elif model.has("web"):
        content, sources = writing.search(d, question, keys, display)
        plan = "I should search for recent sources, then answer and cite each one."
    else:
        content = writing.answer(d, question, keys, display, terse=_is_terse(messages))
        plan = "A short, direct answer that stays on the topic is best."

    budget = max_tokens(body)
    reasoning = None
    sentences = reasoning_sentences(body, model)
    if sentences:
        reasoning = writing.reasoning(d, question, keys, sentences, plan)
        cap = _reasoning_cap(body, budget)
        if cap is not None:
            reasoning = truncate_tokens(reasoning, cap)[0]
    finish = "tool_calls" if calls else "stop"
    if content is not None:
        content = apply_stop(content, body.get("stop"))
        if budget is not None:
            room = max(0, budget - estimate_text_tokens(reasoning or ""))
            content, cut = truncate_tokens(content, room)
            finish = "length" if cut else finish

    usage = count_usage(body, model, cache, content, reasoning, calls)
    reply = Reply(
        content=content,
        reasoning=reasoning or None,
        tool_calls=calls,
        finish_reason=finish,
        usage=usage,
        upstream_id="sim-" + d.hex("id", 24),
    )
    if sources:
        urls = [s["url"] for s in sources]
        reply.annotations = writing.citation_annotations(content or "", sources) or None
        reply.extra = {"citations": urls, "search_results": sources}
        reply.provider_metadata = {model.provider: {"citations": urls}}
    return reply


def tool_results(messages: list[dict[str, Any]], last_user: int | None) -> list[tuple[str, str]]:
    """(tool name, result text) for each tool message after the last user message."""
    names: dict[str, str] = {}
    for message in messages:
        for call in message.get("tool_calls") or []:
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                names[str(call.get("id"))] = str(call["function"].get("name") or "tool")
    tail = messages[last_user + 1 :] if last_user is not None else messages
    results = []
    for message in tail:
        if message.get("role") == "tool":
            name = names.get(str(message.get("tool_call_id")), "tool")
            results.append((name, text_of(message.get("content"))))
        elif message.get("role") == "function":
            name = str(message.get("name") or "function")
            results.append((name, text_of(message.get("content"))))
    return results


def response_format(body: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    """("json_schema", schema) / ("json_object", None) / (None, None)."""
    spec = body.get("response_format")
    if not isinstance(spec, dict):
        return None, None
    kind = spec.get("type")
    if kind == "json_schema":
        inner = spec.get("json_schema")
        schema = inner.get("schema") if isinstance(inner, dict) else None
        schema = schema if isinstance(schema, dict) else spec.get("schema")
        return ("json_schema", schema) if isinstance(schema, dict) else ("json_object", None)
    return ("json_object", None) if kind == "json_object" else (None, None)


def json_document(
    d: Digest,
    schema: dict[str, Any] | None,
    messages: list[dict[str, Any]],
    question: str,
    hints: Hints,
    display: str,
) -> str:
    """JSON text: from the schema given, one found in the prompt, keys the prompt names, or a
    generic answer object."""
    schema = schema or schema_in_prompt(messages) or _schema_for_asked_keys(question)
    if schema:
        try:
            document = fill_schema(schema, hints, d.rng("json"))
            return json.dumps(document, ensure_ascii=False)
        except (SchemaError, RecursionError):
            pass
    return json.dumps(writing.json_answer(d, question, hints.keywords, display), ensure_ascii=False)


def schema_in_prompt(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A JSON Schema written into a system or user message (older SDKs put it there)."""
    decoder = json.JSONDecoder()
    for message in messages:
        if message.get("role") not in ("system", "developer", "user"):
            continue
        text = text_of(message.get("content"))
        for match in re.finditer(r"\{", text):
            try:
                found, _ = decoder.raw_decode(text, match.start())
            except ValueError:
                continue
            if isinstance(found, dict) and ("properties" in found or "$schema" in found):
                return found
    return None


def _schema_for_asked_keys(question: str) -> dict[str, Any] | None:
    match = _ASKED_KEYS.search(question)
    if not match:
        return None
    names = [n for n in re.findall(r"[A-Za-z_]\w*", match.group(1)) if n.lower() != "and"]
    if not names:
        return None
    return {
        "type": "object",
        "properties": {n: guess_schema(n) for n in names},
        "required": names,
    }


def reasoning_sentences(body: dict[str, Any], model: ModelInfo) -> int:
    """How long to think: 0 unless a thinking model is asked to reason."""
    if not model.has("thinking"):
        return 0
    effort = body.get("reasoning_effort")
    if isinstance(effort, str) and effort not in ("none", ""):
        return EFFORT_SENTENCES.get(effort, 6)
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive"):
        budget = thinking.get("budget_tokens")
        if isinstance(budget, int) and not isinstance(budget, bool):
            return max(3, min(11, 3 + budget // 2048))
        return 6
    return 0


def max_tokens(body: dict[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def _reasoning_cap(body: dict[str, Any], budget: int | None) -> int | None:
    """Thinking stays within its budget and leaves half of max tokens for the answer."""
    caps = []
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and isinstance(thinking.get("budget_tokens"), int):
        caps.append(thinking["budget_tokens"])
    if budget is not None:
        caps.append(budget // 2)
    return min(caps) if caps else None


def apply_stop(content: str, stop: Any) -> str:
    """Cut at the earliest stop sequence (the sequence itself is not returned)."""
    stops = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    cuts = [content.find(s) for s in stops if isinstance(s, str) and s]
    cuts = [c for c in cuts if c >= 0]
    return content[: min(cuts)] if cuts else content


def truncate_tokens(text: str, limit: int) -> tuple[str, bool]:
    """At most ``limit`` estimated tokens, cut at a word boundary; (text, was it cut)."""
    if estimate_text_tokens(text) <= limit:
        return text, False
    room = math.floor(limit * CHARS_PER_TOKEN)
    cut = text[:room]
    if " " in cut.strip() and not text[room : room + 1].isspace():
        cut = cut[: cut.rstrip().rfind(" ")]
    return cut.rstrip(), True


def count_usage(
    body: dict[str, Any],
    model: ModelInfo,
    cache: PromptCache,
    content: str | None,
    reasoning: str | None,
    calls: list[ToolCall],
) -> Usage:
    prompt = estimate_messages_tokens(body.get("messages") or [], body.get("tools"))
    reasoning_tokens = estimate_text_tokens(reasoning or "")
    completion = estimate_text_tokens(content or "") + reasoning_tokens
    for c in calls:
        completion += estimate_text_tokens(c.name) + estimate_text_tokens(c.arguments)
    cached = cache.usage(model.id, body) if model.has("cache") else None
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached.cached_tokens if cached else 0,
        cache_write_tokens=cached.cache_write_tokens if cached else 0,
        reasoning_tokens=reasoning_tokens,
        estimated=False,
    )


def _describe(url: str) -> str:
    from . import media

    return media.describe_image_text(media.describe_image(url))


def _is_terse(messages: list[dict[str, Any]]) -> bool:
    return any(
        m.get("role") in ("system", "developer") and _TERSE.search(text_of(m.get("content")))
        for m in messages
    )
