"""Load generators for the bench: `wrk` for whole responses, a raw-socket client for streams.

`wrk` reports through a Lua ``done()`` hook that prints one JSON line, so nothing depends on its
human-readable output. The streaming client speaks just enough HTTP/1.1 (keep-alive, chunked
and Content-Length bodies) to time the first SSE event and the end of the stream without a
client library's own overhead skewing either side of the comparison.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

WRK_INSTALL_HINT = (
    "wrk is not installed. Install it with `sudo apt-get install -y wrk` (Debian/Ubuntu), "
    "`sudo dnf install wrk` (Fedora) or `brew install wrk` (macOS), then run the bench again."
)

_LUA = """\
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = {auth}

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {{"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"mean_us":%.1f,"max_us":%d}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max))
end
"""


def _cpu_ticks() -> tuple[int, int] | None:
    """(steal, all) clock ticks of every CPU so far, from Linux's /proc/stat (None elsewhere):
    time the hypervisor gave this VM's CPUs to someone else."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (fields[7], sum(fields[:8])) if len(fields) >= 8 else None


def _steal_pct(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    if before is None or after is None or after[1] <= before[1]:
        return None
    return 100 * (after[0] - before[0]) / (after[1] - before[1])


def stat_cpu_s(path: str) -> tuple[float, float] | None:
    """(user, system) CPU seconds from a Linux ``/proc/PID/stat`` or ``/proc/PID/task/TID/stat``
    file (None where there is none). Time the hypervisor stole is accounted as steal, not
    here, so CPU time per request moves far less than throughput between a VM's calm and
    slow minutes."""
    try:
        with open(path) as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process so far, all its threads."""
    times = stat_cpu_s(f"/proc/{pid}/stat")
    return None if times is None else sum(times)


def _lua_string(text: str) -> str:
    """A Lua string literal (JSON escaping is a subset of what Lua accepts)."""
    return json.dumps(text)


def write_wrk_script(path: Path, body: dict[str, Any], api_key: str) -> Path:
    payload = json.dumps(body, separators=(",", ":"))
    path.write_text(_LUA.format(body=_lua_string(payload), auth=_lua_string(f"Bearer {api_key}")))
    return path


def run_wrk(
    wrk: str,
    script: Path,
    url: str,
    *,
    connections: int,
    seconds: float,
    pin: list[str],
    threads: int = 1,
    cpu_of: int | None = None,
) -> dict[str, Any]:
    """One wrk run; returns requests/s, latency percentiles (ms) and error counts, and with
    ``cpu_of`` (a server's pid) that process's CPU µs per request."""
    cmd = [
        *pin, wrk, f"-t{min(threads, connections)}", f"-c{connections}",
        f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(script), url,
    ]  # fmt: skip
    before, cpu_before = _cpu_ticks(), process_cpu_s(cpu_of) if cpu_of else None
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    after, cpu_after = _cpu_ticks(), process_cpu_s(cpu_of) if cpu_of else None
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    raw = json.loads(line.removeprefix("WRKJSON "))
    errors = sum(raw[k] for k in ("connect", "read", "write", "status", "timeout"))
    return {
        "connections": connections,
        "requests": raw["requests"],
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "mean_ms": raw["mean_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "errors": errors,
        "steal_pct": _steal_pct(before, after),
        "cpu_us_per_request": (
            1e6 * (cpu_after - cpu_before) / raw["requests"]
            if cpu_before is not None and cpu_after is not None and raw["requests"]
            else None
        ),
        "non_2xx": raw["status"],
        "socket_errors": {k: raw[k] for k in ("connect", "read", "write", "timeout")},
    }


# ── streaming ───────────────────────────────────────────────────────────────────────────────


@dataclass
class StreamResult:
    ttfb: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    elapsed: float = 0.0


class _Conn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def ensure(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.reader is None or self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self.reader, self.writer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _one_stream(conn: _Conn, request: bytes) -> tuple[float, float, str | None]:
    """Send one streaming request; (ttfb s, total s, error or None)."""
    reader, writer = await conn.ensure()
    start = time.perf_counter()
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    headers = head.lower()
    first: float | None = None
    body = bytearray()
    if b"\r\ntransfer-encoding: chunked" in headers:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                    pass
                break
            data = await reader.readexactly(size + 2)
            if first is None and b"data:" in data:
                first = time.perf_counter()
            body += data[:-2]
    else:
        at = headers.find(b"\r\ncontent-length:")
        length = int(headers[at + 17 : headers.find(b"\r\n", at + 2)]) if at >= 0 else 0
        body += await reader.readexactly(length)
        first = time.perf_counter()
    end = time.perf_counter()
    if b"\r\nconnection: close" in headers:
        conn.close()
    if status != 200:
        return 0.0, 0.0, f"HTTP {status}: {bytes(body[:200])!r}"
    if not body.rstrip().endswith(b"data: [DONE]") or b'"usage":{"prompt_tokens"' not in body:
        return 0.0, 0.0, f"incomplete stream: {bytes(body[-200:])!r}"
    return (first or end) - start, end - start, None


async def _stream_load(url: str, body: dict[str, Any], api_key: str, count: int, conc: int):
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    payload = json.dumps(body, separators=(",", ":")).encode()
    request = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {api_key}\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    result = StreamResult()
    remaining = [count]

    async def worker() -> None:
        conn = _Conn(host, port)
        try:
            while remaining[0] > 0:
                remaining[0] -= 1
                try:
                    ttfb, total, error = await asyncio.wait_for(_one_stream(conn, request), 30)
                except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
                    conn.close()
                    ttfb, total, error = 0.0, 0.0, f"{type(exc).__name__}: {exc}"
                if error:
                    result.errors.append(error)
                else:
                    result.ttfb.append(ttfb)
                    result.total.append(total)
        finally:
            conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conc)))
    result.elapsed = time.perf_counter() - start
    return result


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (what wrk reports too); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


def run_streams(
    url: str, body: dict[str, Any], api_key: str, *, count: int, concurrency: int
) -> dict[str, Any]:
    """``count`` streamed completions over ``concurrency`` keep-alive connections."""
    res = asyncio.run(_stream_load(url, body, api_key, count, concurrency))
    ok = len(res.total)
    return {
        "connections": concurrency,
        "requests": ok,
        "rps": ok / res.elapsed if res.elapsed else 0.0,
        "ttfb_p50_ms": percentile(res.ttfb, 50) * 1000,
        "ttfb_p99_ms": percentile(res.ttfb, 99) * 1000,
        "total_p50_ms": percentile(res.total, 50) * 1000,
        "total_p99_ms": percentile(res.total, 99) * 1000,
        "ttfb_mean_ms": statistics.fmean(res.ttfb) * 1000 if res.ttfb else float("nan"),
        "errors": len(res.errors),
        "error_samples": res.errors[:3],
    }
