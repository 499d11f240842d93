"""The upstream client seam (`providers/http.py`) against real loopback servers: long SSE
lines, line endings, gzip and deflate, chunked and close-delimited bodies, keep-alive reuse,
timeouts, refused and dropped connections, TLS, redirects, and proxies from the environment
(plain and CONNECT tunnels)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
import threading
import zlib
from collections.abc import Callable, Iterator

import pytest

from layers_cli.providers.http import HTTPClient, TransportError, TransportTimeout
from tests.support.servers import free_socket, serve_app

BIG = "x" * 300_000  # one SSE line far beyond any default stream-reader limit
MEGABYTE = b"0123456789abcdef" * 65_536


async def upstream(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/sse":
        await send(
            {"type": "http.response.start", "status": 200,
             "headers": [(b"content-type", b"text/event-stream")]}
        )  # fmt: skip
        for piece in (b"data: one\r\n\r\n", b"data: " + BIG.encode(), b"\n\n", b"data: two"):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b"\n\n"})
    elif path == "/gzip":
        body = gzip.compress(b'{"ok": true, "text": "\xc3\xa9t\xc3\xa9"}')
        await send(
            {"type": "http.response.start", "status": 200,
             "headers": [(b"content-type", b"application/json"), (b"content-encoding", b"gzip")]}
        )  # fmt: skip
        await send({"type": "http.response.body", "body": body})
    elif path == "/echo":
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = dict(scope["headers"])
        answer = {
            "method": scope["method"],
            "query": scope["query_string"].decode(),
            "body": body.decode(),
            "content_type": headers.get(b"content-type", b"").decode(),
            "x_test": headers.get(b"x-test", b"").decode(),
        }
        await send(
            {"type": "http.response.start", "status": 200,
             "headers": [(b"content-type", b"application/json")]}
        )  # fmt: skip
        await send({"type": "http.response.body", "body": json.dumps(answer).encode()})
    elif path == "/big":  # several times the client's read-ahead limit
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(8):
            await send({"type": "http.response.body", "body": MEGABYTE, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/moved":
        await send(
            {"type": "http.response.start", "status": 302, "headers": [(b"location", b"/gzip")]}
        )
        await send({"type": "http.response.body", "body": b""})
    elif path == "/slow":
        await asyncio.sleep(2)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"late"})
    else:
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b"teapot"})


@pytest.fixture(scope="module")
def base():
    with serve_app(upstream) as url:
        yield url


def run(coro):
    return asyncio.run(coro)


def test_sse_lines_of_any_length_and_either_line_ending(base):
    async def go() -> list[str]:
        async with HTTPClient() as http:
            response = await http.stream("GET", base + "/sse")
            try:
                return [line async for line in response.aiter_lines()]
            finally:
                await response.aclose()

    lines = run(go())
    assert lines == ["data: one", "", "data: " + BIG, "", "data: two", ""]


def test_gzip_bodies_are_decoded_and_any_status_is_returned(base):
    async def go():
        async with HTTPClient() as http:
            ok = await http.request("GET", base + "/gzip")
            return ok, await http.request("GET", base + "/nothing")

    ok, teapot = run(go())
    assert ok.status_code == 200 and ok.json() == {"ok": True, "text": "été"}
    assert ok.headers["Content-Type"] == "application/json"  # case-insensitive
    assert teapot.status_code == 418 and teapot.text == "teapot"
    assert teapot.reason_phrase == "I'm a Teapot"  # the fallback when a body says nothing


def test_a_slow_answer_times_out(base):
    async def go():
        async with HTTPClient(timeout=0.3) as http:
            await http.request("GET", base + "/slow")

    with pytest.raises(TransportTimeout):
        run(go())


def test_a_refused_connection_is_a_transport_error():
    sock = free_socket()  # bound, never listening: connecting is refused
    port = sock.getsockname()[1]
    try:

        async def go():
            async with HTTPClient(timeout=2) as http:
                await http.request("GET", f"http://127.0.0.1:{port}/")

        with pytest.raises(TransportError):
            run(go())
    finally:
        sock.close()


def test_a_connection_dropped_mid_body_is_a_transport_error():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve_once() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nonly part of it")
        conn.close()

    thread = threading.Thread(target=serve_once, daemon=True)
    thread.start()

    async def go():
        async with HTTPClient(timeout=5) as http:
            await http.request("GET", f"http://127.0.0.1:{port}/")

    try:
        with pytest.raises(TransportError):
            run(go())
    finally:
        thread.join(timeout=5)
        listener.close()


def test_proxies_come_from_the_environment_once_per_host(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1,.corp.example")
    http = HTTPClient()
    assert http._proxy("https://api.openai.com/v1/chat/completions") == "http://proxy.internal:3128"
    assert http._proxy("https://llm.corp.example/v1") is None
    assert http._proxy("https://127.0.0.1:8443/v1") is None
    assert http._proxy("http://api.openai.com/v1") is None  # no HTTP_PROXY set
    monkeypatch.delenv("HTTPS_PROXY")
    # remembered per origin: the environment is read once per host, not per request
    assert http._proxy("https://api.openai.com/v1/embeddings") == "http://proxy.internal:3128"


# ── raw servers: exact bytes on the wire ─────────────────────────────────────────────────────


@contextlib.contextmanager
def raw_server(answer: Callable[[socket.socket, int], None]) -> Iterator[tuple[int, list[int]]]:
    """A loopback server handing each accepted connection (and its number) to ``answer``
    in a thread; yields (port, accepted), ``accepted`` growing as connections arrive."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(len(accepted))
            threading.Thread(target=answer, args=(conn, len(accepted) - 1), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        listener.close()


def read_request(conn: socket.socket) -> bytes:
    """One request's head and (content-length) body, or b"" when the client closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = conn.recv(65536)
        if not more:
            return data
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += conn.recv(65536)
    return head


def test_chunked_deflate_and_close_delimited_bodies_are_read_whole():
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    deflated = raw_deflate.compress(b"raw deflate") + raw_deflate.flush()

    def answer(conn: socket.socket, n: int) -> None:
        with conn:
            path = read_request(conn).split(b" ")[1]
            if path == b"/chunked":
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
                )
            elif path == b"/deflate":
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-encoding: deflate\r\ncontent-length: "
                    + str(len(deflated)).encode() + b"\r\n\r\n" + deflated
                )  # fmt: skip
            else:  # no length, no chunks: the body ends when the server closes
                conn.sendall(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end")

    async def go(port: int) -> list[bytes]:
        async with HTTPClient(timeout=5) as http:
            return [
                (await http.request("GET", f"http://127.0.0.1:{port}/{path}")).content
                for path in ("chunked", "deflate", "close")
            ]

    with raw_server(answer) as (port, _):
        assert run(go(port)) == [b"hello world", b"raw deflate", b"until the end"]


def test_connections_are_kept_alive_and_a_stale_one_is_replaced():
    """Sequential requests share one connection. When the server closes a kept-alive
    connection just as the next request goes out (nothing answered yet), the request is
    sent again on a fresh connection instead of failing."""
    seen: list[bytes] = []

    def answer(conn: socket.socket, n: int) -> None:
        with conn:
            for i in range(3):
                head = read_request(conn)
                if not head:
                    return
                seen.append(head.split(b"\r\n")[0])
                if n == 0 and i == 2:
                    return  # the third request on the first connection: closed unanswered
                body = f"conn {n} answer {i}".encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))

    async def go(port: int) -> list[str]:
        async with HTTPClient(timeout=5) as http:
            url = f"http://127.0.0.1:{port}/v1/x"
            return [(await http.request("POST", url, json={"i": i})).text for i in range(3)]

    with raw_server(answer) as (port, accepted):
        texts = run(go(port))
    assert texts == ["conn 0 answer 0", "conn 0 answer 1", "conn 1 answer 0"]
    assert len(accepted) == 2
    assert seen == [b"POST /v1/x HTTP/1.1"] * 4  # the unanswered one, then its resend


def test_bodies_params_and_headers_are_sent_and_line_breaks_refused(base):
    async def go():
        async with HTTPClient() as http:
            echoed = await http.request(
                "POST", base + "/echo?a=1", json={"x": "é"}, params={"b": "two words"},
                headers={"x-test": "yes"},
            )  # fmt: skip
            with pytest.raises(TransportError, match="line break"):
                await http.request("GET", base + "/echo", headers={"x-test": "a\r\nx-evil: 1"})
            return echoed.json()

    echoed = run(go())
    assert echoed["method"] == "POST"
    assert echoed["query"] == "a=1&b=two+words"
    assert json.loads(echoed["body"]) == {"x": "é"}
    assert echoed["content_type"] == "application/json" and echoed["x_test"] == "yes"


def test_concurrent_requests_each_get_their_own_answer(base):
    """With other exchanges under way, a request is written at the end of the event-loop
    step (`Connection._write_soon`): each still goes out whole, on its own connection."""

    async def go() -> list[object]:
        async with HTTPClient() as http:
            answers = await asyncio.gather(
                *(http.request("POST", base + "/echo", json={"i": i}) for i in range(20))
            )
            again = await http.request("POST", base + "/echo", json={"i": "alone"})
            return [json.loads(a.json()["body"])["i"] for a in (*answers, again)]

    assert run(go()) == [*range(20), "alone"]


def test_a_get_follows_redirects_and_a_post_does_not(base):
    async def go():
        async with HTTPClient() as http:
            return await http.request("GET", base + "/moved"), await http.request(
                "POST", base + "/moved", json={}
            )

    got, posted = run(go())
    assert got.status_code == 200 and got.json()["ok"] is True
    assert posted.status_code == 302 and posted.headers["location"] == "/gzip"


def test_cancelling_a_request_closes_its_connection(base):
    """A client that goes away mid-request stops the upstream: the connection is closed,
    not handed to the next request with an answer still coming."""

    async def go():
        async with HTTPClient(timeout=5) as http:
            task = asyncio.ensure_future(http.request("GET", base + "/slow"))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            pool = http._pool
            assert pool is not None and not pool.busy
            assert all(not idle for idle in pool.idle.values())
            return (await http.request("GET", base + "/gzip")).json()

    assert run(go())["ok"] is True


# ── TLS and proxies ──────────────────────────────────────────────────────────────────────────


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """A CA, a certificate for 127.0.0.1 it signed, and the upstream served over TLS."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    folder = tmp_path_factory.mktemp("tls")
    ca_file, key_file, chain_file = folder / "ca.pem", folder / "key.pem", folder / "chain.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.private_key_pem.write_to_path(str(key_file))
    chain_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    with serve_app(upstream, ssl_keyfile=str(key_file), ssl_certfile=str(chain_file)) as url:
        yield url.replace("http://", "https://"), str(ca_file)


def test_tls_upstreams_are_verified(tls, monkeypatch):
    url, ca_file = tls

    async def go():
        async with HTTPClient(timeout=5) as http:
            return (await http.request("GET", url + "/gzip")).json()

    with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
        run(go())  # a certificate no trusted authority signed
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    assert run(go())["ok"] is True


@contextlib.contextmanager
def proxy() -> Iterator[tuple[str, list[bytes]]]:
    """A forwarding proxy: CONNECT tunnels, and absolute-form requests relayed as they are.
    Yields its URL (with credentials) and the first line + auth header of each request."""
    seen: list[bytes] = []

    def pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def answer(conn: socket.socket, n: int) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head = data.split(b"\r\n\r\n")[0].split(b"\r\n")
        auth = next((ln for ln in head if ln.lower().startswith(b"proxy-authorization")), b"")
        seen.append(head[0] + b" | " + auth)
        method, target = head[0].split(b" ")[:2]
        if method == b"CONNECT":
            host, port = target.rsplit(b":", 1)
            upstream_sock = socket.create_connection((host.decode(), int(port)))
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            hostport = target.split(b"/")[2].decode()
            host, port = hostport.rsplit(":", 1)
            upstream_sock = socket.create_connection((host, int(port)))
            upstream_sock.sendall(data)
        threading.Thread(target=pipe, args=(upstream_sock, conn), daemon=True).start()
        pipe(conn, upstream_sock)

    with raw_server(answer) as (port, _):
        yield f"http://user:s%40cret@127.0.0.1:{port}", seen


def test_requests_go_through_the_environments_proxy(base, tls, monkeypatch):
    url, ca_file = tls
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    for name in ("NO_PROXY", "no_proxy", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)

    async def go():
        async with HTTPClient(timeout=5) as http:
            tunnelled = await http.request("GET", url + "/gzip")
            relayed = await http.request("POST", base + "/echo", json={"via": "proxy"})
            return tunnelled.json(), relayed.json()

    with proxy() as (proxy_url, seen):
        monkeypatch.setenv("HTTPS_PROXY", proxy_url)
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        tunnelled, relayed = run(go())
    assert tunnelled["ok"] is True and json.loads(relayed["body"]) == {"via": "proxy"}
    auth = b"proxy-authorization: Basic dXNlcjpzQGNyZXQ="  # user:s@cret
    tls_port, plain_port = url.rsplit(":", 1)[1], base.rsplit(":", 1)[1]
    assert seen == [
        f"CONNECT 127.0.0.1:{tls_port} HTTP/1.1".encode() + b" | " + auth,
        f"POST http://127.0.0.1:{plain_port}/echo HTTP/1.1".encode() + b" | " + auth,
    ]


def test_bodies_beyond_the_read_ahead_limit_are_read_whole_and_streamed(base):
    """The client stops reading the socket while a megabyte waits unread (a slow consumer of
    a stream); a whole response is consumed as it arrives, so it never stalls."""

    async def go() -> tuple[int, int]:
        async with HTTPClient(timeout=5) as http:
            whole = await http.request("GET", base + "/big")
            response = await http.stream("GET", base + "/big")
            try:
                streamed = await response.aread()
            finally:
                await response.aclose()
            return len(whole.content), len(streamed)

    assert run(go()) == (8 * len(MEGABYTE), 8 * len(MEGABYTE))
