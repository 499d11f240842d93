"""The one HTTP client adapters use to reach upstreams, over a shared aiohttp pool.

Why aiohttp and not httpx: on bench/ (issue 5) httpx's connection pool (`httpcore`) was 67% of
the daemon's event loop at 16 concurrent requests — it re-checks every pooled socket on every
request (encode/httpcore#924). aiohttp's pool costs a fraction of that per request. Adapters
only see `Response`, `StreamingResponse` and the two errors below, so the library underneath
can change again without touching them.

Timeouts follow the old httpx semantics: ``timeout`` bounds connecting and each read (a
stream that keeps sending is never cut off), not the whole exchange.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from ..jsoncodec import dumps, loads

if TYPE_CHECKING:
    import aiohttp


class TransportTimeout(Exception):
    """The upstream did not connect or answer within the timeout."""


class TransportError(Exception):
    """The connection failed or broke (refused, reset, malformed HTTP, dropped mid-body)."""


class Response:
    """A whole upstream response (body already read)."""

    def __init__(
        self, status: int, reason: str, headers: Mapping[str, str], content: bytes
    ) -> None:
        self.status_code = status
        self.reason_phrase = reason
        self.headers = headers  # case-insensitive
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

    def __init__(self, raw: aiohttp.ClientResponse) -> None:
        super().__init__(raw.status, raw.reason or "", raw.headers, b"")
        self._raw = raw

    async def aread(self) -> bytes:
        with _MAPPED_ERRORS:
            self.content = await self._raw.read()
        return self.content

    async def aiter_lines(self) -> AsyncIterator[str]:
        """Lines as they arrive, without their ``\\n`` / ``\\r\\n``. Splits the raw chunks
        itself so a long line (a base64 image in one SSE event) has no length limit."""
        pending = b""
        with _MAPPED_ERRORS:
            async for data in self._raw.content.iter_any():
                pending += data
                if b"\n" not in data:
                    continue
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    yield line.removesuffix(b"\r").decode("utf-8", errors="replace")
        if pending:
            yield pending.removesuffix(b"\r").decode("utf-8", errors="replace")

    async def aclose(self) -> None:
        self._raw.release()


class _MappedErrors:
    """aiohttp's exceptions → `TransportTimeout` / `TransportError` (stateless, reusable)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        import aiohttp

        if exc is None:
            return False
        if isinstance(exc, TimeoutError):  # aiohttp's timeouts subclass it
            raise TransportTimeout(str(exc) or "timed out") from exc
        if isinstance(exc, aiohttp.ClientError | OSError):
            raise TransportError(f"{exc.__class__.__name__}: {exc}") from exc
        return False


_MAPPED_ERRORS = _MappedErrors()


class HTTPClient:
    """A pool of keep-alive connections shared by every upstream call of one process.

    The aiohttp session is created on first use, inside the running event loop.
    """

    def __init__(
        self,
        *,
        timeout: float = 120.0,
        max_connections: int = 200,
    ) -> None:
        self.timeout = timeout
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[tuple[str, str], str | None] = {}
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _open(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                ttl_dns_cache=300,
            )
            # No trust_env: aiohttp would then re-read ~/.netrc and the proxy variables on
            # every request. `_proxy` honours HTTPS_PROXY / NO_PROXY once per host instead.
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    def _timeout(self, seconds: float | None) -> aiohttp.ClientTimeout:
        limit = self.timeout if seconds is None else seconds
        if limit not in self._timeouts:
            import aiohttp

            self._timeouts[limit] = aiohttp.ClientTimeout(
                total=None, sock_connect=limit, sock_read=limit
            )
        return self._timeouts[limit]

    async def _send(
        self,
        method: str,
        url: str,
        json: Any,
        headers: Mapping[str, str] | None,
        params: Mapping[str, str] | None,
        timeout: float | None,
    ) -> aiohttp.ClientResponse:
        session = self._open()
        data = None
        all_headers = dict(headers or {})
        if json is not None:
            data = dumps(json)
            all_headers.setdefault("content-type", "application/json")
        with _MAPPED_ERRORS:
            return await session.request(
                method,
                url,
                data=data,
                headers=all_headers,
                params=params,
                timeout=self._timeout(timeout),
                proxy=self._proxy(url),
            )

    def _proxy(self, url: str) -> str | None:
        """The proxy the environment names for this URL's host (cached per origin)."""
        scheme, _, rest = url.partition("://")
        origin = (scheme, rest.split("/", 1)[0])
        if origin not in self._proxies:
            import urllib.request

            host = origin[1].rsplit(":", 1)[0] if "]" not in origin[1] else origin[1]
            proxies = urllib.request.getproxies()
            bypass = urllib.request.proxy_bypass(host) if proxies else True
            self._proxies[origin] = None if bypass else proxies.get(scheme)
        return self._proxies[origin]

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
        """Send and read the whole answer (any status: the caller maps errors)."""
        raw = await self._send(method, url, json, headers, params, timeout)
        try:
            with _MAPPED_ERRORS:
                content = await raw.read()
        finally:
            raw.release()
        return Response(raw.status, raw.reason or "", raw.headers, content)

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
        return StreamingResponse(await self._send(method, url, json, headers, params, timeout))

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> HTTPClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
