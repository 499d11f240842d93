"""Instructions per request of each daemon thread, counted by valgrind: the repeatable A/B tool.

    python bench/instructions.py              # c=16 then c=1, 15 s each (about 2 minutes)
    python bench/instructions.py -c 1 -s 10

Same stub, data home, body and pinning as `run.py`; the daemon runs under
``valgrind --tool=callgrind`` (about 40 requests/s). After a warm-up the counters are zeroed,
wrk loads the daemon, and the counters are dumped: user-space instructions per request, per
thread. On a shared VM, where throughput and even CPU time per request drift by ±20% between
minutes, this count repeats within ~2% (the kernel's share, syscalls and wake-ups, is not in
it: `cpu.py --perf` counts those). Compare trees with ``PYTHONPATH=/path/to/other/checkout``.
Needs valgrind (`sudo apt-get install -y valgrind`) and wrk.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import load
from run import BODY, Bench, free_port, prepared


def totals(prefix: Path) -> dict[str, int]:
    """Instructions per thread from the newest callgrind dump of each thread."""
    newest: dict[str, Path] = {}
    for path in prefix.parent.glob(prefix.name + "*"):
        thread = path.name.rsplit("-", 1)[-1] if "-" in path.name else "1"
        if thread not in newest or path.stat().st_mtime > newest[thread].stat().st_mtime:
            newest[thread] = path
    counts = {}
    for thread, path in sorted(newest.items()):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                counts[thread] = int(line.split()[1])
    return counts


def measure(b: Bench, conc: int, seconds: float, keep: Path | None = None) -> None:
    port = free_port()
    prefix = b.workdir / f"callgrind-c{conc}"
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--separate-threads=yes",
        f"--callgrind-out-file={prefix}.%p",
        b.layers,
        "--home",
        str(b.home),
        "serve",
        "--port",
        str(port),
    ]
    with (b.workdir / f"valgrind-c{conc}.log").open("wb") as log:
        daemon = subprocess.Popen([*b.daemon_pin, *cmd], stdout=log, stderr=subprocess.STDOUT)
    b.procs.append(daemon)
    try:
        b.first_completion(port, time.perf_counter() + 300)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        script = load.write_wrk_script(b.workdir / "layers.lua", BODY, b.api_key)
        load.run_wrk(b.wrk, script, url, connections=conc, seconds=5, pin=b.load_pin)
        subprocess.run(["callgrind_control", "-z", str(daemon.pid)], capture_output=True)
        result = load.run_wrk(b.wrk, script, url, connections=conc, seconds=seconds, pin=b.load_pin)
        subprocess.run(["callgrind_control", "-d", str(daemon.pid)], capture_output=True)
        time.sleep(1)
        n = result["requests"]
        per_thread = {
            t: count / n
            for t, count in totals(Path(f"{prefix}.{daemon.pid}")).items()
            if count / n >= 1_000
        }
        line = f"c={conc:<3} {n} requests, errors {result['errors']}:"
        line += f" {sum(per_thread.values()) / 1e3:,.0f}k instructions per request"
        line += " (" + ", ".join(f"thread {t}: {v / 1e3:,.0f}k" for t, v in per_thread.items())
        print(line + ")", flush=True)
        if keep:
            keep.mkdir(parents=True, exist_ok=True)
            for dump in prefix.parent.glob(f"{prefix.name}.{daemon.pid}*"):
                shutil.copy(dump, keep / dump.name)
    finally:
        b.stop(daemon)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-c", default="16,1", help="concurrencies, comma-separated")
    parser.add_argument("-s", type=float, default=15, help="seconds of load per concurrency")
    parser.add_argument(
        "--keep", type=Path, help="copy the callgrind dumps here (for callgrind_annotate)"
    )
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found: sudo apt-get install -y valgrind")
    with prepared("layers-instructions-") as b:
        for conc in (int(c) for c in args.c.split(",")):
            measure(b, conc, args.s, args.keep)


if __name__ == "__main__":
    main()
