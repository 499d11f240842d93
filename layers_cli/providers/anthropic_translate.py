"""Canonical (OpenAI-shaped) chat request → Anthropic Messages request: the helpers.

Pure functions, plus `ThinkingCache` (filled by the response side, read for echoed reasoning).

Choices worth knowing:

* Model generations differ (adaptive thinking, sampling, forced tools, structured outputs), so
  `model_traits` classifies the upstream id the way ``@ai-sdk/anthropic`` does; a catalog entry
  may override structured outputs with ``extra.structured_outputs``.
* ``response_format: json_schema`` uses native structured outputs (``output_config.format``,
  GA, no beta header) where the model has them; elsewhere, and for ``json_object`` (which has
  no native form), a tool named after the schema is forced and its input becomes the content.
* ``reasoning_effort``: adaptive models get ``thinking: adaptive`` + ``output_config.effort``;
  older ones ``thinking.budget_tokens`` from `EFFORT_BUDGETS`, fitted under ``max_tokens``.
* Thinking cannot be combined with a forced ``tool_choice`` or custom sampling: an explicit
  forced ``tool_choice`` wins over thinking, and thinking drops temperature/top_p/top_k.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import CapabilityError, InvalidRequest

if TYPE_CHECKING:
    from ..catalog import ModelInfo

Lookup = Callable[[str], "list[dict[str, Any]] | None"]  # reasoning text → signed blocks

ANTHROPIC_VERSION = "2023-06-01"
EFFORT_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384, "xhigh": 32768}
EFFORTS = {"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "max"}
MIN_THINKING_BUDGET = 1024
MAX_CACHE_BREAKPOINTS = 4
JSON_TOOL_DESCRIPTION = "Respond with a JSON object that matches this schema."

_SERVER_TOOL_TYPE = re.compile(r"^[a-z_]+_\d{8}$")  # web_search_20250305, bash_20250124 …
_DATA_URL = re.compile(r"^data:([^;,]*)((?:;[^;,]*)*),(.*)$", re.DOTALL)
_THINKING_TYPES = ("thinking", "redacted_thinking")


class ThinkingCache:
    """Bounded map: hash of returned reasoning text → the signed blocks it came from.

    Anthropic rejects thinking without its signature, and OpenAI-shaped clients (the AI SDK)
    echo only the text back, so the adapter remembers the signatures it has seen.
    """

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._items: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.strip().encode()).hexdigest()

    def put(self, text: str, blocks: list[dict[str, Any]]) -> None:
        if not text.strip() or not blocks:
            return
        key = self.key(text)
        self._items[key] = [dict(b) for b in blocks]
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def get(self, text: str) -> list[dict[str, Any]] | None:
        blocks = self._items.get(self.key(text))
        if blocks is None:
            return None
        self._items.move_to_end(self.key(text))
        return [dict(b) for b in blocks]


THINKING_CACHE = ThinkingCache()


@dataclass(frozen=True)
class Traits:
    """What one Claude generation accepts (False = the conservative, older behaviour)."""

    structured: bool = False  # output_config.format and strict tools
    adaptive: bool = False  # thinking {type: adaptive} with output_config.effort
    no_sampling: bool = False  # temperature / top_p / top_k are rejected
    xhigh: bool = False  # effort "xhigh" exists
    no_disable: bool = False  # always thinks: thinking {type: disabled} is rejected
    no_budget: bool = False  # thinking {type: enabled, budget_tokens} is rejected
    no_forced: bool = False  # tool_choice any/tool is rejected


# First match wins, most specific ids first (as @ai-sdk/anthropic classifies them).
_CURRENT = "structured adaptive no_sampling xhigh"
TRAIT_TABLE: tuple[tuple[str, str], ...] = (
    (r"claude-(?:sonnet|opus)-5-5|claude-fable-5-1", f"{_CURRENT} no_disable no_budget no_forced"),
    (r"claude-fable-5", f"{_CURRENT} no_disable no_budget"),
    (r"claude-haiku-5-5", f"{_CURRENT} no_budget"),
    (r"claude-opus-5|claude-sonnet-5|claude-opus-4-[78]", _CURRENT),
    (r"claude-(?:sonnet|opus)-4-6", "structured adaptive"),
    (r"claude-(?:sonnet|opus|haiku)-4-5|claude-opus-4-1", "structured"),
    (r"claude-(?:sonnet|opus)-4[-@]|claude-3|claude-v?2|claude-instant", ""),
    (r"claude-", _CURRENT),  # an unknown, newer Claude
    (r"", ""),  # not Claude at all (a compatible proxy): assume nothing
)


def model_traits(model: ModelInfo, upstream_model: str) -> Traits:
    name = upstream_model.lower()
    flags = next(f for pattern, f in TRAIT_TABLE if re.search(pattern, name))
    traits = Traits(**dict.fromkeys(flags.split(), True))
    explicit = model.extra.get("structured_outputs")
    if isinstance(explicit, bool):
        traits = Traits(**{**traits.__dict__, "structured": explicit})
    return traits


@dataclass
class Plan:
    """What the response side must know about how the request was translated."""

    json_tool: str | None = None  # the tool whose input is the JSON answer
    thinking: bool = False


# -- messages ------------------------------------------------------------------------------


def convert_messages(
    messages: list[dict[str, Any]], signatures: Lookup | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Hoist system/developer text into ``system`` blocks; merge same-role neighbours
    (consecutive tool results become one user message of ``tool_result`` blocks)."""
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    for msg in messages:
        role = msg.get("role")
        if role in ("system", "developer"):
            blocks = _text_blocks(msg.get("content"))
            _mark_last(blocks, msg.get("cache_control"))
            system.extend(blocks)
            continue
        if role == "assistant":
            anthropic_role, blocks = "assistant", _assistant_blocks(msg, signatures)
        elif role == "tool":
            anthropic_role, blocks = "user", [_tool_result(msg)]
        elif role == "user":
            anthropic_role, blocks = "user", _user_blocks(msg.get("content"))
        else:
            raise InvalidRequest(f"Anthropic models do not accept messages with role {role!r}.")
        _mark_last(blocks, msg.get("cache_control"))
        if not blocks:
            continue
        if out and out[-1]["role"] == anthropic_role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": anthropic_role, "content": blocks})
    if out and out[-1]["role"] == "assistant":  # a prefill may not end in whitespace
        last = out[-1]["content"]
        if last and last[-1].get("type") == "text":
            last[-1]["text"] = last[-1]["text"].rstrip()
            if not last[-1]["text"]:
                last.pop()
        if not last:
            out.pop()
    return system, out


def _mark_last(blocks: list[dict[str, Any]], cache_control: Any) -> None:
    if isinstance(cache_control, dict) and blocks:
        blocks[-1].setdefault("cache_control", cache_control)


def _text_blocks(content: Any) -> list[dict[str, Any]]:
    """Text only (system prompts, assistant turns): other parts are dropped."""
    if isinstance(content, list):
        content = [p for p in content if isinstance(p, dict) and p.get("type") == "text"]
    return _user_blocks(content)


def _with_cache(block: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    if isinstance(part.get("cache_control"), dict):
        block["cache_control"] = part["cache_control"]
    return block


def _user_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str) or content is None:
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if part.get("text"):
                blocks.append(_with_cache({"type": "text", "text": part["text"]}, part))
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            blocks.append(_with_cache(_image_block(str(url or "")), part))
        elif kind == "file":
            blocks.append(_with_cache(_file_block(part.get("file") or {}), part))
        elif kind in ("image", "document"):  # already Anthropic-shaped
            blocks.append(part)
        elif kind == "input_audio":
            raise CapabilityError("Anthropic models do not accept audio input.", param="messages")
        else:
            raise CapabilityError(
                f"Anthropic models do not accept content parts of type {kind!r}.",
                param="messages",
            )
    return blocks


def _split_data_url(url: str) -> tuple[str, str] | None:
    match = _DATA_URL.match(url)
    if not match or ";base64" not in match.group(2):
        return None
    return match.group(1) or "application/octet-stream", match.group(3)


def _image_block(url: str) -> dict[str, Any]:
    if url.startswith("data:"):
        parsed = _split_data_url(url)
        if parsed is None:
            raise InvalidRequest("Image data URLs must be base64 encoded.", param="messages")
        media_type, data = parsed
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise InvalidRequest("image_url must be an http(s) URL or a data: URL.", param="messages")


def _file_block(file: dict[str, Any]) -> dict[str, Any]:
    data = file.get("file_data")
    if not isinstance(data, str):
        raise CapabilityError(
            "Anthropic needs file parts inline (file_data); file_id is not supported.",
            param="messages",
        )
    filename = file.get("filename")
    parsed = _split_data_url(data) if data.startswith("data:") else None
    media_type, payload = parsed or ("application/pdf", data)
    if media_type.startswith("image/"):
        return _image_block(f"data:{media_type};base64,{payload}")
    if media_type != "application/pdf":
        raise CapabilityError(f"Anthropic models do not accept {media_type} files (only PDF).")
    source = {"type": "base64", "media_type": media_type, "data": payload}
    block: dict[str, Any] = {"type": "document", "source": source}
    if filename:
        block["title"] = str(filename)
    return block


def _assistant_blocks(msg: dict[str, Any], signatures: Lookup | None) -> list[dict[str, Any]]:
    blocks = _thinking_blocks(msg, signatures)
    content = msg.get("content")
    if isinstance(content, str):
        blocks.extend(_text_blocks(content))
    elif isinstance(content, list):
        blocks.extend(_text_blocks([p for p in content if p.get("type") == "text"]))
    for call in msg.get("tool_calls") or []:
        fn = call.get("function") or {}
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id") or "",
                "name": fn.get("name") or "",
                "input": _parse_arguments(fn.get("arguments")),
            }
        )
    return blocks


def _thinking_blocks(msg: dict[str, Any], signatures: Lookup | None) -> list[dict[str, Any]]:
    """Signed thinking to send back: explicit ``thinking_blocks``, else the cache entry for an
    echoed ``reasoning_content``, else nothing (unsigned thinking would be rejected)."""
    explicit = msg.get("thinking_blocks")
    if isinstance(explicit, list):
        keys = {"thinking": ("thinking", "signature"), "redacted_thinking": ("data",)}
        return [
            {"type": b["type"], **{k: b.get(k, "") for k in keys[b["type"]]}}
            for b in explicit
            if isinstance(b, dict) and b.get("type") in keys and b.get(keys[b["type"]][-1])
        ]
    text = msg.get("reasoning_content") or msg.get("reasoning")
    if isinstance(text, str) and text.strip() and signatures is not None:
        return signatures(text) or []
    return []


def _parse_arguments(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    if not arguments:
        return {}
    try:
        value = json.loads(arguments)
    except (TypeError, ValueError):
        return {"arguments": str(arguments)}
    return value if isinstance(value, dict) else {"value": value}


def _tool_result(msg: dict[str, Any]) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": msg.get("tool_call_id") or ""}
    content = msg.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    elif isinstance(content, list):
        parts = _user_blocks(content)
        if parts:
            block["content"] = parts
    elif content is not None:
        block["content"] = json.dumps(content)
    return block


def _thinking_lost(messages: list[dict[str, Any]]) -> bool:
    """True when a tool loop is under way but its assistant turn lost its thinking blocks:
    Anthropic then rejects ``thinking``, so the request goes without it."""
    if len(messages) < 2 or messages[-1]["role"] != "user":
        return False
    if not any(b.get("type") == "tool_result" for b in messages[-1]["content"]):
        return False
    assistant = messages[-2]["content"]
    uses_tools = any(b.get("type") == "tool_use" for b in assistant)
    return uses_tools and assistant[0].get("type") not in _THINKING_TYPES


# -- parameters ----------------------------------------------------------------------------


def max_tokens_for(body: dict[str, Any], model: ModelInfo) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return model.default_output_tokens or model.max_output_tokens or 4096


def _thinking_config(
    body: dict[str, Any], model: ModelInfo, traits: Traits
) -> dict[str, Any] | None:
    """The hosted ``thinking`` field wins; else ``reasoning_effort`` on a thinking model."""
    explicit = body.get("thinking")
    effort = body.get("reasoning_effort")
    adaptive = {"type": "adaptive", "display": "summarized"}
    if isinstance(explicit, dict) and explicit.get("type"):
        kind = explicit["type"]
        if kind == "enabled" and traits.no_budget:
            return adaptive
        if kind == "enabled":
            budget = explicit.get("budget_tokens")
            budget = budget if isinstance(budget, int) else EFFORT_BUDGETS["medium"]
            return {"type": "enabled", "budget_tokens": budget}
        if kind == "disabled":
            return None if traits.no_disable else {"type": "disabled"}
        config = {"type": kind}
        if explicit.get("display") in ("summarized", "omitted"):
            config["display"] = explicit["display"]
        return config
    if not model.has("thinking") or not isinstance(effort, str):
        return None
    if effort == "none":
        return None if traits.no_disable else {"type": "disabled"}
    if effort not in EFFORT_BUDGETS:
        return None
    if traits.adaptive:
        return adaptive
    return {"type": "enabled", "budget_tokens": EFFORT_BUDGETS[effort]}


def apply_thinking(
    body: dict[str, Any],
    model: ModelInfo,
    traits: Traits,
    payload: dict[str, Any],
    messages: list[dict[str, Any]],
    plan: Plan,
    forced: bool,
) -> None:
    thinking = _thinking_config(body, model, traits)
    active = bool(thinking) and thinking["type"] != "disabled"
    # Thinking cannot go with a forced tool, nor into a tool loop whose signed thinking was lost
    # (Anthropic rejects both); models that always think keep it and let the API decide.
    if active and not traits.no_disable and (forced or _thinking_lost(messages)):
        thinking, active = None, False
    if thinking and thinking["type"] == "enabled":
        fitted = fit_budget(
            payload["max_tokens"], thinking["budget_tokens"], model.max_output_tokens
        )
        if fitted is None:
            thinking, active = None, False
        else:
            payload["max_tokens"], thinking["budget_tokens"] = fitted
    if thinking:
        payload["thinking"] = thinking
    effort = body.get("reasoning_effort")
    if active and thinking["type"] == "adaptive" and effort in EFFORTS:
        level = "xhigh" if effort == "xhigh" and traits.xhigh else EFFORTS[effort]
        payload.setdefault("output_config", {})["effort"] = level
    plan.thinking = active


def fit_budget(max_tokens: int, budget: int, cap: int | None) -> tuple[int, int] | None:
    """Make ``budget_tokens < max_tokens`` (thinking is part of the output).

    Like the AI SDK, a budget that does not fit below ``max_tokens`` is added on top of it,
    up to the model's cap; past the cap the budget shrinks (never under 1024, else None).
    """
    budget = max(MIN_THINKING_BUDGET, budget)
    if max_tokens > budget:
        return max_tokens, budget
    new_max = budget + max_tokens
    if cap:
        new_max = min(new_max, cap)
    if new_max <= budget:
        budget = max(MIN_THINKING_BUDGET, new_max - max_tokens, new_max // 2)
    if budget >= new_max:
        return None
    return new_max, budget


def clean_schema(schema: Any) -> dict[str, Any]:
    """A JSON schema Anthropic accepts as ``input_schema``: no ``$schema``, type object."""
    if not isinstance(schema, dict) or not schema:
        return {"type": "object", "properties": {}}
    cleaned = {k: v for k, v in schema.items() if k != "$schema"}
    cleaned.setdefault("type", "object")
    return cleaned


def to_tool(tool: dict[str, Any], structured: bool) -> dict[str, Any]:
    if tool.get("type") not in (None, "function"):
        if _SERVER_TOOL_TYPE.match(str(tool.get("type"))) and tool.get("name"):
            return dict(tool)  # an Anthropic server tool, already in native shape
        raise CapabilityError(f"Anthropic does not support tools of type {tool.get('type')!r}.")
    fn = tool.get("function") or {}
    if not fn.get("name"):
        raise InvalidRequest("Every tool needs function.name.", param="tools")
    out: dict[str, Any] = {"name": fn["name"]}
    if fn.get("description"):
        out["description"] = fn["description"]
    out["input_schema"] = clean_schema(fn.get("parameters"))
    if fn.get("strict") is True and structured:
        out["strict"] = True
    cache_control = tool.get("cache_control") or fn.get("cache_control")
    if isinstance(cache_control, dict):
        out["cache_control"] = cache_control
    return out


def to_tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    out: dict[str, Any] | None = None
    if choice in ("auto", "required", "none"):
        out = {"type": {"auto": "auto", "required": "any", "none": "none"}[choice]}
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") or choice.get("name")
        if not name:
            raise InvalidRequest("tool_choice needs function.name.", param="tool_choice")
        out = {"type": "tool", "name": name}
    if parallel is False:
        out = out or {"type": "auto"}
        if out["type"] != "none":
            out["disable_parallel_tool_use"] = True
    return out


def apply_response_format(
    body: dict[str, Any],
    payload: dict[str, Any],
    plan: Plan,
    tools: list[dict[str, Any]],
    choice: dict[str, Any] | None,
    traits: Traits,
) -> tuple[list[dict[str, Any]], dict[str, Any] | None, str | None]:
    """JSON answers: native ``output_config.format`` where possible, else the JSON tool.

    Returns the tools, the tool_choice and a system hint (when the tool cannot be forced).
    """
    fmt = body.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind not in ("json_schema", "json_object"):
        return tools, choice, None
    spec = fmt.get("json_schema") or {}
    if kind == "json_schema" and traits.structured:
        schema = clean_schema(spec.get("schema"))
        payload.setdefault("output_config", {})["format"] = {
            "type": "json_schema",
            "schema": schema,
        }
        return tools, choice, None
    taken = {t.get("name") for t in tools}
    name = re.sub(r"[^a-zA-Z0-9_-]", "_", str(spec.get("name") or "json"))[:58] or "json"
    while name in taken:
        name += "_reply"
    plan.json_tool = name
    json_tool = {
        "name": name,
        "description": spec.get("description") or JSON_TOOL_DESCRIPTION,
        "input_schema": clean_schema(spec.get("schema")),
    }
    user_tools = [] if choice and choice["type"] == "none" else tools
    can_force = not plan.thinking and not traits.no_forced
    if not can_force:
        new: dict[str, Any] = {"type": "auto", "disable_parallel_tool_use": True}
    elif not user_tools:
        new = {"type": "tool", "name": name}
    elif choice and choice["type"] == "tool":
        new = dict(choice)
    else:
        new = {"type": "any"}
    if choice and choice.get("disable_parallel_tool_use"):
        new["disable_parallel_tool_use"] = True
    hint = None
    if new["type"] == "auto":
        hint = f"Give your final answer by calling the `{name}` tool with it as the input."
    return [*user_tools, json_tool], new, hint
