"""CPU time per request of each daemon thread, under wrk load: the quick A/B tool.

    python bench/cpu.py                 # c=16 then c=1, 4 s each
    python bench/cpu.py -c 1 -s 3 --perf syscalls:sys_enter_pwrite64,context-switches

Same stub, data home and pinning as `run.py`, one daemon, no direct or floor runs. Prints
requests/s, p50, p99 and, per thread, user and system CPU microseconds per request (from
/proc/PID/task/*/stat, so nothing is sampled and nothing slows down). To compare two trees,
run it with ``PYTHONPATH=/path/to/other/checkout`` (the daemon inherits it). Throughput on a
shared VM drifts by ±10% between minutes; CPU per request drifts less, so it is the figure to
compare, over alternating runs. With ``--perf`` (Linux perf installed) it also counts the
given events per request.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path

import load
from run import BODY, free_port, prepared


def thread_times(pid: int) -> dict[str, tuple[float, float]]:
    """(user, system) seconds per thread: "loop" is the main thread (the event loop), the
    busy other one is the database thread."""
    times = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
        except FileNotFoundError:
            continue
        seconds = load.stat_cpu_s(f"/proc/{pid}/task/{tid}/stat")
        if seconds is not None:
            times["loop" if int(tid) == pid else f"{name}-{tid}"] = seconds
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-c", default="16,1", help="concurrencies, comma-separated")
    parser.add_argument("-s", type=float, default=4, help="seconds per run")
    parser.add_argument("--perf", help="perf events to count per request (comma-separated)")
    args = parser.parse_args()
    with prepared("layers-cpu-") as b:
        port = free_port()
        daemon = b.start_daemon(port)
        b.first_completion(port, time.perf_counter() + 30)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        script = load.write_wrk_script(b.workdir / "layers.lua", BODY, b.api_key)
        load.run_wrk(b.wrk, script, url, connections=16, seconds=2, pin=b.load_pin)  # warm-up
        for conc in (int(c) for c in args.c.split(",")):
            perf = None
            if args.perf:
                cmd = ["perf", "stat", "-x,", "-e", args.perf, "-p", str(daemon.pid)]
                perf = subprocess.Popen(
                    [*cmd, "--", "sleep", str(args.s)], stderr=subprocess.PIPE, text=True
                )
            before = thread_times(daemon.pid)
            result = load.run_wrk(
                b.wrk, script, url, connections=conc, seconds=args.s, pin=b.load_pin
            )
            after = thread_times(daemon.pid)
            n = result["requests"]
            line = f"c={conc:<3} {result['rps']:7.0f} req/s  p50 {result['p50_ms']:6.2f} ms"
            line += f"  p99 {result['p99_ms']:6.2f} ms"
            for key, (user, system) in after.items():
                u0, s0 = before.get(key, (0.0, 0.0))
                if user + system - u0 - s0 > 0:
                    u, s = (user - u0) / n * 1e6, (system - s0) / n * 1e6
                    line += f"  {key}: user {u:.0f} sys {s:.0f} µs"
            print(line + f"  errors {result['errors']}", flush=True)
            if perf is not None:
                _, err = perf.communicate()
                for row in err.splitlines():
                    parts = row.split(",")
                    if len(parts) > 2 and parts[0].replace(".", "").isdigit():
                        print(f"      {parts[2]}: {float(parts[0]) / n:.1f} per request")
        b.stop(daemon)


if __name__ == "__main__":
    main()
