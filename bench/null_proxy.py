"""The floor of the bench's topology: a proxy that does nothing but copy bytes.

Placed exactly where `layers serve` sits (pinned to the daemon's core, between the load tool
and the stub upstream), it pays the same extra loopback hops and cross-core wake-ups as
Layers and no work at all. Whatever it adds over the direct call is the price of one more
process on another core on this machine, not of any gateway; the table shows it beside
Layers so the two are not confused.

Each client connection gets its own upstream connection (keep-alive both ways); bytes are
pumped in both directions until either side closes. No HTTP parsing, so it serves whole and
streamed responses alike.

Run alone: ``python bench/null_proxy.py --port 0 --upstream 127.0.0.1:18001`` (prints
``READY <port>`` once bound).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def serve(port: int, upstream_host: str, upstream_port: int) -> None:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(upstream_host, upstream_port)
        except OSError:
            client_w.close()
            return
        for w in (client_w, up_w):
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(_pump(client_r, up_w), _pump(up_r, client_w))

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the stub upstream")
    args = parser.parse_args()
    host, _, port = args.upstream.rpartition(":")
    try:
        import uvloop  # the same event loop `layers serve` runs on

        uvloop.run(serve(args.port, host, int(port)))
    except ImportError:
        asyncio.run(serve(args.port, host, int(port)))


if __name__ == "__main__":
    main()
