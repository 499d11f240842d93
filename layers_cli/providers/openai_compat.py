"""The engine for every OpenAI-compatible upstream: chat (whole and streamed), images and
embeddings over ``{base_url}/chat/completions``, ``/images/generations``, ``/embeddings``.

One class serves OpenAI, xAI, DeepSeek, Mistral and any ``[upstreams.NAME]`` a user declares;
they differ only in a `Dialect` (see `openai_wire`). Errors name ``call.model.provider``, so a
user's own upstream is blamed by its own name. `openai` and `perplexity` subclass
`OpenAICompatible` and override the few hooks where their APIs differ.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from collections.abc import AsyncIterator
from typing import Any

from ..errors import ProviderServerError
from ..jsoncodec import loads
from ..tokens import estimate_text_tokens
from . import DEFAULT_BASE_URLS
from .base import (
    Chunk,
    Completion,
    EmbedResult,
    ImageResult,
    ToolCallDelta,
    UpstreamCall,
    Usage,
    iter_sse,
    open_stream,
    send,
)
from .openai_wire import (
    DIALECTS,
    GENERIC,
    Dialect,
    as_int,
    build_chat_body,
    error_from_frame,
    estimate_usage,
    map_finish,
    new_call_id,
    parse_tool_calls,
    reasoning_of,
    split_content,
    usage_from,
)


class OpenAICompatible:
    """An adapter for an upstream that speaks OpenAI's Chat Completions API.

    ``name`` is only a fallback label: the provider named in errors and in
    ``provider_metadata`` is ``call.model.provider``. ``dialect`` pins the upstream's quirks;
    without it they are looked up by provider name (unknown names get the lenient
    `GENERIC` dialect).
    """

    def __init__(self, name: str | None = None, dialect: Dialect | None = None) -> None:
        self.name = name or "openai-compatible"
        self.dialect = dialect

    # ------------------------------------------------------------ plumbing

    def provider(self, call: UpstreamCall) -> str:
        return call.model.provider or self.name

    def dialect_for(self, call: UpstreamCall) -> Dialect:
        return self.dialect or DIALECTS.get(self.provider(call), GENERIC)

    def url(self, call: UpstreamCall, path: str) -> str:
        base = call.base_url or DEFAULT_BASE_URLS.get(self.provider(call))
        if not base:
            name = self.provider(call)
            raise ProviderServerError(
                f"No base URL is configured for upstream {name}.",
                hint=f"Set base_url under [upstreams.{name}] in config.toml.",
                provider=name,
            )
        return base.rstrip("/") + path

    def headers(self, call: UpstreamCall) -> dict[str, str]:
        return {"Authorization": f"Bearer {call.credential}"} if call.credential else {}

    def parse_json(self, call: UpstreamCall, text: str) -> Any:
        """Parsed JSON, or a `ProviderServerError` naming the provider for anything else."""
        try:
            return loads(text)
        except ValueError:
            name = self.provider(call)
            raise ProviderServerError(
                f"{name} returned a response that is not valid JSON: {text[:200]!r}",
                provider=name,
            ) from None

    # ------------------------------------------------------------ chat

    def chat_body(self, call: UpstreamCall, *, stream: bool) -> dict[str, Any]:
        """The upstream body; subclasses adjust it for their API."""
        return build_chat_body(
            call.body, call.upstream_model, self.dialect_for(call), stream=stream
        )

    def usage_from(self, call: UpstreamCall, raw: Any) -> Usage | None:
        return usage_from(raw, self.dialect_for(call).reasoning_excluded)

    def metadata(self, call: UpstreamCall, data: dict[str, Any], usage: Usage) -> dict[str, Any]:
        """``provider_metadata`` for a response (``data`` is the body or the last chunk)."""
        meta: dict[str, Any] = {
            "reasoning_tokens": usage.reasoning_tokens,
            "cached_tokens": usage.cached_tokens,
        }
        for key in ("system_fingerprint", "service_tier"):
            if data.get(key):
                meta[key] = data[key]
        return {self.provider(call): meta}

    async def complete(self, call: UpstreamCall) -> Completion:
        body = self.chat_body(call, stream=False)
        response = await send(
            self.provider(call),
            call,
            "POST",
            self.url(call, "/chat/completions"),
            json=body,
            headers=self.headers(call),
        )
        data = self.parse_json(call, response.text)
        if not isinstance(data, dict):
            raise self._bad_shape(call, "a JSON object")
        return self.parse_completion(call, data)

    def parse_completion(self, call: UpstreamCall, data: dict[str, Any]) -> Completion:
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise self._bad_shape(call, "choices")
        choice = choices[0]
        raw = choice.get("message") or {}
        text, thinking = split_content(raw.get("content"))
        reasoning = reasoning_of(raw) or thinking
        tool_calls = parse_tool_calls(raw.get("tool_calls"))
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if tool_calls:
            message["tool_calls"] = tool_calls
        if reasoning:
            message["reasoning_content"] = reasoning
        if isinstance(raw.get("refusal"), str) and raw["refusal"]:
            message["refusal"] = raw["refusal"]
        if isinstance(raw.get("annotations"), list) and raw["annotations"]:
            message["annotations"] = raw["annotations"]
        usage = self.usage_from(call, data.get("usage"))
        if usage is None:
            arguments = "".join(c["function"]["arguments"] for c in tool_calls)
            usage = estimate_usage(call.body, (text or "") + reasoning + arguments)
        return Completion(
            message=message,
            finish_reason=map_finish(choice.get("finish_reason"), bool(tool_calls)),
            usage=usage,
            provider_metadata=self.metadata(call, data, usage),
            upstream_id=data.get("id"),
        )

    def translator(self, call: UpstreamCall) -> StreamTranslator:
        return StreamTranslator(self, call)

    async def stream(self, call: UpstreamCall) -> AsyncIterator[Chunk]:
        name = self.provider(call)
        body = self.chat_body(call, stream=True)
        response = await open_stream(
            name, call, self.url(call, "/chat/completions"), json=body, headers=self.headers(call)
        )
        translator = self.translator(call)
        try:
            async for _event, data in iter_sse(name, response, call.timeout):
                if data.strip() == "[DONE]":
                    break
                event = self.parse_json(call, data)
                if isinstance(event, dict):
                    for chunk in translator.feed(event):
                        yield chunk
            for chunk in translator.finish():
                yield chunk
        finally:
            await response.aclose()

    # ------------------------------------------------------------ images

    def image_body(self, call: UpstreamCall) -> dict[str, Any]:
        fields = self.dialect_for(call).image_fields
        body = {k: v for k, v in call.body.items() if k in fields and v is not None}
        body["model"] = call.upstream_model
        if not call.upstream_model.lower().startswith(("gpt-image", "chatgpt-image")):
            # gpt-image-* always answers b64 and rejects the field; others default to URLs
            body["response_format"] = "b64_json"
        return body

    async def images(self, call: UpstreamCall) -> ImageResult:
        name = self.provider(call)
        response = await send(
            name,
            call,
            "POST",
            self.url(call, "/images/generations"),
            json=self.image_body(call),
            headers=self.headers(call),
        )
        data = self.parse_json(call, response.text)
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list) or not items:
            raise self._bad_shape(call, "images")
        images, revised = [], []
        for item in items:
            if not isinstance(item, dict):
                raise self._bad_shape(call, "image objects")
            if isinstance(item.get("b64_json"), str):
                try:
                    images.append(base64.b64decode(item["b64_json"], validate=True))
                except (binascii.Error, ValueError):
                    raise self._bad_shape(call, "valid base64 image data") from None
            elif isinstance(item.get("url"), str):
                images.append(await self.download(call, item["url"]))
            else:
                raise self._bad_shape(call, "b64_json or url in every image")
            revised.append(item.get("revised_prompt"))
        raw = data["usage"] if isinstance(data.get("usage"), dict) else {}
        usage = Usage(
            prompt_tokens=as_int(raw.get("input_tokens")),
            completion_tokens=as_int(raw.get("output_tokens")),
            cached_tokens=as_int((raw.get("input_tokens_details") or {}).get("cached_tokens")),
            images=len(images),
        )
        meta = {k: data[k] for k in ("size", "quality", "background", "output_format") if k in data}
        return ImageResult(
            images=images,
            usage=usage,
            revised_prompts=revised,
            mime_type=sniff_mime(images[0], data.get("output_format")),
            provider_metadata={name: meta},
        )

    async def download(self, call: UpstreamCall, url: str) -> bytes:
        """Fetch an image URL the upstream returned (no credentials: it may be a CDN)."""
        name = self.provider(call)
        if not url.startswith(("https://", "http://")):
            raise self._bad_shape(call, "an http(s) image URL")
        response = await send(name, call, "GET", url)
        return response.content

    # ------------------------------------------------------------ embeddings

    def embed_body(self, call: UpstreamCall) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": call.upstream_model,
            "input": call.body.get("input"),
            "encoding_format": "float",
        }
        if call.body.get("dimensions") and call.upstream_model.startswith("text-embedding-3"):
            body["dimensions"] = call.body["dimensions"]
        return body

    async def embed(self, call: UpstreamCall) -> EmbedResult:
        response = await send(
            self.provider(call),
            call,
            "POST",
            self.url(call, "/embeddings"),
            json=self.embed_body(call),
            headers=self.headers(call),
        )
        data = self.parse_json(call, response.text)
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
            raise self._bad_shape(call, "embeddings")
        items = sorted(items, key=lambda item: as_int(item.get("index")))
        try:
            vectors = [decode_embedding(item.get("embedding")) for item in items]
        except (binascii.Error, ValueError, TypeError, struct.error):
            raise self._bad_shape(call, "float or base64 embeddings") from None
        raw = data["usage"] if isinstance(data.get("usage"), dict) else {}
        prompt = as_int(raw.get("prompt_tokens")) or as_int(raw.get("total_tokens"))
        usage = Usage(prompt_tokens=prompt)
        if not prompt:
            usage = Usage(prompt_tokens=_estimate_input(call.body.get("input")), estimated=True)
        return EmbedResult(vectors=vectors, usage=usage)

    def _bad_shape(self, call: UpstreamCall, what: str) -> ProviderServerError:
        name = self.provider(call)
        return ProviderServerError(
            f"{name} returned an unexpected response (no {what}).", provider=name
        )


class StreamTranslator:
    """Turns upstream chunks into canonical `Chunk`s, one upstream event at a time.

    Tool calls keep their position in the final list; the first piece of each call carries
    its id and name (buffered until the upstream sends the name). The finish reason (with any
    annotations) and then the single usage chunk come at the end, the usage estimated if the
    upstream sent none.
    """

    def __init__(self, adapter: OpenAICompatible, call: UpstreamCall) -> None:
        self.adapter = adapter
        self.call = call
        self.provider = adapter.provider(call)
        self.output: list[str] = []  # everything generated, for an estimate
        self.calls: list[_ToolCall] = []
        self.by_upstream_index: dict[int, int] = {}
        self.finish_reason: Any = None
        self.usage: Usage | None = None
        self.last: dict[str, Any] = {}  # top-level fields of the latest event
        self.annotations: list[dict[str, Any]] = []

    def feed(self, event: dict[str, Any]) -> list[Chunk]:
        if event.get("error"):
            raise error_from_frame(self.provider, event["error"])
        self.observe(event)
        chunks: list[Chunk] = []
        for choice in event.get("choices") or []:
            if not isinstance(choice, dict) or (choice.get("index") or 0) != 0:
                continue
            chunks.extend(self.delta(choice.get("delta") or {}))
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return chunks

    def observe(self, event: dict[str, Any]) -> None:
        """Remember top-level fields; usage may ride on any chunk (the last one wins)."""
        self.last.update(
            {k: v for k, v in event.items() if k != "choices" and v not in (None, [], {})}
        )
        usage = self.adapter.usage_from(self.call, event.get("usage"))
        if usage is not None:
            self.usage = usage

    def delta(self, delta: dict[str, Any]) -> list[Chunk]:
        text, thinking = split_content(delta.get("content"))
        return self.pieces(text or "", reasoning_of(delta) or thinking, delta)

    def pieces(self, text: str, reasoning: str, delta: dict[str, Any]) -> list[Chunk]:
        chunks: list[Chunk] = []
        if reasoning:
            self.output.append(reasoning)
            chunks.append(Chunk(reasoning=reasoning))
        refusal = delta.get("refusal")
        text += refusal if isinstance(refusal, str) else ""  # shown to the user as text
        if text:
            self.output.append(text)
            chunks.append(Chunk(content=text))
        if isinstance(delta.get("annotations"), list):
            self.annotations.extend(delta["annotations"])
        for piece in delta.get("tool_calls") or []:
            if isinstance(piece, dict):
                chunks.extend(self.tool_piece(piece))
        return chunks

    def tool_piece(self, piece: dict[str, Any]) -> list[Chunk]:
        fn = piece.get("function") or {}
        arguments = fn.get("arguments") or ""
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        call = self._call_for(piece.get("index"), piece.get("id"))
        call.name = call.name or fn.get("name") or None
        chunks = []
        if not call.started:
            if not call.name:
                call.pending += arguments
                return []
            call.started = True
            call.id = call.id or new_call_id()
            chunks.append(Chunk(tool_calls=[ToolCallDelta(call.index, id=call.id, name=call.name)]))
            arguments, call.pending = call.pending + arguments, ""
        if arguments:
            self.output.append(arguments)
            chunks.append(Chunk(tool_calls=[ToolCallDelta(call.index, arguments=arguments)]))
        return chunks

    def _call_for(self, upstream_index: Any, call_id: Any) -> _ToolCall:
        if isinstance(upstream_index, int) and upstream_index in self.by_upstream_index:
            call = self.calls[self.by_upstream_index[upstream_index]]
            if not call_id or not call.id or call_id == call.id:
                return call
            # a new id under a reused index: some upstreams number every call 0
        elif not isinstance(upstream_index, int) and not call_id and self.calls:
            return self.calls[-1]
        call = _ToolCall(index=len(self.calls), id=call_id or None)
        self.calls.append(call)
        if isinstance(upstream_index, int):
            self.by_upstream_index[upstream_index] = call.index
        return call

    def finish(self) -> list[Chunk]:
        chunks = []
        for call in self.calls:
            if not call.started:  # the upstream never named it; still hand it over
                call.started, call.name = True, "unknown"
                chunks.append(
                    Chunk(
                        tool_calls=[
                            ToolCallDelta(call.index, id=call.id or new_call_id(), name=call.name)
                        ]
                    )
                )
                if call.pending:
                    chunks.append(
                        Chunk(tool_calls=[ToolCallDelta(call.index, arguments=call.pending)])
                    )
        finish = map_finish(self.finish_reason, bool(self.calls))
        # annotations ride with the finish, so the gateway renders them before it
        chunks.append(Chunk(finish_reason=finish, annotations=self.annotations or None))
        usage = self.usage or estimate_usage(self.call.body, "".join(self.output))
        chunks.append(
            Chunk(
                usage=usage,
                provider_metadata=self.adapter.metadata(self.call, self.last, usage),
                extra=self.extra() or None,
            )
        )
        return chunks

    def extra(self) -> dict[str, Any]:
        """Top-level extras for the final chunk (Perplexity's citations)."""
        return {}


class _ToolCall:
    __slots__ = ("index", "id", "name", "started", "pending")

    def __init__(self, index: int, id: str | None) -> None:
        self.index = index
        self.id = id
        self.name: str | None = None
        self.started = False
        self.pending = ""


def decode_embedding(value: Any) -> list[float]:
    """A float list as is; a base64 string as little-endian float32."""
    if isinstance(value, str):
        raw = base64.b64decode(value, validate=True)
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    return [float(x) for x in value]


def sniff_mime(data: bytes, output_format: Any = None) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    fmt = str(output_format or "png").lower()
    return {"jpeg": "image/jpeg", "jpg": "image/jpeg", "webp": "image/webp"}.get(fmt, "image/png")


def _estimate_input(value: Any) -> int:
    if isinstance(value, str):
        return estimate_text_tokens(value)
    if isinstance(value, list):
        if value and all(isinstance(x, int) for x in value):
            return len(value)  # already token ids
        return sum(_estimate_input(item) for item in value)
    return 0


ADAPTER = OpenAICompatible()
