"""The daemon's HTTP protocol (`server/protocol.py`).

- It writes a response's head and body at once: the head waits for the next write, everything
  else leaves at once and in order, and closing flushes first.
- It serves the hot endpoints without ASGI (`HotCycle`). Raw sockets check the HTTP/1.1
  details that clients rely on and the SDKs do not exercise: pipelining, ``Expect:
  100-continue``, HTTP/1.0 and ``Connection: close``, chunked streams followed by another
  request on the same connection, a query string, and a bug answered with a 500.

Every server test also runs through it (tests/support/gateway.py uses the same options).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from layers_cli.server.app import create_app
from layers_cli.server.protocol import UVICORN_OPTIONS, CoalescingTransport
from layers_cli.service import Layers
from layers_cli.settings import load_settings
from tests.support.gateway import running_gateway
from tests.support.servers import serve_app

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.paused = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def writelines(self, pieces: tuple[bytes, ...]) -> None:
        self.writes.append(b"".join(pieces))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.paused = True


def test_a_head_leaves_with_its_body_and_later_events_with_their_step():
    async def go() -> list[bytes]:
        real = RecordingTransport()
        transport = CoalescingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(HEAD)
        assert real.writes == []  # the head waits for its body
        transport.write(b"hi")
        assert real.writes == [HEAD + b"hi"]  # and both leave at once
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n")
        transport.write(b"data: 1\n\n")
        assert real.writes[-1].endswith(b"\r\n\r\ndata: 1\n\n")  # the first event at once
        transport.write(b"data: 2\n\n")
        transport.write(b"data: 3\n\n")
        assert len(real.writes) == 2  # later events of the same step wait for its end
        await asyncio.sleep(0)
        assert real.writes[-1] == b"data: 2\n\ndata: 3\n\n"
        transport.write(HEAD)
        await asyncio.sleep(0)  # a head with nothing after it leaves at the end of the step
        transport.write(b"ok")  # and the body's first write still leaves at once
        assert real.writes[-2:] == [HEAD, b"ok"]
        transport.write(b"data: 4\n\n")
        transport.write(HEAD)  # the next response on the connection keeps the order
        transport.pause_reading()  # everything else is the real transport's
        transport.close()  # flushes first
        assert real.paused and real.closed and real.writes[-1] == b"data: 4\n\n" + HEAD
        await asyncio.sleep(0)
        transport.write(b"too late")
        await asyncio.sleep(0)
        return real.writes

    assert len(asyncio.run(go())) == 6  # nothing written twice, nothing after close


def test_a_response_written_soon_leaves_at_the_end_of_its_step_in_order():
    async def go() -> RecordingTransport:
        real = RecordingTransport()
        transport = CoalescingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write_soon(HEAD + b"hi")
        assert real.writes == []  # other requests' writes of this step can join it
        await asyncio.sleep(0)
        assert real.writes == [HEAD + b"hi"]
        transport.write_soon(HEAD + b"a1")  # pipelined answers keep their order
        transport.write_soon(HEAD + b"b2")
        transport.close()  # flushes first
        assert real.writes[-1] == HEAD + b"a1" + HEAD + b"b2" and real.closed
        await asyncio.sleep(0)
        return real

    assert len(asyncio.run(go()).writes) == 2  # nothing written twice


# -- the hot endpoints over raw sockets --------------------------------------------------------

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    with running_gateway(tmp_path_factory.mktemp("protocol")) as handle:
        yield handle


def request(gw, body: dict | None = None, *, target: str = "/v1/chat/completions",
            version: str = "1.1", extra: str = "") -> bytes:  # fmt: skip
    raw = json.dumps(body or CHAT).encode()
    head = (
        f"POST {target} HTTP/{version}\r\nHost: x\r\nAuthorization: Bearer {gw.secret}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n{extra}\r\n"
    )
    return head.encode() + raw


class Reader:
    """Reads HTTP/1.1 responses off one socket: by content-length, chunked, or to EOF."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def _take(self, n: int) -> bytes:
        while len(self.buffer) < n:
            assert self._fill(), "the connection closed mid-response"
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            assert self._fill(), "the connection closed mid-line"
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def response(self) -> tuple[int, dict[str, str], bytes]:
        status = int(self.line().split()[1])
        headers: dict[str, str] = {}
        while line := self.line():
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = self._take(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int(self.line(), 16):
                body += self._take(size)
                assert self._take(2) == b"\r\n"
            assert self._take(2) == b"\r\n"
        else:
            while self._fill():
                pass
            body, self.buffer = self.buffer, b""
        return status, headers, body

    def closed(self) -> bool:
        self.sock.settimeout(5)
        return not self.buffer and not self._fill()


def connect(gw) -> tuple[socket.socket, Reader]:
    host, port = gw.base_url.removeprefix("http://").removesuffix("/v1").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock, Reader(sock)


def charged(gw, request_ids: list[str]) -> int:
    svc = gw.service()
    try:
        rows = {r["id"]: r for r in svc.list_requests(limit=50)}
        return sum(rows[i]["credits_micro"] for i in request_ids)
    finally:
        svc.close()


def test_pipelined_requests_are_answered_in_order_and_each_charged_once(gw):
    before = gw.balance_micro()
    sock, reader = connect(gw)
    with sock:
        sock.sendall(request(gw) + request(gw, {**CHAT, "max_tokens": 5}) + request(gw))
        answers = [reader.response() for _ in range(3)]
    assert [status for status, _, _ in answers] == [200, 200, 200]
    ids = [headers["x-request-id"] for _, headers, _ in answers]
    assert len(set(ids)) == 3
    assert json.loads(answers[1][2])["usage"]["completion_tokens"] <= 5
    assert before - gw.balance_micro() == charged(gw, ids) > 0


def test_concurrent_requests_on_their_own_connections_each_get_their_own_answer(gw):
    """Answers written while other requests are under way wait for the end of their
    event-loop step (`HotCycle._write_whole`); none is lost, mixed up or charged twice."""
    before = gw.balance_micro()
    connections = [connect(gw) for _ in range(8)]
    for n, (sock, _) in enumerate(connections):
        sock.sendall(request(gw, {**CHAT, "max_tokens": 5 + n}))
    answers = [reader.response() for _, reader in connections]
    for sock, _ in connections:
        sock.close()
    assert [status for status, _, _ in answers] == [200] * 8
    ids = [headers["x-request-id"] for _, headers, _ in answers]
    bodies = [json.loads(body) for _, _, body in answers]
    assert [b["layers"]["request_id"] for b in bodies] == ids and len(set(ids)) == 8
    assert all(b["usage"]["completion_tokens"] <= 5 + n for n, b in enumerate(bodies))
    assert before - gw.balance_micro() == charged(gw, ids) > 0


def test_expect_100_continue_gets_its_interim_response_before_the_body_is_sent(gw):
    whole = request(gw, extra="Expect: 100-continue\r\n")
    head, body = whole.split(b"\r\n\r\n", 1)
    sock, reader = connect(gw)
    with sock:
        sock.sendall(head + b"\r\n\r\n")
        assert reader.line() == b"HTTP/1.1 100 Continue" and reader.line() == b""
        sock.sendall(body)
        status, headers, answer = reader.response()
    assert status == 200 and json.loads(answer)["object"] == "chat.completion"


@pytest.mark.parametrize(
    ("version", "extra"), [("1.0", ""), ("1.1", "Connection: close\r\n")], ids=["http1.0", "close"]
)
def test_a_connection_the_client_will_not_reuse_is_answered_then_closed(gw, version, extra):
    sock, reader = connect(gw)
    with sock:
        sock.sendall(request(gw, version=version, extra=extra))
        status, headers, body = reader.response()
        assert status == 200 and headers["connection"] == "close"
        assert json.loads(body)["choices"][0]["message"]["content"]
        assert reader.closed()


def test_a_stream_is_chunked_and_the_connection_serves_the_next_request(gw):
    before = gw.balance_micro()
    sock, reader = connect(gw)
    with sock:
        sock.sendall(request(gw, {**CHAT, "stream": True}))
        status, headers, streamed = reader.response()
        sock.sendall(request(gw))
        status_after, headers_after, _ = reader.response()
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = [line for line in streamed.decode().split("\n\n") if line]
    assert events[-1] == "data: [DONE]" and len(events) >= 3
    assert json.loads(events[0].removeprefix("data: "))["object"] == "chat.completion.chunk"
    assert status_after == 200
    ids = [headers["x-request-id"], headers_after["x-request-id"]]
    assert before - gw.balance_micro() == charged(gw, ids) > 0


def test_a_query_string_or_an_error_takes_the_same_answers(gw):
    sock, reader = connect(gw)
    with sock:
        sock.sendall(request(gw, target="/v1/chat/completions?api-version=1"))
        assert reader.response()[0] == 200  # through the router, same endpoint
        sock.sendall(request(gw, {**CHAT, "model": "nope/nothing"}))
        status, headers, body = reader.response()
        assert status == 404 and headers["content-type"] == "application/json"
        assert json.loads(body)["error"]["request_id"] == headers["x-request-id"]
        sock.sendall(b"GET /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reader.response()[0] == 405  # the method is not hot: starlette answers


@contextlib.contextmanager
def embeddings_answered_by(
    home: Path, handler: Callable[..., Awaitable[Any]], options: dict[str, Any]
) -> Iterator[tuple[Callable[[], None], Reader]]:
    """A gateway whose embeddings endpoint is ``handler``; yields (send one POST on a
    connection, that connection's reader)."""
    layers = Layers(load_settings(home=home, offline=True))
    gateway = layers.gateway()
    gateway.embeddings = handler  # type: ignore[method-assign]
    body = b'{"model": "x", "input": "y"}'
    post = b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
    try:
        with (
            serve_app(create_app(layers, gateway), **options) as url,
            socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as sock,
        ):
            yield (lambda: sock.sendall(post % (len(body), body))), Reader(sock)
    finally:
        layers.close()


@pytest.mark.parametrize("options", [UVICORN_OPTIONS, {}], ids=["layers-protocol", "uvicorn"])
def test_a_bug_is_a_500_with_an_openai_body_and_a_request_id(tmp_path, options):
    async def broken(*args: object) -> None:
        raise RuntimeError("a bug")

    with embeddings_answered_by(tmp_path / "bug", broken, options) as (post, reader):
        for _ in range(2):  # the connection stays usable after the 500
            post()
            status, headers, answer = reader.response()
            error = json.loads(answer)["error"]
            assert status == 500 and error["code"] == "internal_error"
            assert "a bug" not in answer.decode()
            assert headers["x-request-id"] == error["request_id"]


@pytest.mark.parametrize("options", [UVICORN_OPTIONS, {}], ids=["layers-protocol", "uvicorn"])
def test_a_kept_alive_connection_is_closed_once_idle_for_the_timeout_and_not_before(
    tmp_path, options
):
    """Requests keep coming on one connection past the first response's timeout (the
    connection is never idle that long), then it falls idle and is closed."""

    async def answer(*args: object) -> tuple[dict, dict]:
        return {"ok": True}, {}

    timeout = 0.4
    with embeddings_answered_by(
        tmp_path / "idle", answer, {**options, "timeout_keep_alive": timeout}
    ) as (post, reader):
        started = time.monotonic()
        while time.monotonic() - started < 3 * timeout:  # busy past several timeouts
            post()
            assert reader.response()[0] == 200
            time.sleep(timeout / 4)
        post()  # still open
        assert reader.response()[0] == 200
        idle_from = time.monotonic()
        assert reader.closed()  # by the server (within 5 s): EOF without a request from us
        assert time.monotonic() - idle_from >= timeout / 2  # and not at once


@pytest.mark.parametrize(
    "value",
    ["fine\r\nset-cookie: stolen=1", "fine\nset-cookie: stolen=1", "fine\rset-cookie: x", "a\x00b"],
    ids=["crlf", "lf", "cr", "nul"],
)
def test_a_header_value_that_would_split_the_head_is_never_written(tmp_path, value):
    async def splitting(*args: object) -> tuple[dict, dict]:
        return {"ok": True}, {"x-layers-note": value}

    with embeddings_answered_by(tmp_path / "inject", splitting, UVICORN_OPTIONS) as (post, reader):
        post()
        status, headers, answer = reader.response()
        assert status == 500 and answer == b"Internal Server Error"
        assert "set-cookie" not in headers and headers["connection"] == "close"
        assert reader.closed()


def test_a_body_larger_than_the_read_buffer_arrives_whole(gw):
    long_text = "The tide comes in. " * 16_000  # ~300 KB: reading pauses past 64 KiB
    body = {**CHAT, "messages": [{"role": "user", "content": long_text}], "max_tokens": 5}
    sock, reader = connect(gw)
    with sock:
        sock.sendall(request(gw, body))
        status, _, answer = reader.response()
    assert status == 200, answer[:300]
    assert json.loads(answer)["usage"]["prompt_tokens"] > 50_000


def test_a_client_that_leaves_before_its_body_arrives_leaves_no_trace(gw):
    svc = gw.service()
    rows_before = len(svc.list_requests(limit=1000))
    svc.close()
    before = gw.balance_micro()
    whole = request(gw)
    sock, _ = connect(gw)
    with sock:
        sock.sendall(whole[: len(whole) - 10])  # the head and most of the body
    sock, reader = connect(gw)
    with sock:  # the daemon serves the next connection as usual
        sock.sendall(request(gw))
        assert reader.response()[0] == 200
    svc = gw.service()
    try:
        assert len(svc.list_requests(limit=1000)) == rows_before + 1
        assert svc.balance()["open_holds"] == 0
    finally:
        svc.close()
    assert gw.balance_micro() < before
