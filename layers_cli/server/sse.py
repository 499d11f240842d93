"""Server-sent events for chat streams, written as a small ASGI response of our own.

It watches for the client's ``http.disconnect`` while it streams, so a client that goes
away mid-stream stops the upstream call at once and the request is still settled (billed
for what was generated). Frames follow wire.md §1.3: ``data: <json>`` per chunk, never an
empty ``data``, and ``data: [DONE]`` at the end.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..jsoncodec import dumps

if TYPE_CHECKING:
    from ..chatstream import ChatStream


_DONE = b"data: [DONE]\n\n"


def frame(event: dict[str, Any]) -> bytes:
    return b"data: " + dumps(event) + b"\n\n"


class SSEResponse:
    def __init__(self, stream: ChatStream, headers: dict[str, str]) -> None:
        self.stream = stream
        self.headers = headers

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
            *[(k.lower().encode(), v.encode()) for k, v in self.headers.items()],
        ]
        await send({"type": "http.response.start", "status": 200, "headers": raw_headers})
        completed = False

        async def pump() -> None:
            nonlocal completed
            async for events, last in self.stream.batches():
                body = b"".join(frame(event) for event in events)
                if last:  # the closing events and the end marker leave in one write
                    await send({"type": "http.response.body", "body": body + _DONE})
                    completed = True
                    return
                await send({"type": "http.response.body", "body": body, "more_body": True})
            await send({"type": "http.response.body", "body": _DONE})
            completed = True

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        # plain asyncio tasks: an anyio task group per stream cost more than the frames
        pumping = asyncio.ensure_future(pump())
        watching = asyncio.ensure_future(watch_disconnect())
        try:
            await asyncio.wait((pumping, watching), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pumping, watching):
                task.cancel()
            await asyncio.gather(pumping, watching, return_exceptions=True)
            if not completed:
                await asyncio.shield(self.stream.abort())
        if pumping.done() and not pumping.cancelled() and pumping.exception() is not None:
            raise pumping.exception()  # type: ignore[misc]
