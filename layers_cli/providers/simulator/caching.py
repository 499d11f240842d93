"""Prompt caching the way Anthropic-style providers report it: write once, then read.

A request asks for caching with ``cache_control`` on a tool, a system block or a content
block (or the hosted flag ``cache: true``: everything but the last message). The prefix up to
the last marker is written on first sight and read afterwards, for five minutes since its last
use, when it is at least 1024 tokens. As with Anthropic, a hit is also found at an earlier
block boundary (up to 20 blocks back), so a conversation that moves its marker forward reads
the part it already wrote and writes only the rest.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...tokens import estimate_messages_tokens

MIN_TOKENS = 1024
TTL_SECONDS = 300.0
MAX_ENTRIES = 4096
LOOKBACK_BLOCKS = 20


@dataclass(frozen=True)
class CacheUsage:
    cached_tokens: int = 0
    cache_write_tokens: int = 0


@dataclass(frozen=True)
class _Boundary:
    """The end of one block: which tool, or which message and part, it closes."""

    tool: int | None = None
    message: int | None = None
    part: int | None = None  # None: the whole message


class PromptCache:
    """In-process, bounded, expiring prefix store, keyed by a hash of the prefix."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._entries: OrderedDict[str, float] = OrderedDict()  # key → expiry
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def usage(self, model_id: str, body: dict[str, Any]) -> CacheUsage:
        """Look up (and record) the request's cacheable prefix; report what was read/written."""
        blocks, boundaries, last = _blocks(body)
        if last is None:
            return CacheUsage()
        keys = _prefix_keys(model_id, blocks[: last + 1])
        now = self.clock()
        with self._lock:
            self._expire(now)
            hit = None
            for index in range(last, max(-1, last - LOOKBACK_BLOCKS), -1):
                if keys[index] in self._entries:
                    hit = index
                    break
            cached = _tokens(body, boundaries[hit]) if hit is not None else 0
            total = _tokens(body, boundaries[last])
            if total < MIN_TOKENS:
                return CacheUsage()
            if hit is not None:
                self._touch(keys[hit], now)
            written = 0
            if hit != last:
                self._touch(keys[last], now)
                written = total - cached
            return CacheUsage(cached_tokens=cached, cache_write_tokens=written)

    def _touch(self, key: str, now: float) -> None:
        self._entries[key] = now + TTL_SECONDS
        self._entries.move_to_end(key)
        while len(self._entries) > MAX_ENTRIES:
            self._entries.popitem(last=False)

    def _expire(self, now: float) -> None:
        for key in [k for k, expiry in self._entries.items() if expiry <= now]:
            del self._entries[key]


def wants_caching(body: dict[str, Any]) -> bool:
    return _blocks(body)[2] is not None


def _blocks(body: dict[str, Any]) -> tuple[list[Any], list[_Boundary], int | None]:
    """The request as ordered blocks (tools, then message parts), and the last cached one."""
    blocks: list[Any] = []
    boundaries: list[_Boundary] = []
    last: int | None = None
    tools = body.get("tools") or []
    messages = body.get("messages") or []
    for i, tool in enumerate(tools):
        blocks.append(("tool", _strip(tool)))
        boundaries.append(_Boundary(tool=i))
        function = tool.get("function") if isinstance(tool, dict) else None
        if _marked(tool) or _marked(function):
            last = len(blocks) - 1
    message_start = len(blocks)
    for m, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        role = message.get("role")
        if isinstance(content, list) and content:
            for p, part in enumerate(content):
                blocks.append((role, m, _strip(part)))
                boundaries.append(_Boundary(message=m, part=p))
                if _marked(part):
                    last = len(blocks) - 1
        else:
            blocks.append((role, m, content))
            boundaries.append(_Boundary(message=m))
        extra = {k: _strip(v) for k, v in message.items() if k not in ("content", "role")}
        if extra:
            blocks.append((role, m, extra))
            boundaries.append(_Boundary(message=m))
        if _marked(message):
            last = len(blocks) - 1
    if last is None and body.get("cache") is True and len(messages) > 1:
        ends = [i for i, b in enumerate(boundaries) if b.message == len(messages) - 2]
        last = ends[-1] if ends else (message_start - 1 if message_start else None)
    return blocks, boundaries, last


def _marked(block: Any) -> bool:
    return isinstance(block, dict) and bool(block.get("cache_control"))


def _strip(value: Any) -> Any:
    """A block without its cache marker: moving the marker must not change the prefix."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _prefix_keys(model_id: str, blocks: list[Any]) -> list[str]:
    running = hashlib.sha256(model_id.encode())
    keys = []
    for block in blocks:
        running.update(json.dumps(block, sort_keys=True, default=str).encode())
        running.update(b"\x1e")
        keys.append(running.copy().hexdigest())
    return keys


def _tokens(body: dict[str, Any], end: _Boundary) -> int:
    """Prompt tokens of the prefix that ends at ``end`` (a subset of the full count)."""
    tools = body.get("tools") or []
    if end.tool is not None:
        return estimate_messages_tokens([], tools[: end.tool + 1])
    messages = body.get("messages") or []
    assert end.message is not None
    head = list(messages[: end.message])
    current = messages[end.message]
    if end.part is not None:
        current = {**current, "content": current["content"][: end.part + 1], "tool_calls": None}
    return estimate_messages_tokens([*head, current], tools)
