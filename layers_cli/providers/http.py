"""The one HTTP client adapters use to reach upstreams: a keep-alive pool per origin.

Why our own client on httptools rather than a library (issue 5, bench/): every request the
app makes pays for this hop. Against the bench's stub on one core, one non-streaming
exchange cost ~150-180 µs of CPU in aiohttp (~300 µs at concurrency 1) and ~30 µs
(~100 µs) here; httpx's pool was slower still (encode/httpcore#924). What is hard in an
HTTP client, parsing, is httptools' (llhttp, the parser uvicorn uses); this module keeps
connections, proxies and timeouts, which is all an upstream API needs: no cookies, no
HTTP/2. Adapters only see `Response`, `StreamingResponse` and the two errors below.

Timeouts bound connecting and each wait for the upstream (a stream that keeps sending is
never cut off), not the whole exchange.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections import deque
from collections.abc import AsyncIterator, Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

from .. import __version__
from ..errors import TransportError, TransportTimeout  # raised here; re-exported
from ..jsoncodec import dumps, loads
from .http_connection import Connection, ConnectionClosed, Exchange, IdleTimeout

KEEP_IDLE_S = 30.0  # a pooled connection idle longer is closed, not reused (servers drop
# idle keep-alive connections after a while; reusing one just as it closes fails)
MAX_REDIRECTS = 5
MAX_REMEMBERED_URLS = 1024


class Headers(dict[str, str]):
    """Response headers, looked up case-insensitively (stored lower-case; repeated
    headers joined with ``, ``)."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__()
        for name, value in pairs:
            key = name.lower()
            previous = dict.get(self, key)
            dict.__setitem__(self, key, value if previous is None else f"{previous}, {value}")

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return dict.get(self, name.lower(), default)


class Response:
    """A whole upstream response (body already read)."""

    def __init__(self, status: int, reason: str, headers: Headers, content: bytes) -> None:
        self.status_code = status
        self.reason_phrase = reason or _phrase(status)
        self.headers = headers
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON; `ValueError` when it is not."""
        return loads(self.content)


class StreamingResponse(Response):
    """An upstream response whose body is still arriving: read it with `aiter_lines` or
    `aread`, and always `aclose` it (the connection goes back to the pool when the body was
    read to the end, and is closed otherwise, which stops the upstream)."""

    def __init__(self, pool: _Pool, conn: Connection, exchange: Exchange) -> None:
        super().__init__(exchange.status, exchange.reason, Headers(exchange.headers), b"")
        self._pool = pool
        self._conn: Connection | None = conn
        self._exchange = exchange

    async def _chunks(self) -> AsyncIterator[bytes]:
        conn, exchange = self._conn, self._exchange
        if conn is None:
            return
        with _mapped_errors():
            while True:
                if exchange.buffered:
                    yield exchange.take()
                    conn.consumed()
                    continue
                if exchange.complete:
                    return
                await conn.wait()

    async def aread(self) -> bytes:
        self.content = b"".join([chunk async for chunk in self._chunks()])
        return self.content

    async def aiter_lines(self) -> AsyncIterator[str]:
        """Lines as they arrive, without their ``\\n`` / ``\\r\\n``; no length limit (a
        base64 image can be one SSE line)."""
        pending = b""
        async for data in self._chunks():
            pending += data
            if b"\n" not in data:
                continue
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.removesuffix(b"\r").decode("utf-8", errors="replace")
        if pending:
            yield pending.removesuffix(b"\r").decode("utf-8", errors="replace")

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool.give_back(conn)


class _Origin:
    """Where a scheme://host:port is reached: directly or through the environment's proxy
    (decided once per origin; aiohttp and httpx re-read the environment per request)."""

    __slots__ = ("key", "host", "port", "tls", "host_header", "proxy", "proxy_auth")

    def __init__(self, scheme: str, netloc: str) -> None:
        parts = urlsplit(f"{scheme}://{netloc}")
        self.key = (scheme, netloc)
        self.tls = scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.tls else 80)
        self.host_header = netloc.rsplit("@", 1)[-1]
        self.proxy: tuple[str, int] | None = None
        self.proxy_auth: str | None = None
        proxy_url = _proxy_for(scheme, self.host)
        if proxy_url:
            proxy = urlsplit(proxy_url if "://" in proxy_url else "http://" + proxy_url)
            self.proxy = (proxy.hostname or "", proxy.port or 80)
            if proxy.username:
                secret = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}"
                self.proxy_auth = "Basic " + base64.b64encode(secret.encode()).decode()


def _proxy_for(scheme: str, host: str) -> str | None:
    import urllib.request

    proxies = urllib.request.getproxies()
    if not proxies or urllib.request.proxy_bypass(host):
        return None
    return proxies.get(scheme)


class _Pool:
    """Idle keep-alive connections per origin, and at most ``limit`` exchanges at once."""

    def __init__(self, limit: int) -> None:
        self.idle: dict[tuple[str, str], deque[Connection]] = {}
        self.busy: set[Connection] = set()
        self.slots = asyncio.Semaphore(limit)
        self._tls: ssl.SSLContext | None = None

    def tls(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    def reusable(self, origin: _Origin) -> Connection | None:
        idle = self.idle.get(origin.key)
        while idle:
            conn = idle.pop()
            if conn.closed or conn.loop.time() - conn.idle_since > KEEP_IDLE_S:
                conn.close()
                continue
            self.busy.add(conn)
            return conn
        return None

    async def connect(self, origin: _Origin, timeout: float) -> Connection:
        loop = asyncio.get_running_loop()
        conn = Connection(loop)
        try:
            async with asyncio.timeout(timeout):
                await self._open(loop, conn, origin)
        except TimeoutError as exc:
            conn.close()
            raise TransportTimeout(f"connecting to {origin.host_header} timed out") from exc
        except (OSError, ssl.SSLError, ConnectionClosed) as exc:
            conn.close()
            raise TransportError(f"{exc.__class__.__name__}: {exc}") from exc
        conn.origin = origin.key
        self.busy.add(conn)
        return conn

    async def _open(self, loop: asyncio.AbstractEventLoop, conn: Connection, o: _Origin) -> None:
        tls = self.tls() if o.tls else None
        if o.proxy is None:
            await loop.create_connection(
                lambda: conn, o.host, o.port, ssl=tls, server_hostname=o.host if tls else None
            )
            return
        await loop.create_connection(lambda: conn, *o.proxy)
        if tls is None:
            return  # plain HTTP through a proxy: requests carry the absolute URL
        target = f"{o.host}:{o.port}"
        head = f"CONNECT {target} HTTP/1.1\r\nhost: {target}\r\n"
        if o.proxy_auth:
            head += f"proxy-authorization: {o.proxy_auth}\r\n"
        exchange = conn.send((head + "\r\n").encode("latin-1"), 3600)
        while not exchange.headers_done:
            await conn.wait()
        if exchange.status != 200:
            raise ConnectionClosed(f"the proxy refused to tunnel to {target}: {exchange.status}")
        conn.tunnelled()
        assert conn.transport is not None
        conn.transport = await loop.start_tls(  # type: ignore[assignment]
            conn.transport, conn, tls, server_hostname=o.host
        )

    def give_back(self, conn: Connection) -> None:
        self.busy.discard(conn)
        if conn.finish():
            self.idle.setdefault(conn.origin, deque()).append(conn)
        self.slots.release()

    def close(self) -> None:
        for idle in self.idle.values():
            for conn in idle:
                conn.close()
        for conn in self.busy:
            conn.close()
        self.idle.clear()
        self.busy.clear()


def _head_parts(
    method: str, origin: _Origin, target: str, headers: Mapping[str, str] | None, has_body: bool
) -> tuple[bytes, bytes]:
    """The head before and after its content-length line (which only a body has)."""
    if origin.proxy is not None and not origin.tls:
        target = f"http://{origin.host_header}{target}"  # absolute form, for the proxy
    before = [f"{method} {target} HTTP/1.1", f"host: {origin.host_header}"]
    given = {k.lower() for k in headers} if headers else set()
    for name, value in (headers or {}).items():
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
            raise TransportError(f"The header {name!r} contains a line break.")
        before.append(f"{name}: {value}")
    after = []
    if has_body and "content-type" not in given:
        after.append("content-type: application/json")
    if "accept-encoding" not in given:
        after.append("accept-encoding: gzip, deflate")
    if "user-agent" not in given:
        after.append(f"user-agent: layers/{__version__}")
    if origin.proxy_auth and not origin.tls:
        after.append(f"proxy-authorization: {origin.proxy_auth}")
    try:
        return (
            "".join(f"{line}\r\n" for line in before).encode("latin-1"),
            "".join(f"{line}\r\n" for line in [*after, ""]).encode("latin-1"),  # then a blank line
        )
    except UnicodeEncodeError as exc:
        raise TransportError("Header values must be Latin-1 text.") from exc


class _mapped_errors:
    """The connection's own exceptions → `TransportTimeout` / `TransportError`."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        if isinstance(exc, IdleTimeout):
            raise TransportTimeout(str(exc)) from exc
        if isinstance(exc, ConnectionClosed | OSError):
            raise TransportError(f"{exc.__class__.__name__}: {exc}") from exc
        return False


class HTTPClient:
    """A pool of keep-alive connections shared by every upstream call of one process
    (created on first use, inside the running event loop)."""

    def __init__(self, *, timeout: float = 120.0, max_connections: int = 200) -> None:
        self.timeout = timeout
        self._max_connections = max_connections
        self._pool: _Pool | None = None
        self._origins: dict[str, tuple[_Origin, str]] = {}
        self._urls: dict[str, tuple[_Origin, str]] = {}  # a gateway calls a few URLs over and over
        self._heads: dict[tuple[Any, ...], tuple[bytes, bytes]] = {}  # see `_head`

    def _proxy(self, url: str) -> str | None:
        """The proxy used for this URL's origin, as host:port (None: direct)."""
        origin, _ = self._split(url)
        return f"http://{origin.proxy[0]}:{origin.proxy[1]}" if origin.proxy else None

    def _split(self, url: str) -> tuple[_Origin, str]:
        """(origin, path?query), the origin parsed once per scheme://host:port."""
        known = self._urls.get(url)
        if known is not None:
            return known
        if len(self._urls) >= MAX_REMEMBERED_URLS:
            self._urls.clear()
        split = self._urls[url] = self._parse_url(url)
        return split

    def _parse_url(self, url: str) -> tuple[_Origin, str]:
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in ("http", "https"):
            raise TransportError(f"Only http:// and https:// URLs are supported, not {url!r}.")
        rest = rest.partition("#")[0]
        cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
        netloc, target = rest[:cut], rest[cut:]
        if not target.startswith("/"):
            target = "/" + target
        prefix = f"{scheme}://{netloc}"
        cached = self._origins.get(prefix)
        if cached is None:
            cached = self._origins[prefix] = (_Origin(scheme, netloc), prefix)
        return cached[0], target

    def _head(
        self,
        method: str,
        origin: _Origin,
        target: str,
        headers: Mapping[str, str] | None,
        body: bytes | None,
    ) -> bytes:
        """The request head. A gateway sends the same few heads over and over (one per
        upstream route), so each is built and checked once, around its content-length."""
        key = (method, origin.key, target, tuple(headers.items()) if headers else (), body is None)
        parts = self._heads.get(key)
        if parts is None:
            if len(self._heads) >= MAX_REMEMBERED_URLS:
                self._heads.clear()
            parts = self._heads[key] = _head_parts(
                method, origin, target, headers, body is not None
            )
        if body is None:
            return parts[0] + parts[1]
        return b"%scontent-length: %d\r\n%s" % (parts[0], len(body), parts[1])

    async def _send(
        self,
        method: str,
        url: str,
        json: Any,
        headers: Mapping[str, str] | None,
        params: Mapping[str, str] | None,
        timeout: float | None,
    ) -> tuple[Connection, Exchange]:
        """Send one request and wait for the status line and headers. Holds a pool slot
        until the caller gives the connection back."""
        if self._pool is None:
            self._pool = _Pool(self._max_connections)
        pool = self._pool
        limit = self.timeout if timeout is None else timeout
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params)
        origin, target = self._split(url)
        body = None if json is None else dumps(json)
        data = self._head(method, origin, target, headers, body)
        if body is not None:
            data += body
        await pool.slots.acquire()
        try:
            while True:
                conn = pool.reusable(origin)
                fresh = conn is None
                if conn is None:
                    conn = await pool.connect(origin, limit)
                # another exchange under way: this write can join the step's others
                exchange = conn.send(data, limit, soon=len(pool.busy) > 1)
                try:
                    with _mapped_errors():
                        while not exchange.headers_done:
                            await conn.wait()
                    return conn, exchange
                except TransportError:
                    conn.close()
                    pool.busy.discard(conn)
                    # a kept-alive connection the server closed just as we reused it:
                    # nothing reached the upstream's application, so try a fresh one
                    if fresh or exchange.got_bytes:
                        raise
                except BaseException:
                    conn.close()
                    pool.busy.discard(conn)
                    raise
        except BaseException:
            pool.slots.release()
            raise

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Send and read the whole answer (any status: the caller maps errors). A GET
        follows redirects (image downloads can be redirected to a CDN)."""
        for _ in range(MAX_REDIRECTS + 1):
            conn, exchange = await self._send(method, url, json, headers, params, timeout)
            response = await self._read_whole(conn, exchange)
            location = response.headers.get("location")
            if method != "GET" or response.status_code not in (301, 302, 303, 307, 308):
                return response
            if not location:
                return response
            url, params = _join(url, location), None
        return response

    async def _read_whole(self, conn: Connection, exchange: Exchange) -> Response:
        """The rest of the body, taken as it comes (so a big one never pauses the socket,
        see HIGH_WATER); the connection goes back to the pool either way."""
        assert self._pool is not None
        parts = []
        try:
            with _mapped_errors():
                while not exchange.complete:
                    await conn.wait()
                    if exchange.buffered:
                        parts.append(exchange.take())
                        conn.consumed()
        finally:
            self._pool.give_back(conn)
        parts.append(exchange.take())
        content = parts[0] if len(parts) == 1 else b"".join(parts)
        return Response(exchange.status, exchange.reason, Headers(exchange.headers), content)

    async def stream(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> StreamingResponse:
        """Send and return once the status line and headers are in."""
        conn, exchange = await self._send(method, url, json, headers, params, timeout)
        assert self._pool is not None
        return StreamingResponse(self._pool, conn, exchange)

    async def aclose(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    async def __aenter__(self) -> HTTPClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _join(base: str, location: str) -> str:
    from urllib.parse import urljoin

    return urljoin(base, location)
