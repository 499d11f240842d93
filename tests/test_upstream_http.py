"""The upstream client seam (`providers/http.py`) against real loopback servers: long SSE
lines, line endings, gzip, timeouts, refused and dropped connections, proxies from the
environment."""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading

import pytest

from layers_cli.providers.http import HTTPClient, TransportError, TransportTimeout
from tests.support.servers import free_socket, serve_app

BIG = "x" * 300_000  # one SSE line far beyond any default stream-reader limit


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
