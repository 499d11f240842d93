"""Server-sent events for chat streams, written as a small ASGI response of our own.

It watches for the client's ``http.disconnect`` while it streams, so a client that goes
away mid-stream stops the upstream call at once and the request is still settled (billed
for what was generated). Frames follow wire.md §1.3: ``data: <json>`` per chunk, never an
empty ``data``, and ``data: [DONE]`` at the end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from ..jsoncodec import dumps

if TYPE_CHECKING:
    from ..gateway import ChatStream


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

        async with anyio.create_task_group() as tg:

            async def pump() -> None:
                nonlocal completed
                try:
                    async for event in self.stream.events():
                        await send(
                            {"type": "http.response.body", "body": frame(event), "more_body": True}
                        )
                    await send(
                        {
                            "type": "http.response.body",
                            "body": b"data: [DONE]\n\n",
                            "more_body": False,
                        }
                    )
                    completed = True
                finally:
                    tg.cancel_scope.cancel()

            async def watch_disconnect() -> None:
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        break
                tg.cancel_scope.cancel()

            tg.start_soon(pump)
            tg.start_soon(watch_disconnect)

        if not completed:
            with anyio.CancelScope(shield=True):
                await self.stream.abort()
