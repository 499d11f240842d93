"""How fast the daemon's core answers the load's core, by how long it sat idle before.

    python bench/wakeup.py                  # round trip p50/p90 for gaps of 0 to 2,000 µs

One byte goes from this process (on the load's core) to an echo process (on the daemon's
core) and back, after this process has spun for the given gap, so only the echo's core was
idle. On bare metal, waking an idle core costs a few µs. On a VM whose idle vCPUs halt, the
host decides: on this bench's machine (Firecracker, ``haltpoll`` with no guest polling) a
round trip after 200 µs of idle has taken from ~0.1 ms to ~1.4 ms, changing from one minute
to the next. A request through a gateway on its own core pays such wake-ups on the way
(the gateway's core, the upstream's, the client's), and the direct call, whose load tool and
upstream share a core, pays none; `run.py` measures this round trip before each round and
prints it beside that round's c=1 figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time

GAPS_US = (0, 25, 50, 100, 150, 200, 300, 500, 1000, 2000)


def _spin(us: float) -> None:
    end = time.perf_counter_ns() + int(us * 1000)
    while time.perf_counter_ns() < end:
        pass


def round_trips(gaps_us: tuple[float, ...], samples: int, daemon_cpu: int, load_cpu: int):
    """{gap: sorted round trips in µs}, or None where CPU pinning is not available."""
    if not hasattr(os, "sched_setaffinity") or not shutil.which("taskset"):
        return None
    mine, theirs = socket.socketpair()
    fd = theirs.fileno()
    echo = subprocess.Popen(
        ["taskset", "-c", str(daemon_cpu), sys.executable, __file__, "--echo", str(fd)],
        pass_fds=(fd,),
    )
    theirs.close()
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {load_cpu})
    try:
        mine.send(b"x")  # the echo is up
        mine.recv(1)
        out = {}
        for gap in gaps_us:
            times = []
            for _ in range(samples):
                _spin(gap)
                start = time.perf_counter_ns()
                mine.send(b"x")
                mine.recv(1)
                times.append((time.perf_counter_ns() - start) / 1000)
            out[gap] = sorted(times)
        return out
    finally:
        os.sched_setaffinity(0, affinity)
        mine.close()
        echo.wait(10)


def wake_p50_us(daemon_cpu: int, load_cpu: int, gap_us: float = 200, samples: int = 100):
    """The p50 round trip after ``gap_us`` of idle (None without pinning)."""
    trips = round_trips((gap_us,), samples, daemon_cpu, load_cpu)
    return None if trips is None else trips[gap_us][samples // 2]


def _echo(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    while data := sock.recv(1):
        sock.send(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--echo", type=int, help=argparse.SUPPRESS)
    parser.add_argument("-n", type=int, default=300, help="round trips per gap")
    args = parser.parse_args()
    if args.echo is not None:
        _echo(args.echo)
        return
    from run import DAEMON_CPU, LOAD_CPU

    trips = round_trips(GAPS_US, args.n, DAEMON_CPU, LOAD_CPU)
    if trips is None:
        sys.exit("needs Linux CPU pinning (taskset)")
    for gap, times in trips.items():
        p50, p90 = times[len(times) // 2], times[int(len(times) * 0.9)]
        print(f"idle {gap:5.0f} µs before: round trip p50 {p50:7.1f} µs  p90 {p90:7.1f} µs")


if __name__ == "__main__":
    main()
