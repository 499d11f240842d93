"""Pure translation between the canonical OpenAI shape and the Gemini API (no I/O).

Kept apart from `google.py` so the HTTP code stays short and these rules can be tested on
their own: messages → contents, JSON Schema → Gemini's OpenAPI subset, effort → thinking
config, and the small response helpers (tool-call ids, usage, finish reasons, citations).
"""

from __future__ import annotations

import base64
import hashlib
import json
import mimetypes
import re
import urllib.parse
from typing import Any

from .base import Usage

PROVIDER = "google"

# Documented sentinel for history the model did not sign (another vendor's turns, or a client
# that drops `extra_content`): Gemini 3 rejects a step whose first functionCall has none.
SKIP_SIGNATURE = "skip_thought_signature_validator"

# Schema keys Gemini's OpenAPI-3.0 subset accepts and that mean the same thing there.
_PLAIN_SCHEMA_KEYS = ("title", "description", "minItems", "maxItems", "minProperties")
_PLAIN_SCHEMA_KEYS += ("maxProperties", "minLength", "maxLength", "pattern", "minimum", "maximum")
_FORMATS = {"date-time", "date", "time", "enum", "float", "double", "int32", "int64"}

_FILTER_FINISH = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII"}
_FILTER_FINISH |= {"IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION"}

_BUDGETS = {"minimal": 512, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 32768}
_DATA_URL = re.compile(r"^data:(?P<mime>[^;,]*)(?P<params>(;[^;,]*)*),(?P<data>.*)$", re.S)


# --------------------------------------------------------------------------- schemas


def convert_schema(schema: Any, *, ordering: bool = False) -> dict[str, Any] | None:
    """JSON Schema → Gemini's OpenAPI subset (``$schema``, ``additionalProperties``, refs…
    removed or rewritten). ``ordering`` adds ``propertyOrdering`` so JSON answers keep the
    caller's key order. An empty object schema gives None (Gemini rejects it)."""
    if not isinstance(schema, dict) or _is_empty_object(schema):
        return None
    defs = {**(schema.get("definitions") or {}), **(schema.get("$defs") or {})}
    return _convert(schema, defs, ordering, 0)


def _is_empty_object(schema: dict[str, Any]) -> bool:
    return (
        schema.get("type") == "object"
        and not schema.get("properties")
        and not isinstance(schema.get("additionalProperties"), dict)
        and not any(k in schema for k in ("anyOf", "oneOf", "allOf", "$ref"))
    )


def _resolve_ref(ref: str, defs: dict[str, Any]) -> dict[str, Any]:
    name = ref.rsplit("/", 1)[-1]
    target = defs.get(name)
    return target if isinstance(target, dict) else {"type": "object"}


def _merge_all_of(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    merged = {k: v for k, v in node.items() if k != "allOf"}
    props = dict(merged.get("properties") or {})
    required = list(merged.get("required") or [])
    for sub in node.get("allOf") or []:
        if not isinstance(sub, dict):
            continue
        if isinstance(sub.get("$ref"), str):
            sub = _resolve_ref(sub["$ref"], defs)
        props.update(sub.get("properties") or {})
        required += [r for r in sub.get("required") or [] if r not in required]
        for key, value in sub.items():
            if key not in ("properties", "required"):
                merged.setdefault(key, value)
    if props:
        merged["properties"] = props
        merged.setdefault("type", "object")
    if required:
        merged["required"] = required
    return merged


def _convert(node: Any, defs: dict[str, Any], ordering: bool, depth: int) -> dict[str, Any]:
    if not isinstance(node, dict):
        return {"type": "string"}  # `true` schemas: Gemini has no "anything" type
    if depth > 12:
        return {"type": "object"}  # recursive $ref: cut the cycle
    if isinstance(node.get("$ref"), str):
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return _convert({**_resolve_ref(node["$ref"], defs), **rest}, defs, ordering, depth + 1)
    if isinstance(node.get("allOf"), list):
        node = _merge_all_of(node, defs)

    out: dict[str, Any] = {}
    nullable = bool(node.get("nullable"))
    kind = node.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        nullable = nullable or len(kinds) < len(kind)
        if len(kinds) > 1:
            out["anyOf"] = [_convert(_narrow(node, k), defs, ordering, depth + 1) for k in kinds]
            if node.get("description"):
                out["description"] = node["description"]
            if nullable:
                out["nullable"] = True
            return out
        kind = kinds[0] if kinds else None
    elif kind == "null":
        nullable, kind = True, None
    if isinstance(kind, str):
        out["type"] = kind
    for key in _PLAIN_SCHEMA_KEYS:
        if node.get(key) is not None:
            out[key] = node[key]
    if node.get("format") in _FORMATS:
        out["format"] = node["format"]
    _convert_enum(node, out)

    props = node.get("properties")
    if isinstance(props, dict) and props:
        out["properties"] = {k: _convert(v, defs, ordering, depth + 1) for k, v in props.items()}
        required = [r for r in node.get("required") or [] if r in props]
        if required:
            out["required"] = required
        if ordering:
            out["propertyOrdering"] = list(props)
        out.setdefault("type", "object")
    items = node.get("items")
    if isinstance(items, list):
        items = items[0] if items else None
    if isinstance(items, dict | bool):
        out["items"] = _convert(items, defs, ordering, depth + 1)
    elif out.get("type") == "array":
        out["items"] = {"type": "string"}  # Gemini requires `items` on arrays

    union = node.get("anyOf") if isinstance(node.get("anyOf"), list) else node.get("oneOf")
    if isinstance(union, list):
        members = [m for m in union if not (isinstance(m, dict) and m.get("type") == "null")]
        nullable = nullable or len(members) < len(union)
        converted = [_convert(m, defs, ordering, depth + 1) for m in members]
        if len(converted) == 1:
            out = {**converted[0], **out}
        elif converted:
            out["anyOf"] = converted
    if nullable:
        out["nullable"] = True
    return out


_OBJECT_ONLY = ("properties", "required", "minProperties", "maxProperties")
_ARRAY_ONLY = ("items", "minItems", "maxItems")


def _narrow(node: dict[str, Any], kind: str) -> dict[str, Any]:
    """One branch of ``type: [a, b]``: keep only the keywords that apply to ``kind``."""
    drop = {"type", "description", "nullable", "anyOf", "oneOf"}
    if kind != "object":
        drop.update(_OBJECT_ONLY)
    if kind != "array":
        drop.update(_ARRAY_ONLY)
    return {**{k: v for k, v in node.items() if k not in drop}, "type": kind}


def _convert_enum(node: dict[str, Any], out: dict[str, Any]) -> None:
    """Gemini enums are string-only; other values are described instead of enforced."""
    values = node.get("enum")
    if "const" in node:
        values = [node["const"]]
    if not isinstance(values, list) or not values:
        return
    if all(isinstance(v, str) for v in values):
        out["enum"] = values
        out.setdefault("type", "string")
        return
    listed = ", ".join(json.dumps(v) for v in values)
    described = out.get("description")
    out["description"] = f"{described} (one of: {listed})" if described else f"One of: {listed}."


# --------------------------------------------------------------------------- requests


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p
        )
    return "" if content is None else str(content)


def _data_url_part(url: str, fallback_mime: str) -> dict[str, Any] | None:
    match = _DATA_URL.match(url)
    if not match:
        return None
    mime = match["mime"] or fallback_mime
    data = match["data"]
    if ";base64" not in (match["params"] or ""):
        data = base64.b64encode(urllib.parse.unquote_to_bytes(data)).decode()
    return {"inlineData": {"mimeType": mime, "data": data}}


def _url_part(url: str, fallback_mime: str) -> dict[str, Any] | None:
    if url.startswith("data:"):
        return _data_url_part(url, fallback_mime)
    if not url:
        return None
    guessed = mimetypes.guess_type(urllib.parse.urlparse(url).path)[0]
    return {"fileData": {"mimeType": guessed or fallback_mime, "fileUri": url}}


def _file_part(file: dict[str, Any]) -> dict[str, Any] | None:
    name = str(file.get("filename") or "")
    mime = mimetypes.guess_type(name)[0] or "application/pdf"
    data = file.get("file_data")
    if isinstance(data, str) and data:
        if data.startswith("data:"):
            return _data_url_part(data, mime)
        return {"inlineData": {"mimeType": mime, "data": data}}
    file_id = file.get("file_id")
    if isinstance(file_id, str) and file_id.startswith(("https://", "http://")):
        return {"fileData": {"mimeType": mime, "fileUri": file_id}}
    return None


def content_parts(content: Any) -> list[dict[str, Any]]:
    """OpenAI message content (string or parts) → Gemini parts; unknown parts are dropped."""
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for part in content or []:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        converted: dict[str, Any] | None = None
        if kind in ("text", "input_text") and part.get("text"):
            converted = {"text": str(part["text"])}
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            converted = _url_part(str(url or ""), "image/jpeg")
        elif kind == "input_audio" and isinstance(part.get("input_audio"), dict):
            audio = part["input_audio"]
            fmt = str(audio.get("format") or "wav")
            converted = {"inlineData": {"mimeType": f"audio/{fmt}", "data": audio.get("data")}}
        elif kind == "file" and isinstance(part.get("file"), dict):
            converted = _file_part(part["file"])
        if converted:
            parts.append(converted)
    return parts


def _function_response(content: Any) -> dict[str, Any]:
    """Gemini wants an object: JSON objects pass through, anything else is wrapped."""
    text = _text_of(content)
    try:
        value = json.loads(text)
    except ValueError:
        return {"result": text}
    return value if isinstance(value, dict) else {"result": value}


def _major_version(upstream: str) -> int:
    match = re.search(r"gemini-(\d+)", upstream)
    return int(match.group(1)) if match else 0


def _assistant_parts(message: dict[str, Any], signed: bool) -> list[dict[str, Any]]:
    parts = [p for p in content_parts(message.get("content")) if "text" in p]
    for i, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        raw = function.get("arguments") or "{}"
        try:
            args = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            args = {"arguments": raw}
        part: dict[str, Any] = {
            "functionCall": {
                "name": function.get("name") or "",
                "args": args if isinstance(args, dict) else {"value": args},
            }
        }
        google = ((call.get("extra_content") or {}).get("google")) or {}
        signature = google.get("thought_signature")
        if signature:
            part["thoughtSignature"] = signature
        elif signed and i == 0:
            part["thoughtSignature"] = SKIP_SIGNATURE
        parts.append(part)
    return parts


def build_contents(
    messages: list[dict[str, Any]], upstream: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Messages → (systemInstruction parts, contents). Tool results become functionResponse
    parts in one user turn; ``reasoning_content`` echoed by the AI SDK is dropped (thought
    signatures carry Gemini's reasoning state, summaries are output-only)."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    signed = _major_version(upstream) >= 3
    previous_tool = False
    for message in messages:
        role = message.get("role")
        is_tool = role in ("tool", "function")
        if role in ("system", "developer"):
            text = _text_of(message.get("content"))
            if text:
                system.append({"text": text})
        elif role == "user":
            parts = content_parts(message.get("content"))
            if parts:
                contents.append({"role": "user", "parts": parts})
        elif role == "assistant":
            for call in message.get("tool_calls") or []:
                name = (call.get("function") or {}).get("name")
                if call.get("id") and name:
                    names[call["id"]] = name
            parts = _assistant_parts(message, signed)
            if parts:
                contents.append({"role": "model", "parts": parts})
        elif is_tool:
            name = names.get(str(message.get("tool_call_id"))) or message.get("name") or "tool"
            part = {
                "functionResponse": {
                    "name": name,
                    "response": _function_response(message.get("content")),
                }
            }
            if previous_tool and contents:
                contents[-1]["parts"].append(part)  # parallel results share one turn
            else:
                contents.append({"role": "user", "parts": [part]})
        previous_tool = is_tool
    return system, contents


def _tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    declarations = []
    for tool in body.get("tools") or []:
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            continue
        function = tool.get("function") or {}
        declaration: dict[str, Any] = {"name": function.get("name")}
        if function.get("description"):
            declaration["description"] = function["description"]
        parameters = convert_schema(function.get("parameters"))
        if parameters:
            declaration["parameters"] = parameters
        declarations.append(declaration)
    tools: list[dict[str, Any]] = []
    if declarations:
        tools.append({"functionDeclarations": declarations})
    if body.get("web_search_options") is not None:
        tools.append({"googleSearch": {}})
    return tools


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        config: dict[str, Any] = {"mode": "ANY"}
        if name:
            config["allowedFunctionNames"] = [name]
        return {"functionCallingConfig": config}
    mode = {"none": "NONE", "auto": "AUTO", "required": "ANY"}.get(str(choice))
    return {"functionCallingConfig": {"mode": mode}} if mode else None


def thinking_config(body: dict[str, Any], thinking_model: bool, upstream: str) -> dict | None:
    """``thinking.budget_tokens`` or ``reasoning_effort`` → thinkingConfig. Gemini 3 takes
    levels (Pro: LOW/HIGH only), 2.x takes budgets (Pro cannot go below 128)."""
    if not thinking_model:
        return None
    thinking = body.get("thinking")
    effort = body.get("reasoning_effort")
    if isinstance(thinking, dict):
        budget = thinking.get("budget_tokens")
        if thinking.get("type") == "enabled" and isinstance(budget, int):
            return {"thinkingBudget": budget, "includeThoughts": True}
        if thinking.get("type") == "disabled":
            effort = "none"
    if not isinstance(effort, str):
        return None
    pro = "pro" in upstream
    if _major_version(upstream) >= 3:
        if pro:
            level = "LOW" if effort in ("none", "minimal", "low") else "HIGH"
        else:
            level = {"none": "MINIMAL", "xhigh": "HIGH"}.get(effort, effort.upper())
        if effort == "none":
            return {"thinkingLevel": level}
        return {"thinkingLevel": level, "includeThoughts": True}
    if effort == "none":
        return {"thinkingBudget": 128 if pro else 0}
    budget = min(_BUDGETS.get(effort, 8192), 32768 if pro else 24576)
    return {"thinkingBudget": budget, "includeThoughts": True}


def build_request(body: dict[str, Any], upstream: str, thinking_model: bool) -> dict[str, Any]:
    """A canonical chat body → a generateContent request. Layers-only fields (metadata,
    cache, cache_control, stream_options…) are never forwarded."""
    system, contents = build_contents(body.get("messages") or [], upstream)
    request: dict[str, Any] = {"contents": contents}
    if system:
        request["systemInstruction"] = {"parts": system}
    tools = _tools(body)
    if tools:
        request["tools"] = tools
        config = _tool_config(body.get("tool_choice"))
        if config and any("functionDeclarations" in t for t in tools):
            request["toolConfig"] = config

    generation: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens:
        generation["maxOutputTokens"] = int(max_tokens)
    for src, dst in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        if body.get(src) is not None:
            generation[dst] = body[src]
    stop = body.get("stop")
    if stop:
        generation["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    fmt = body.get("response_format") or {}
    if fmt.get("type") in ("json_object", "json_schema"):
        generation["responseMimeType"] = "application/json"
        spec = fmt.get("json_schema") or {}
        schema = convert_schema(spec.get("schema"), ordering=True)
        if fmt.get("type") == "json_schema" and schema:
            generation["responseSchema"] = schema
    thinking = thinking_config(body, thinking_model, upstream)
    if thinking:
        generation["thinkingConfig"] = thinking
    if generation:
        request["generationConfig"] = generation
    return request


# --------------------------------------------------------------------------- responses


def tool_call_id(response_id: str | None, index: int, name: str, args: Any) -> str:
    """Gemini rarely sends call ids; derive a stable one so whole and streamed answers agree."""
    seed = json.dumps([response_id, index, name, args], sort_keys=True, default=str)
    return "call_" + hashlib.sha256(seed.encode()).hexdigest()[:24]


def tool_call(part: dict[str, Any], response_id: str | None, index: int) -> dict[str, Any]:
    """A functionCall part → an OpenAI tool call (signature in ``extra_content.google``)."""
    function = part.get("functionCall") or {}
    name = str(function.get("name") or "")
    args = function.get("args") or {}
    call: dict[str, Any] = {
        "id": function.get("id") or tool_call_id(response_id, index, name, args),
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(args, separators=(",", ":"))},
    }
    if part.get("thoughtSignature"):
        call["extra_content"] = {"google": {"thought_signature": part["thoughtSignature"]}}
    return call


def map_finish(raw: str | None, has_tool_calls: bool, blocked: bool = False) -> str:
    if blocked or raw in _FILTER_FINISH:
        return "content_filter"
    if raw == "MAX_TOKENS":
        return "length"
    return "tool_calls" if has_tool_calls else "stop"


def parse_usage(meta: dict[str, Any] | None) -> Usage:
    """usageMetadata → OpenAI semantics. ``toolUsePromptTokenCount`` (search results fed to
    the model) is billed input, so it joins prompt_tokens and totals match Gemini's."""
    meta = meta or {}
    thoughts = int(meta.get("thoughtsTokenCount") or 0)
    return Usage(
        prompt_tokens=int(meta.get("promptTokenCount") or 0)
        + int(meta.get("toolUsePromptTokenCount") or 0),
        completion_tokens=int(meta.get("candidatesTokenCount") or 0) + thoughts,
        cached_tokens=int(meta.get("cachedContentTokenCount") or 0),
        reasoning_tokens=thoughts,
    )


# --------------------------------------------------------------------------- metadata


def google_metadata(
    response: dict[str, Any], candidate: dict[str, Any], raw_finish: str | None
) -> dict[str, Any]:
    """``provider_metadata.google``: grounding, safety, raw finish reason, thought counts."""
    meta: dict[str, Any] = {}
    for key in ("groundingMetadata", "safetyRatings", "citationMetadata", "urlContextMetadata"):
        if candidate.get(key):
            meta[key] = candidate[key]
    if response.get("promptFeedback"):
        meta["promptFeedback"] = response["promptFeedback"]
    usage = response.get("usageMetadata") or {}
    for key in ("thoughtsTokenCount", "cachedContentTokenCount", "toolUsePromptTokenCount"):
        if usage.get(key) is not None:
            meta[key] = usage[key]
    if raw_finish:
        meta["finishReason"] = raw_finish
    if response.get("modelVersion"):
        meta["modelVersion"] = response["modelVersion"]
    return meta


def _char_span(text: str, segment: dict[str, Any]) -> tuple[int, int]:
    quoted = segment.get("text")
    if quoted and quoted in text:
        start = text.index(quoted)
        return start, start + len(quoted)
    raw = text.encode()  # Gemini's segment offsets count UTF-8 bytes
    start = len(raw[: int(segment.get("startIndex") or 0)].decode(errors="ignore"))
    end = len(raw[: int(segment.get("endIndex") or 0)].decode(errors="ignore"))
    return start, max(start, end)


def grounding_annotations(text: str, grounding: dict[str, Any] | None) -> list[dict[str, Any]]:
    """groundingMetadata → OpenAI ``url_citation`` annotations (character offsets)."""
    if not grounding:
        return []
    chunks = grounding.get("groundingChunks") or []
    out: list[dict[str, Any]] = []
    cited: set[int] = set()

    def add(index: int, start: int, end: int) -> None:
        web = chunks[index].get("web") if 0 <= index < len(chunks) else None
        if isinstance(web, dict) and web.get("uri"):
            citation = {"start_index": start, "end_index": end, "url": web["uri"]}
            citation["title"] = web.get("title") or web["uri"]
            out.append({"type": "url_citation", "url_citation": citation})

    for support in grounding.get("groundingSupports") or []:
        start, end = _char_span(text, support.get("segment") or {})
        for index in support.get("groundingChunkIndices") or []:
            cited.add(index)
            add(index, start, end)
    for index in range(len(chunks)):
        if index not in cited:
            add(index, 0, len(text))
    return out
