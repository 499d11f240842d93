"""uvicorn's HTTP protocol (httptools), with fewer socket writes and less work per request.

uvicorn writes a response's status line and headers, then its body, with two
``transport.write`` calls: two syscalls and, on a TCP_NODELAY socket, two segments the client
wakes up for; a stream writes once per event batch. `CoalescingTransport` sends a response
head together with the write that follows it (the whole body, or a stream's first events) at
once, and gathers any further writes made in the same event-loop step into one write at the
end of that step. Nothing waits for I/O: the first byte of a body leaves as soon as it is
written, and later events at the latest when the writer next waits for anything.

`LayersHttpProtocol` serves the hot endpoints (`App.hot_raw`) with `HotCycle`, which calls the
endpoint and writes its response as bytes, without the ASGI messages in between. While other
requests are under way, a whole response waits for the end of its event-loop step
(`CoalescingTransport.write_soon`), so the writes of one step leave one after the other: on a
VM, each write that wakes the client's idle CPU costs the writer tens of µs, and one wake-up
then serves the group (the upstream client does the same with its requests,
`Connection._write_soon`).

Measured at 16 concurrent requests (issue 5): coalescing took 1,160-1,250 -> 1,390-1,710
req/s and the event loop's system time 95-114 -> 60-65 µs per request; `HotCycle` took the
event loop's instructions per request 777k -> 711k (bench/instructions.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .asgi import JSON, Message

if TYPE_CHECKING:
    from .asgi import Endpoint

_HEAD = b"HTTP/1.1 "  # how uvicorn's status lines start
# every byte a header value may carry: not the control characters (CR and LF would split the
# head), tab aside; `bytes.translate` deleting these leaves only what must not be written
_SAFE_VALUE_BYTES = bytes(b for b in range(256) if b == 9 or 32 <= b != 127)
_log = logging.getLogger("uvicorn.error")


class CoalescingTransport:
    """Writes as described above; everything else is the real transport's (flow control,
    ``close`` after flushing, ``get_extra_info``)."""

    __slots__ = ("_transport", "_loop", "_pending", "_head_waiting")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._head_waiting = False

    def write(self, data: bytes) -> None:
        self._append(data)
        if data.startswith(_HEAD):
            self._head_waiting = True
        elif self._head_waiting:  # the first body write after a head: it leaves now
            self._head_waiting = False
            self.flush()

    def write_now(self, data: bytes) -> None:
        """Write ``data`` at once, after anything pending: a whole response, which nothing
        follows."""
        self._pending.append(data)
        self._head_waiting = False
        self.flush()

    def write_soon(self, data: bytes) -> None:
        """Write ``data`` at the end of this event-loop step, with whatever else is pending
        by then: a whole response while other requests are in flight (`HotCycle`)."""
        self._append(data)
        self._head_waiting = False

    def _append(self, data: bytes) -> None:
        """Pending until the end of this step (the first one pending schedules the flush)."""
        pending = self._pending
        if not pending:
            self._loop.call_soon(self.flush)
        pending.append(data)

    def flush(self) -> None:
        """Write what is pending. A head that leaves alone still counts as waiting: the
        body's first write will not be held back either."""
        pending = self._pending
        if pending:
            self._pending = []
            if not self._transport.is_closing():
                self._transport.writelines(pending)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    # uvicorn asks these per request or per pause: spelled out, since reaching `__getattr__`
    # first raises (and formats) an AttributeError, ~8k instructions
    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HotCycle:
    """One request to a hot endpoint (`App.hot_raw`): what uvicorn's ``RequestResponseCycle``
    does for it, without ASGI in between. The endpoint's response is written as bytes: a JSON
    response as one head+body write; anything else (a stream) through `send`, the ASGI subset
    it uses. Per request this skips the ASGI messages, uvicorn's header checks (our headers
    are ours) and the router.

    The protocol drives it through the attributes uvicorn's cycle has (``body``, ``more_body``,
    ``message_event``, ``disconnected``, ``keep_alive``, ``response_complete``), so pipelining,
    flow control, keep-alive and graceful shutdown stay uvicorn's.
    """

    __slots__ = (
        "protocol", "scope", "transport", "flow", "keep_alive", "waiting_for_100_continue",
        "body", "more_body", "disconnected", "response_started", "response_complete",
        "chunked", "message_event", "on_response",
    )  # fmt: skip

    def __init__(self, protocol: LayersHttpProtocol, keep_alive: bool) -> None:
        self.protocol = protocol
        self.scope = protocol.scope
        self.transport: CoalescingTransport = protocol.transport  # type: ignore[assignment]
        self.flow = protocol.flow
        self.keep_alive = keep_alive
        self.waiting_for_100_continue = protocol.expect_100_continue
        self.body = bytearray()
        self.more_body = True
        self.disconnected = False
        self.response_started = False
        self.response_complete = False
        self.chunked = False
        self.message_event = _Signal()
        self.on_response: Callable[[], None] = protocol.on_response_complete

    async def run_asgi(self, endpoint: Endpoint) -> None:
        """(The name is uvicorn's: its protocol starts every cycle so.)"""
        try:
            response = await endpoint.respond(self.scope, self.receive)
            if response is None:
                return
            if type(response) is JSON:
                self._write_whole(response.status_code, response.raw_headers, response.body)
            else:
                await response(self.scope, self.receive, self.send)
        except BaseException as exc:
            _log.error("Exception in ASGI application\n", exc_info=exc)
            if not self.response_started:
                self.keep_alive = False
                text = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21")]
                self._write_whole(500, text, b"Internal Server Error")
            else:
                self.transport.close()
        finally:
            self.on_response = _nothing

    def _head(self, status: int, headers: list[tuple[bytes, bytes]]) -> list[bytes]:
        out = [STATUS_LINE[status]]
        for name, value in self.protocol.server_state.default_headers:
            out += (name, b": ", value, b"\r\n")
        for name, value in headers:
            out += (name, b": ", value, b"\r\n")
        if b"".join(out[3::4]).translate(None, _SAFE_VALUE_BYTES):  # the values, joined
            raise RuntimeError("Invalid HTTP header value.")  # (answered with a 500)
        self.response_started = True
        self.waiting_for_100_continue = False
        if not self.keep_alive:
            out.append(b"connection: close\r\n")
        return out

    def _write_whole(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """``headers`` include the body's content-length (`JSON` gives it)."""
        if self.disconnected:
            return
        out = self._head(status, headers)
        out += (b"\r\n", body)
        if len(self.protocol.tasks) > 1:  # other requests under way: see `write_soon`
            self.transport.write_soon(b"".join(out))
        else:
            self.transport.write_now(b"".join(out))
        self._complete()

    def _complete(self) -> None:
        self.response_complete = True
        self.message_event.set()
        if not self.keep_alive:
            self.transport.close()
        self.on_response()

    async def send(self, message: Message) -> None:
        """ASGI's send, for a response of unknown length: chunked unless it gives a
        content-length (then ``body`` must be exactly that)."""
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        if not self.response_started:
            headers = list(message.get("headers", ()))
            self.chunked = not any(name == b"content-length" for name, _ in headers)
            if self.chunked:
                headers.append((b"transfer-encoding", b"chunked"))
            out = self._head(message["status"], headers)
            out.append(b"\r\n")
            self.transport.write(b"".join(out))
            return
        if self.response_complete:
            raise RuntimeError("A message was sent after the response completed.")
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if self.chunked:
            out = [b"%x\r\n" % len(body), body, b"\r\n"] if body else []
            if not more:
                out.append(b"0\r\n\r\n")
            self.transport.write(b"".join(out))
        elif body:
            self.transport.write(body)
        if not more:
            self._complete()

    async def receive(self) -> Message:
        if self.waiting_for_100_continue and not self.transport.is_closing():
            self.transport.write_now(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.waiting_for_100_continue = False
        if not self.disconnected and not self.response_complete:
            self.flow.resume_reading()
            await self.message_event.wait()
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        message = {"type": "http.request", "body": bytes(self.body), "more_body": self.more_body}
        self.body = bytearray()
        return message


class _Signal:
    """``asyncio.Event``'s set/wait/clear for one waiter, cleared as the wait returns (what
    uvicorn's cycle does with its event), without the event's per-request setup."""

    __slots__ = ("is_set", "_waiter")

    def __init__(self) -> None:
        self.is_set = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self.is_set = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        if not self.is_set:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        self.is_set = False


def _nothing() -> None:
    pass


class LayersHttpProtocol(HttpToolsProtocol):
    """uvicorn's protocol with `CoalescingTransport`, serving exact matches of the hot
    endpoints with `HotCycle`. Anything unusual (a query string, an encoded path, an upgrade,
    a ``root_path``, a concurrency limit, or an app that is not `App`) takes uvicorn's way."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        config = self.config
        plain = not config.root_path and config.limit_concurrency is None
        self.hot: dict[tuple[bytes, bytes], Endpoint] = (
            getattr(self.app, "hot_raw", {}) if plain else {}
        )

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._idle_since: float | None = None
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]

    def _start(self, cycle: Any, app: Any) -> None:
        """Run a request's cycle (what uvicorn's `_start_asgi_task` does; releases before
        0.3x have none)."""
        task = self.loop.create_task(cycle.run_asgi(app))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)  # graceful shutdown waits for it

    # Keep-alive timeout. uvicorn arms a timer as each response completes and cancels it as
    # the next request arrives: a timer made and unmade per request (`call_later` alone was
    # 1.1% of the event loop's instructions, issue 5). Here the connection notes when it
    # fell idle, and one timer at a time checks that note when it fires: a connection idle
    # for `timeout_keep_alive` seconds is still closed then.
    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:  # the next pipelined request starts (its data is in)
            self._start(*self.pipeline.pop())
            return
        self._idle_since = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self._arm_keep_alive(self.timeout_keep_alive)

    def _unset_keepalive_if_required(self) -> None:
        """Data arrived: not idle (the armed timer, if any, will find it so)."""
        self._idle_since = None

    def _arm_keep_alive(self, delay: float) -> None:
        self.timeout_keep_alive_task = self.loop.call_later(delay, self._keep_alive_expired)

    def _keep_alive_expired(self) -> None:
        self.timeout_keep_alive_task = None
        idle_since = self._idle_since
        if idle_since is None:  # busy: the next response to complete arms a timer
            return
        left = idle_since + self.timeout_keep_alive - self.loop.time()
        if left > 0:
            self._arm_keep_alive(left)
        elif not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.timeout_keep_alive_task is not None:  # nothing left for it to close
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None

    def on_headers_complete(self) -> None:
        method = self.parser.get_method()
        endpoint = self.hot.get((method, self.url))
        if endpoint is None or self.parser.should_upgrade():
            super().on_headers_complete()
            return
        http_version = self.parser.get_http_version()
        scope = self.scope
        scope["method"] = method.decode("ascii")
        scope["path"] = self.url.decode("ascii")
        scope["raw_path"] = self.url
        scope["query_string"] = b""
        if http_version != "1.1":
            scope["http_version"] = http_version
        keep_alive = http_version != "1.0" and self.parser.should_keep_alive()
        existing = self.cycle
        self.cycle = cycle = HotCycle(self, keep_alive)  # type: ignore[assignment]
        if existing is None or existing.response_complete:
            self._start(cycle, endpoint)
        else:  # pipelined: uvicorn starts it when the one before completes
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, endpoint))  # type: ignore[arg-type]


# what `layers serve` (and the tests' gateway) give uvicorn.Config
UVICORN_OPTIONS: dict[str, Any] = {
    "http": LayersHttpProtocol,
    # the gateway trusts no X-Forwarded-* header (and skips the middleware per request)
    "proxy_headers": False,
    "server_header": False,  # no "server: uvicorn" on every response
}
