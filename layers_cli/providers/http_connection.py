"""One keep-alive HTTP/1.1 connection to an upstream: write a request, parse the answer.

An `asyncio.Protocol` fed straight into httptools' response parser (llhttp, the parser
uvicorn uses on the server side). The parser's callbacks fill in the current `Exchange`; the
coroutines in `http.py` wait on it. One exchange at a time per connection; the pool in
`http.py` decides when a connection is reused.

Timeouts are idle timeouts: the exchange fails when nothing arrived for ``timeout`` seconds
while an answer was awaited. One timer per exchange checks the time of the last arrival,
instead of re-arming a timer on every chunk.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import httptools

HIGH_WATER = 1 << 20  # stop reading from the socket while this much body waits unread
LOW_WATER = 1 << 18


class ConnectionClosed(Exception):
    """The connection ended (or broke) before the answer was complete."""


class IdleTimeout(Exception):
    """Nothing arrived for the timeout while an answer was awaited."""


class Exchange:
    """The answer to one request, as it arrives."""

    __slots__ = (
        "status",
        "reason",
        "headers",
        "chunks",
        "buffered",
        "headers_done",
        "complete",
        "keep_alive",
        "error",
        "got_bytes",
        "_decoder",
    )

    def __init__(self) -> None:
        self.status = 0
        self.reason = ""
        self.headers: list[tuple[str, str]] = []
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.headers_done = False
        self.complete = False
        self.keep_alive = False  # read when complete: llhttp forgets it right after
        self.error: BaseException | None = None
        self.got_bytes = False  # anything at all arrived (a reused connection that died
        # before this is safe to retry on a fresh one)
        self._decoder: Any = None

    def start_decoding(self, encoding: str) -> None:
        encoding = encoding.strip().lower()
        if encoding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif encoding == "deflate":
            self._decoder = _Deflate()

    def add_body(self, data: bytes) -> None:
        if self._decoder is not None:
            data = self._decoder.decompress(data)
            if not data:
                return
        self.chunks.append(data)
        self.buffered += len(data)

    def finish_decoding(self) -> None:
        if self._decoder is not None:
            tail = self._decoder.flush()
            if tail:
                self.chunks.append(tail)
                self.buffered += len(tail)

    def take(self) -> bytes:
        data = b"".join(self.chunks) if len(self.chunks) != 1 else self.chunks[0]
        self.chunks.clear()
        self.buffered = 0
        return data


class _Deflate:
    """``Content-Encoding: deflate`` is zlib-wrapped by the RFC, raw deflate in practice."""

    def __init__(self) -> None:
        self._inner: Any = None

    def decompress(self, data: bytes) -> bytes:
        if self._inner is None:
            raw = not data or (data[0] & 0x0F) != 8  # no zlib header: raw deflate
            self._inner = zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
        return self._inner.decompress(data)

    def flush(self) -> bytes:
        return self._inner.flush() if self._inner is not None else b""


class Connection(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.origin: tuple[str, str] = ("", "")  # the pool's key for it
        self.idle_since = 0.0
        self.exchange: Exchange | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._timeout = 0.0
        self._last_arrival = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._until_close = False  # the body ends when the server closes (no length given)

    # -- driven by the pool -----------------------------------------------------------------
    def send(self, data: bytes, timeout: float, soon: bool = False) -> Exchange:
        """Write a request; the answer fills the returned `Exchange`. With ``soon``, the
        write waits for the end of this event-loop step (see `_write_soon`)."""
        assert self.transport is not None and self.exchange is None
        self.exchange = Exchange()
        self._parser = httptools.HttpResponseParser(self)
        self._until_close = False
        self._timeout = timeout
        self._last_arrival = self.loop.time()
        self._timer = self.loop.call_at(self._last_arrival + timeout, self._check_idle)
        if soon:
            self.loop.call_soon(self._write_soon, data)
        else:
            self.transport.write(data)
        return self.exchange

    def _write_soon(self, data: bytes) -> None:
        """A request written after the other callbacks of the step that sent it, so the
        requests sent in one step leave one after the other. Each write wakes the reader
        on the other end; on a VM, waking a CPU that went idle costs the writer tens of
        µs, and one wake-up then serves the whole group (measured at 16 concurrent
        requests: 30-37 → 12-14 µs per write, issue 5). A connection lost meanwhile has
        already failed the exchange (`connection_lost`)."""
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    async def wait(self) -> None:
        """Until something new happened to the current exchange (headers, body, the end,
        an error); raises the exchange's error."""
        exchange = self.exchange
        assert exchange is not None
        if exchange.error is None:
            self._waiter = self.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if exchange.error is not None:
            raise exchange.error

    def consumed(self) -> None:
        """The reader took the buffered body: read from the socket again if paused."""
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def finish(self) -> bool:
        """The exchange is over; True when the connection can carry another request."""
        exchange, self.exchange = self.exchange, None
        self._stop_timer()
        reusable = (
            exchange is not None and exchange.complete and exchange.keep_alive and not self.closed
        )
        if reusable:
            self.idle_since = self.loop.time()
        else:
            self.close()
        return reusable

    def tunnelled(self) -> None:
        """The proxy answered CONNECT: from now on the socket is the tunnel, not HTTP to
        the proxy."""
        self._stop_timer()
        self.exchange = None

    def close(self) -> None:
        self._stop_timer()
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()

    # -- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None or exchange.complete:  # bytes nobody asked for: not reusable
            self.close()
            return
        exchange.got_bytes = True
        self._last_arrival = self.loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ConnectionClosed("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(ConnectionClosed(f"malformed HTTP from the upstream ({exc})"))
        except zlib.error as exc:
            self._fail(ConnectionClosed(f"a compressed body could not be decoded ({exc})"))
        if exchange.buffered > HIGH_WATER and not exchange.complete and self.transport:
            self._paused = True
            self.transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._stop_timer()
        exchange = self.exchange
        if exchange is None or exchange.complete or exchange.error is not None:
            return
        if self._until_close and exchange.headers_done and exc is None:
            exchange.finish_decoding()
            exchange.complete = True
            self._wake()
            return
        reason = f" ({exc.__class__.__name__}: {exc})" if exc else ""
        stage = "mid-body" if exchange.headers_done else "before answering"
        self._fail(ConnectionClosed(f"the upstream closed the connection {stage}{reason}"))

    # -- httptools callbacks ----------------------------------------------------------------
    def on_status(self, status: bytes) -> None:
        assert self.exchange is not None
        self.exchange.reason = status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.exchange is not None
        self.exchange.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        exchange = self.exchange
        assert exchange is not None
        exchange.status = self._parser.get_status_code()
        exchange.headers_done = True
        length = chunked = False
        for name, value in exchange.headers:
            lower = name.lower()
            if lower == "content-encoding":
                exchange.start_decoding(value)
            elif lower == "content-length":
                length = True
            elif lower == "transfer-encoding":
                chunked = "chunked" in value.lower()
        no_body = exchange.status in (204, 304) or 100 <= exchange.status < 200
        self._until_close = not (length or chunked or no_body)
        self._wake()

    def on_body(self, body: bytes) -> None:
        assert self.exchange is not None
        self.exchange.add_body(body)
        self._wake()

    def on_message_complete(self) -> None:
        exchange = self.exchange
        assert exchange is not None
        exchange.finish_decoding()
        exchange.keep_alive = self._parser.should_keep_alive()
        exchange.complete = True
        self._stop_timer()
        self._wake()

    # -- internals --------------------------------------------------------------------------
    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        exchange = self.exchange
        if exchange is not None and exchange.error is None:
            exchange.error = error
        self.close()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _check_idle(self) -> None:
        self._timer = None
        exchange = self.exchange
        if exchange is None or exchange.complete:
            return
        if self._paused:  # the reader is slow, not the upstream
            self._last_arrival = self.loop.time()
        due = self._last_arrival + self._timeout
        if self.loop.time() >= due:
            self._fail(IdleTimeout(f"no answer within {self._timeout:g} s"))
        else:
            self._timer = self.loop.call_at(due, self._check_idle)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
