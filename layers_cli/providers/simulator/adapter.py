"""The simulator as a provider adapter: same protocol, same errors, no network.

A request is answered in full first (`chat.build_reply`); ``complete`` returns it and
``stream`` slices it, so the two always agree. Failures and latency asked for in
``X-Layers-Simulate`` happen here, at the points a real upstream would produce them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

from ...errors import InvalidRequest
from ...tokens import estimate_text_tokens
from ..base import (
    Chunk,
    Completion,
    EmbedResult,
    ImageResult,
    ToolCallDelta,
    UpstreamCall,
    Usage,
)
from . import failures
from .caching import PromptCache
from .chat import Reply, build_reply

MAX_IMAGES = 10
DEFAULT_DIMENSIONS = 1536
_GROUP_SIZES = (2, 3, 4)  # words per content chunk, cycling, like a real token stream


class SimulatorAdapter:
    """Deterministic, in-process stand-in for every provider's models."""

    name = "simulator"

    def __init__(self, cache: PromptCache | None = None) -> None:
        self.cache = cache if cache is not None else PromptCache()

    def _reply(self, call: UpstreamCall) -> Reply:
        failures.raise_requested(call.model.provider, call.simulate, call.timeout)
        return build_reply(call.body, call.model, self.cache)

    async def complete(self, call: UpstreamCall) -> Completion:
        reply = self._reply(call)
        if failures.disconnect_after(call.simulate) is not None:
            raise failures.disconnect(call.model.provider)
        pace = failures.Pace.of(call.simulate)
        await pace.first()
        await pace.tokens(reply.usage.completion_tokens)
        return Completion(
            message=message_of(reply),
            finish_reason=reply.finish_reason,
            usage=reply.usage,
            provider_metadata=dict(reply.provider_metadata),
            extra=dict(reply.extra),
            upstream_id=reply.upstream_id,
        )

    async def stream(self, call: UpstreamCall) -> AsyncIterator[Chunk]:
        reply = self._reply(call)
        cut_after = failures.disconnect_after(call.simulate)
        pace = failures.Pace.of(call.simulate)
        await pace.first()
        for sent, chunk in enumerate(output_chunks(reply)):
            if cut_after is not None and sent >= cut_after:
                raise failures.disconnect(call.model.provider)
            if sent:
                await pace.tokens(_chunk_tokens(chunk))
            yield chunk
        if cut_after is not None:
            raise failures.disconnect(call.model.provider)
        yield Chunk(
            finish_reason=reply.finish_reason,
            annotations=reply.annotations,
            extra=dict(reply.extra) or None,
            provider_metadata=dict(reply.provider_metadata) or None,
        )
        yield Chunk(usage=reply.usage)

    async def images(self, call: UpstreamCall) -> ImageResult:
        from . import media

        failures.raise_requested(call.model.provider, call.simulate, call.timeout)
        if failures.disconnect_after(call.simulate) is not None:
            raise failures.disconnect(call.model.provider)
        body = call.body
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidRequest("prompt must be a non-empty string.", param="prompt")
        count = body.get("n") if body.get("n") is not None else 1
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_IMAGES:
            raise InvalidRequest(
                f"n must be an integer from 1 to {MAX_IMAGES}, not {count!r}.", param="n"
            )
        width, height = media.parse_size(body.get("size"))
        pictures = await asyncio.to_thread(
            lambda: [media.make_png(prompt, width, height, seed=i) for i in range(count)]
        )
        pace = failures.Pace.of(call.simulate)
        await pace.first()
        revised = " ".join(prompt.split())
        return ImageResult(
            images=pictures,
            usage=Usage(prompt_tokens=estimate_text_tokens(prompt), images=count),
            revised_prompts=[
                f"{revised.rstrip('.')}, rendered as a {width}x{height} image (variation {i + 1})."
                for i in range(count)
            ],
        )

    async def embed(self, call: UpstreamCall) -> EmbedResult:
        from . import media

        failures.raise_requested(call.model.provider, call.simulate, call.timeout)
        if failures.disconnect_after(call.simulate) is not None:
            raise failures.disconnect(call.model.provider)
        texts = embedding_inputs(call.body.get("input"))
        size = embedding_dimensions(call.body.get("dimensions"), call.model.dimensions)
        vectors = await asyncio.to_thread(lambda: [media.embed_text(t, size) for t in texts])
        tokens = sum(estimate_text_tokens(t) for t in texts)
        return EmbedResult(vectors=vectors, usage=Usage(prompt_tokens=tokens))


def message_of(reply: Reply) -> dict[str, Any]:
    """The OpenAI assistant message for a reply."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.reasoning:
        message["reasoning_content"] = reply.reasoning
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in reply.tool_calls
        ]
    if reply.annotations:
        message["annotations"] = reply.annotations
    return message


def output_chunks(reply: Reply) -> list[Chunk]:
    """Reasoning, then content, then tool calls (wire.md §1.4), in small pieces."""
    chunks = [Chunk(reasoning=piece) for piece in word_groups(reply.reasoning or "")]
    chunks += [Chunk(content=piece) for piece in word_groups(reply.content or "")]
    for index, call in enumerate(reply.tool_calls):
        first = ToolCallDelta(index=index, id=call.id, name=call.name, arguments="")
        chunks.append(Chunk(tool_calls=[first]))
        for piece in argument_pieces(call.arguments):
            chunks.append(Chunk(tool_calls=[ToolCallDelta(index=index, arguments=piece)]))
    return chunks


def word_groups(text: str) -> list[str]:
    """Split text into runs of a few words that concatenate back to exactly ``text``."""
    if not text:
        return []
    tokens = re.findall(r"\s*\S+\s*?(?=\s|$)|\s+$", text)
    if "".join(tokens) != text:  # unusual whitespace: fall back to fixed-size slices
        return [text[i : i + 16] for i in range(0, len(text), 16)]
    groups, i, turn = [], 0, 0
    while i < len(tokens):
        size = _GROUP_SIZES[turn % len(_GROUP_SIZES)]
        groups.append("".join(tokens[i : i + size]))
        i, turn = i + size, turn + 1
    return groups


def argument_pieces(arguments: str) -> list[str]:
    """At least two pieces (clients must concatenate), about 16 characters each."""
    size = max(1, min(16, -(-len(arguments) // 2)))
    return [arguments[i : i + size] for i in range(0, len(arguments), size)] or [""]


def _chunk_tokens(chunk: Chunk) -> int:
    text = (chunk.content or "") + (chunk.reasoning or "")
    text += "".join(d.arguments for d in chunk.tool_calls)
    return estimate_text_tokens(text)


def embedding_inputs(raw: Any) -> list[str]:
    """Embedding inputs as strings (token-id arrays are embedded by their digits)."""
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items:
        raise InvalidRequest("input must be a string or a non-empty list.", param="input")
    texts = []
    for item in items:
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, int | list):
            texts.append(" ".join(map(str, item)) if isinstance(item, list) else str(item))
        else:
            raise InvalidRequest("input items must be strings or token arrays.", param="input")
    return texts


def embedding_dimensions(requested: Any, native: int | None) -> int:
    """The vector size: as requested (never above the model's), else the model's own."""
    if requested is None:
        return native or DEFAULT_DIMENSIONS
    if not isinstance(requested, int) or isinstance(requested, bool) or requested < 1:
        raise InvalidRequest(
            f"dimensions must be a positive integer, not {requested!r}.", param="dimensions"
        )
    if native and requested > native:
        raise InvalidRequest(
            f"dimensions {requested} is larger than this model's {native}.",
            hint=f"Ask for at most {native} dimensions, or leave dimensions out.",
            param="dimensions",
        )
    return requested
