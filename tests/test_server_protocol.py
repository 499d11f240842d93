"""The daemon's HTTP protocol writes a response's head and body at once (`server/protocol.py`):
the head waits for the next write, everything else leaves at once and in order, and closing
flushes first. Every server test also runs through it (tests/support/gateway.py uses the same
options)."""

from __future__ import annotations

import asyncio

from layers_cli.server.protocol import CoalescingTransport

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
