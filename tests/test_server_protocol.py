"""The daemon's HTTP protocol writes each response once (`server/protocol.py`): what is
written during one event-loop step leaves in one write, in order, and closing flushes first.
Every server test also runs through it (tests/support/gateway.py uses the same options)."""

from __future__ import annotations

import asyncio

from layers_cli.server.protocol import CoalescingTransport


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.paused = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.paused = True


def test_writes_of_one_step_leave_together_and_close_flushes_first():
    async def go() -> RecordingTransport:
        real = RecordingTransport()
        transport = CoalescingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        transport.write(b"hi")
        assert real.writes == []  # not before the step ends
        await asyncio.sleep(0)
        assert real.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi"]
        transport.write(b"data: 1\n\n")
        await asyncio.sleep(0)  # a stream's next event leaves at the next step
        transport.write(b"data: [DONE]\n\n")
        transport.pause_reading()  # everything else is the real transport's
        transport.close()
        assert real.paused and real.closed
        await asyncio.sleep(0)
        transport.write(b"too late")
        await asyncio.sleep(0)
        return real

    real = asyncio.run(go())
    assert real.writes[1:] == [b"data: 1\n\n", b"data: [DONE]\n\n"]  # nothing after close
