"""A fast OpenAI-compatible upstream for the bench: raw asyncio, HTTP/1.1 keep-alive.

It answers ``POST /v1/chat/completions`` whole (one JSON body with ``usage``) or streamed
(SSE over chunked transfer encoding: a role+content chunk, more content chunks, a finish chunk,
a usage chunk when ``stream_options.include_usage`` asks for it, then ``data: [DONE]``), and
``GET /v1/models``. Anything else gets an OpenAI-shaped 404. The bodies are fixed templates
with the request's model and a counter spliced in, so the stub does as little as possible per
request: the bench measures the gateway, not the upstream.

Run alone: ``python bench/stub_upstream.py --port 18001`` (prints ``READY <port>`` once bound).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time

REPLY = ["Hello", " from", " the", " stub", " upstream", "."]
PROMPT_TOKENS = 12
COMPLETION_TOKENS = len(REPLY)
USAGE = {
    "prompt_tokens": PROMPT_TOKENS,
    "completion_tokens": COMPLETION_TOKENS,
    "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
    "prompt_tokens_details": {"cached_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0},
}
_CREATED = int(time.time())
_SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _response(status: str, body: bytes, content_type: bytes = b"application/json") -> bytes:
    return (
        b"HTTP/1.1 " + status.encode() + b"\r\ncontent-type: " + content_type
        + b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )  # fmt: skip


def _chunk(data: bytes) -> bytes:
    """One HTTP chunk carrying one SSE event."""
    event = b"data: " + data + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)


class Templates:
    """Pre-rendered bodies for one model id; only the completion id changes per request."""

    def __init__(self, model: str) -> None:
        marker = "@@ID@@"
        whole = {
            "id": marker,
            "object": "chat.completion",
            "created": _CREATED,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(REPLY), "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
            "system_fingerprint": "fp_stub",
        }
        self.whole = _dumps(whole).split(marker.encode())

        def chunk(choices: list[dict[str, object]], **extra: object) -> list[bytes]:
            body = {
                "id": marker,
                "object": "chat.completion.chunk",
                "created": _CREATED,
                "model": model,
                "system_fingerprint": "fp_stub",
                "choices": choices,
                **extra,
            }
            return _dumps(body).split(marker.encode())

        def delta(d: dict[str, object], finish: str | None = None) -> list[dict[str, object]]:
            return [{"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}]

        self.first = chunk(delta({"role": "assistant", "content": REPLY[0]}))
        self.rest = [chunk(delta({"content": piece})) for piece in REPLY[1:]]
        self.rest.append(chunk(delta({}, "stop")))
        self.usage = chunk([], usage=USAGE)


_templates: dict[str, Templates] = {}
_counter = 0


def _next_id() -> bytes:
    global _counter
    _counter += 1
    return b"chatcmpl-stub%d" % _counter


def _fill(parts: list[bytes], cid: bytes) -> bytes:
    return cid.join(parts)


def _error(status: str, message: str, code: str) -> bytes:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": code}}
    return _response(status, _dumps(body))


class StubProtocol(asyncio.Protocol):
    """One connection: parse requests (Content-Length bodies only), answer in order."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            length = 0
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : stop if stop >= 0 else None])
            elif b"\r\ntransfer-encoding:" in head:
                self._send(_error("411 Length Required", "Send a Content-Length.", "length"))
                self._close()
                return
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4 : end + 4 + length])
            del self.buf[: end + 4 + length]
            line = head[: head.find(b"\r\n")] if b"\r\n" in head else head
            self._handle(line, body)

    def _send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _handle(self, line: bytes, body: bytes) -> None:
        parts = line.split(b" ")
        method, path = (parts[0], parts[1]) if len(parts) >= 2 else (b"", b"")
        if method == b"post" and path.endswith(b"/chat/completions"):
            self._chat(body)
        elif method == b"get" and path.endswith(b"/models"):
            data = {
                "object": "list",
                "data": [{"id": "fast", "object": "model", "owned_by": "stub"}],
            }
            self._send(_response("200 OK", _dumps(data)))
        else:
            self._send(_error("404 Not Found", f"No route {path.decode()}.", "not_found"))

    def _chat(self, body: bytes) -> None:
        try:
            request = json.loads(body)
            model = str(request["model"])
        except (ValueError, KeyError, TypeError):
            self._send(_error("400 Bad Request", "Expected a JSON body with a model.", "body"))
            return
        templates = _templates.get(model)
        if templates is None:
            templates = _templates[model] = Templates(model)
        cid = _next_id()
        if not request.get("stream"):
            self._send(_response("200 OK", _fill(templates.whole, cid)))
            return
        options = request.get("stream_options") or {}
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        # the head and first event go out now; the rest on the next loop turn, so a client
        # sees a real first byte before the stream's end
        self._send(_SSE_HEAD + _chunk(_fill(templates.first, cid)))
        rest = [_chunk(_fill(parts, cid)) for parts in templates.rest]
        if include_usage:
            rest.append(_chunk(_fill(templates.usage, cid)))
        rest.append(_chunk(b"[DONE]") + b"0\r\n\r\n")
        asyncio.get_running_loop().call_soon(self._send, b"".join(rest))


async def serve(host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM (handled here: a background job may ignore SIGINT)."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(StubProtocol, host, port, backlog=1024, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows
            loop.add_signal_handler(sig, stop.set)
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
