"""A chat completion being streamed to the client, from its first chunk to its settlement.

`Gateway.chat_stream` does everything up to the first chunk (so failures before any output
are plain HTTP errors, retried and fallen back); a `ChatStream` does the rest and settles
exactly once, whichever way the stream ends: finished, failed upstream, or abandoned by the
client.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from .errors import ProviderError
from .openai_shape import ChunkRenderer
from .providers.base import Chunk, Usage
from .tokens import estimate_text_tokens

if TYPE_CHECKING:
    from .gateway import Ctx, Gateway


class ChatStream:
    """A started stream: iterate `batches()` for OpenAI chunk dicts; `abort()` when the client
    went away. Exactly one settlement happens, whichever way the stream ends."""

    def __init__(
        self,
        gateway: Gateway,
        ctx: Ctx,
        iterator: AsyncIterator[Chunk],
        first: Chunk,
        prompt_estimate: int,
    ) -> None:
        self.gateway = gateway
        self.ctx = ctx
        self.iterator = iterator
        self.first: Chunk | None = first
        self.prompt_estimate = prompt_estimate
        served = ctx.served_by or ctx.model
        self.renderer = ChunkRenderer(
            "chatcmpl-" + ctx.request_id[4:], int(time.time()), served.id if served else ""
        )
        self.finished = False

    @property
    def headers(self) -> dict[str, str]:
        return self.gateway.response_headers(self.ctx, None, None)

    async def _chunks(self) -> AsyncIterator[Chunk]:
        if self.first is not None:
            first, self.first = self.first, None
            yield first
        async for chunk in self.iterator:
            yield chunk

    async def batches(self) -> AsyncIterator[tuple[list[dict[str, Any]], bool]]:
        """OpenAI chunk dicts, grouped as they become ready: the events of one upstream
        chunk, then the closing events; ``True`` marks the last group. A group is one write
        to the client (one syscall instead of one per event)."""
        usage: Usage | None = None
        extra: dict[str, Any] = {}
        metadata: dict[str, Any] | None = None
        try:
            async for chunk in self._chunks():
                events = list(self.renderer.render(chunk))
                if events:
                    if self.ctx.ttft_ms is None:
                        self.ctx.ttft_ms = self.ctx.elapsed_ms
                    yield events, False
                if chunk.usage is not None:
                    usage = chunk.usage
                if chunk.extra:
                    extra.update(chunk.extra)
                if chunk.provider_metadata:
                    metadata = chunk.provider_metadata
        except ProviderError as exc:
            if not self.finished:
                self.finished = True
                await self.gateway.fail(self.ctx, exc)
            yield [exc.to_body(self.ctx.request_id)], True
            return
        if self.finished:
            return
        self.finished = True
        if usage is None:
            usage = self._estimate()
        charged, balance = await self.gateway.settle(
            self.ctx, usage, finish_reason=self.renderer.finish_reason or "stop"
        )
        layers = self.gateway.layers_object(self.ctx, charged, balance, usage.estimated)
        yield list(self.renderer.final(usage, layers, extra, metadata)), True

    def _estimate(self) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_estimate,
            completion_tokens=estimate_text_tokens(self.renderer.generated_text),
            estimated=True,
        )

    async def abort(self) -> None:
        """The client disconnected: stop the upstream and bill what was generated."""
        if self.finished:
            return
        self.finished = True
        closer = getattr(self.iterator, "aclose", None)
        if closer is not None:
            try:
                await closer()
            except Exception:
                pass
        await self.gateway.settle(
            self.ctx, self._estimate(), finish_reason="client_disconnect", status="cancelled"
        )
