"""Rendering canonical results as the OpenAI wire shapes clients parse.

Pure functions, no I/O. The details here are the ones real clients depend on (wire.md §0):
``choices`` is always an array, tool-call deltas carry ``index`` and a ``function`` object,
the first delta of a call carries ``id``/``type``/``name``, arguments are JSON strings,
a ``finish_reason`` always arrives, and the usage chunk has ``choices: []``.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from .providers.base import Chunk, Completion, ImageResult, Usage


def completion_body(
    completion_id: str, created: int, model: str, result: Completion, layers: dict[str, Any]
) -> dict[str, Any]:
    message = {"role": "assistant", "content": None, "refusal": None, **result.message}
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": result.finish_reason,
            }
        ],
        "usage": result.usage.to_openai(),
    }
    body.update(result.extra)
    if result.provider_metadata:
        body["provider_metadata"] = result.provider_metadata
    body["layers"] = layers
    return body


class ChunkRenderer:
    """Turns canonical `Chunk`s into OpenAI ``chat.completion.chunk`` dicts for one stream,
    and remembers what was generated (to bill a stream the client cut short)."""

    def __init__(self, completion_id: str, created: int, model: str) -> None:
        self.head = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
        }
        self.sent_role = False
        self.finish_reason: str | None = None
        self.seen_tool_ids: set[int] = set()
        self.text_parts: list[str] = []
        self.output_started = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        if not self.sent_role:
            delta = {"role": "assistant", **delta}
            self.sent_role = True
        return {
            **self.head,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            "usage": None,
        }

    def render(self, chunk: Chunk) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if chunk.reasoning:
            self.text_parts.append(chunk.reasoning)
            out.append(self._chunk({"content": None, "reasoning_content": chunk.reasoning}))
        if chunk.content:
            self.text_parts.append(chunk.content)
            out.append(self._chunk({"content": chunk.content}))
        if chunk.tool_calls:
            calls = []
            for call in chunk.tool_calls:
                self.text_parts.append(call.arguments)
                item: dict[str, Any] = {"index": call.index}
                function: dict[str, Any] = {"arguments": call.arguments}
                if call.index not in self.seen_tool_ids:
                    self.seen_tool_ids.add(call.index)
                    item["id"] = call.id or f"call_{call.index}"
                    item["type"] = "function"
                    function = {"name": call.name or "", "arguments": call.arguments}
                    if call.extra_content:
                        item["extra_content"] = call.extra_content
                item["function"] = function
                calls.append(item)
            out.append(self._chunk({"content": None, "tool_calls": calls}))
        if chunk.annotations:
            out.append(self._chunk({"annotations": chunk.annotations}))
        if out:
            self.output_started = True
        if chunk.finish_reason and self.finish_reason is None:
            self.finish_reason = chunk.finish_reason
            out.append(self._chunk({}, chunk.finish_reason))
        return out

    def final(
        self,
        usage: Usage,
        layers: dict[str, Any],
        extra: dict[str, Any] | None,
        provider_metadata: dict[str, Any] | None,
    ) -> list[dict[str, Any]]:
        """The closing chunks: a finish reason if none came yet, then the usage chunk."""
        out = []
        if self.finish_reason is None:
            self.finish_reason = "stop"
            out.append(self._chunk({}, "stop"))
        last: dict[str, Any] = {**self.head, "choices": [], "usage": usage.to_openai()}
        if extra:
            last.update(extra)
        if provider_metadata:
            last["provider_metadata"] = provider_metadata
        last["layers"] = layers
        out.append(last)
        return out

    @property
    def generated_text(self) -> str:
        return "".join(self.text_parts)


def image_body(created: int, result: ImageResult, layers: dict[str, Any]) -> dict[str, Any]:
    data = []
    for i, raw in enumerate(result.images):
        item: dict[str, Any] = {"b64_json": base64.b64encode(raw).decode()}
        if i < len(result.revised_prompts) and result.revised_prompts[i]:
            item["revised_prompt"] = result.revised_prompts[i]
        data.append(item)
    usage = result.usage
    body: dict[str, Any] = {
        "created": created,
        "data": data,
        "output_format": result.mime_type.split("/")[-1].replace("svg+xml", "svg"),
        "usage": {
            "input_tokens": usage.prompt_tokens,
            "output_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "images": usage.images,
        },
    }
    if result.provider_metadata:
        body["provider_metadata"] = result.provider_metadata
    body["layers"] = layers
    return body


def embedding_body(
    model: str, vectors: list[list[float]], encoding: str, usage: Usage, layers: dict[str, Any]
) -> dict[str, Any]:
    data = []
    for i, vector in enumerate(vectors):
        embedding: Any = vector
        if encoding == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    return {
        "object": "list",
        "model": model,
        "data": data,
        "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens},
        "layers": layers,
    }


def model_body(model: Any, created: int = 1_700_000_000) -> dict[str, Any]:
    """One ``/v1/models`` entry: the OpenAI shape plus Layers' catalog fields."""
    p = model.prices

    def price(value: Any) -> str | None:
        return None if value is None else str(value)

    return {
        "id": model.id,
        "object": "model",
        "created": created,
        "owned_by": model.provider,
        "name": model.display_name,
        "provider": model.provider,
        "type": model.type,
        "capabilities": sorted(model.capabilities),
        "context_window": model.context_window,
        "max_output_tokens": model.max_output_tokens,
        "pricing": {
            "currency": "USD",
            "input_per_million": price(p.input),
            "output_per_million": price(p.output),
            "cache_read_per_million": price(p.cache_read),
            "cache_write_per_million": price(p.cache_write),
            "per_image": price(p.per_image),
        },
        "lifecycle": model.lifecycle,
        "end_of_life": model.end_of_life,
        "replacement": model.replacement,
        "aliases": list(model.aliases),
    }
