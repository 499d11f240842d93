"""Tool calls: which tool a model would pick, and arguments that satisfy its schema.

The best tool is the one whose name and description share the most words with the prompt;
``tool_choice`` can force one or forbid all. When the prompt lists several values for the
tool's one free-text parameter ("weather in Paris and Rome"), one call is made per value, as
models do with parallel tool calls.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ...errors import InvalidRequest
from .prompt import Digest, Hints, stem, words
from .schema_check import SchemaError, conforms
from .schema_fill import Filler, flatten


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # a JSON string, as the wire carries it


def function_tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The function definitions offered (``tools``, or the deprecated ``functions``)."""
    found = []
    for tool in body.get("tools") or []:
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            continue
        function = tool.get("function") if isinstance(tool.get("function"), dict) else tool
        if isinstance(function.get("name"), str):
            found.append(function)
    for function in body.get("functions") or []:
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            found.append(function)
    return found


def forced_name(choice: Any) -> str | None:
    """The tool a ``tool_choice`` names, in any of the shapes clients send."""
    if not isinstance(choice, dict):
        return None
    inner = choice.get("function")
    if isinstance(inner, dict) and isinstance(inner.get("name"), str):
        return inner["name"]
    name = choice.get("name")
    return name if isinstance(name, str) else None


def calls_tools(body: dict[str, Any], tools: list[dict[str, Any]]) -> bool:
    choice = body.get("tool_choice", body.get("function_call"))
    return bool(tools) and choice != "none"


def choose_tool(tools: list[dict[str, Any]], choice: Any, hints: Hints) -> dict[str, Any]:
    """The named tool, or the one whose name and description best match the prompt."""
    name = forced_name(choice)
    if name is not None:
        for tool in tools:
            if tool["name"] == name:
                return tool
        raise InvalidRequest(
            f"tool_choice names the tool {name!r}, which is not among the tools offered.",
            hint="Offered: " + ", ".join(t["name"] for t in tools) + ".",
            param="tool_choice",
        )
    prompt = {stem(w) for w in words(hints.text)}
    for present, related in _CONCEPTS:
        if present(hints):
            prompt |= related

    def score(tool: dict[str, Any]) -> int:
        named = {stem(w) for w in words(tool["name"].replace("_", " ").replace("-", " "))}
        named |= {stem(w) for w in _split_camel(tool["name"])}
        described = {stem(w) for w in words(str(tool.get("description") or ""))}
        return 3 * len(named & prompt) + len(described & prompt)

    return max(tools, key=lambda t: (score(t), -tools.index(t)))


# What a prompt implies without saying it: "12 * 7" is maths, an address is for email.
_CONCEPTS = (
    (lambda h: h.expression is not None, {"math", "calculate", "calculator", "evaluate",
                                          "expression", "compute", "arithmetic"}),
    (lambda h: bool(h.emails), {"email", "mail", "send"}),
    (lambda h: bool(h.urls), {"url", "fetch", "page", "web", "browse"}),
    (lambda h: bool(h.dates), {"date", "calendar", "schedule", "event"}),
)  # fmt: skip


def _split_camel(name: str) -> list[str]:
    return re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", name)


def plan_calls(
    d: Digest, tools: list[dict[str, Any]], choice: Any, parallel: Any, hints: Hints
) -> list[ToolCall]:
    """The tool calls for this turn: one, or one per listed value when parallel is allowed."""
    tool = choose_tool(tools, choice, hints)
    schema = tool.get("parameters")
    if not isinstance(schema, dict) or not schema:
        schema = {"type": "object", "properties": {}}
    values: list[tuple[str, Any]] = []
    if parallel is not False:
        values = _parallel_values(schema, hints)
    if not values:
        return [_call(d, tool["name"], _arguments(schema, hints, d, 0), 0)]
    claimed = [v for _, v in values]
    return [
        _call(d, tool["name"], _arguments(schema, hints, d, i, {key: v}, claimed), i)
        for i, (key, v) in enumerate(values)
    ]


def _call(d: Digest, name: str, arguments: Any, index: int) -> ToolCall:
    text = json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))
    return ToolCall(id="call_" + d.hex(f"call:{index}", 24), name=name, arguments=text)


def _arguments(
    schema: dict[str, Any],
    hints: Hints,
    d: Digest,
    index: int,
    forced: dict[str, Any] | None = None,
    claimed: list[Any] | None = None,
) -> Any:
    filler = Filler(schema, hints, d.rng(f"args:{index}"), forced=forced, optional="mentioned")
    for value in claimed or []:
        if isinstance(value, str):
            filler.claim(value)
    try:
        return filler.fill()
    except SchemaError:
        return {}


def _parallel_values(schema: dict[str, Any], hints: Hints) -> list[tuple[str, Any]]:
    """(property, value) pairs when the prompt lists several values for one string property."""
    try:
        root = flatten(schema, schema)
        props = root.get("properties") or {}
        required = [k for k in root.get("required", []) if k in props]
        flat = {k: flatten(props[k], schema) for k in required if isinstance(props[k], dict)}
    except SchemaError:
        return []
    strings = [k for k, p in flat.items() if _is_string(p)]
    free = [k for k in strings if "enum" not in flat[k] and "const" not in flat[k]]
    if len(free) == 1:
        key = free[0]
        for listed in hints.lists:
            if all(conforms(v, flat[key], schema) for v in listed):
                return [(key, v) for v in listed]
        return []
    if len(strings) == 1 and isinstance(flat[strings[0]].get("enum"), list):
        key = strings[0]
        spots = [(hints.mentions(m), m) for m in flat[key]["enum"] if isinstance(m, str)]
        mentioned = [m for pos, m in sorted((p, m) for p, m in spots if p is not None)]
        if len(mentioned) >= 2:
            return [(key, m) for m in mentioned]
    return []


def _is_string(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    return kind == "string" or (isinstance(kind, list) and "string" in kind)


def describe_plan(calls: list[ToolCall]) -> str:
    """A sentence of reasoning about the calls about to be made."""
    if not calls:
        return "I should answer directly."
    name = calls[0].name
    if len(calls) > 1:
        return (
            f"The {name} tool fits this request, and the question lists {len(calls)} values, "
            f"so I will call it {len(calls)} times in parallel."
        )
    args = calls[0].arguments
    shown = args if len(args) <= 120 else args[:117] + "…"
    return f"The {name} tool fits this request, so I will call it with {shown}."
