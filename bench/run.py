"""The Layers bench: the gateway's overhead against a direct call to the same upstream.

One command, one run::

    python bench/run.py [--quick] [--json out.json] [--profile profile.txt]

It starts a fast OpenAI-compatible stub upstream on loopback (`stub_upstream.py`), a temporary
data home whose config.toml declares the stub as an upstream serving ``stub/fast``, a project,
a key without limits and enough credits, and one ``layers serve`` process pinned to its own core
(``taskset -c 1``; the stub and the load generators share core 0). It then alternates direct
(client → stub) and through-Layers (client → layers → stub) rounds, A B A B, and reports
medians over the rounds: requests/s and p50/p99 latency (wrk) at concurrency 1, 16 and 64;
streamed time to first byte and total at concurrency 1 and 16; the daemon's RSS after the load;
cold start; ``layers --help``; ``layers usage`` and ``GET /v1/usage`` over 1,000,000 request
rows; errors; and ledger drift (the balance must move by exactly the sum of the recorded
charges).

Exit status: 0 when there were no errors and no drift, 1 otherwise (performance targets are
reported, never enforced). See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import load
import spy_summary
import wakeup

BENCH_DIR = Path(__file__).resolve().parent
MODEL = "stub/fast"
BODY = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "Say hello to the bench."}],
    "max_tokens": 16,
}
STREAM_BODY = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
TOPUP_CREDITS = 100_000_000  # $1M: a hold is ~0.05 credits here, a charge ~0.004
USAGE_ROWS = 1_000_000
LOAD_CPU, DAEMON_CPU = 0, 1


@dataclass(frozen=True)
class Mode:
    name: str
    rounds: int
    wrk_seconds: float
    concurrencies: tuple[int, ...]
    streams: dict[int, int]  # concurrency → streamed requests per round
    cold_starts: int
    help_runs: int
    usage_runs: int
    profile_seconds: float


FULL = Mode("full", 5, 5.0, (1, 16, 64), {1: 300, 16: 1600}, 5, 9, 5, 10.0)
QUICK = Mode("quick", 2, 2.0, (1, 16, 64), {1: 100, 16: 480}, 3, 5, 3, 5.0)

TARGETS = {
    "rps_c16_min": 2000.0,  # 20× LiteLLM's ~100 req/s
    "rps_c16_ratio_min": 0.15,
    "added_p50_c1_ms_max": 1.0,
    "added_ttfb_p50_c1_ms_max": 1.0,
    "rss_mib_max": 100.0,
    "cold_start_s_max": 1.5,
    "help_ms_max": 300.0,
    "usage_s_max": 1.0,
}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def say_step(text: str) -> None:
    say(f"== {text}")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ── the pieces under test ────────────────────────────────────────────────────────────────────


class Bench:
    def __init__(self, mode: Mode, workdir: Path) -> None:
        self.mode = mode
        self.workdir = workdir
        self.home = workdir / "home"
        self.layers = self._find_layers()
        self.wrk = shutil.which("wrk")
        pinning = shutil.which("taskset") and (os.cpu_count() or 1) >= 2
        self.daemon_pin = ["taskset", "-c", str(DAEMON_CPU)] if pinning else []
        self.load_pin = ["taskset", "-c", str(LOAD_CPU)] if pinning else []
        self.pinned = bool(pinning)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.stub_port = 0
        self.api_key = ""
        self.initial_balance = 0
        # completions through Layers that a client saw succeed, every phase included
        self.layers_ok = 0
        self.unrecorded_errors = 0  # in the warm-up and the profiled run

    @staticmethod
    def _find_layers() -> str:
        beside = Path(sys.executable).with_name("layers")
        found = str(beside) if beside.exists() else shutil.which("layers")
        if not found:
            sys.exit("`layers` is not installed in this environment: pip install -e .")
        return found

    def compile_package(self) -> None:
        """Bytecode for every module of `layers_cli`, as `pip install` writes it. An editable
        checkout run with PYTHONDONTWRITEBYTECODE=1 (set on the machines here) never gets
        any, and then every `layers` process compiles its modules from source: ~40 ms of
        `--help`."""
        find = "import layers_cli, os; print(os.path.dirname(layers_cli.__file__))"
        package = subprocess.run(
            [sys.executable, "-c", find], capture_output=True, text=True, check=True
        ).stdout.strip()
        # (not checked: a read-only install keeps whatever bytecode pip wrote)
        subprocess.run([sys.executable, "-m", "compileall", "-q", package], capture_output=True)

    def cli(self, *args: str, home: Path | None = None) -> str:
        cmd = [self.layers, "--home", str(home or self.home), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {proc.stderr or proc.stdout}")
        return proc.stdout

    def cli_json(self, *args: str, home: Path | None = None) -> Any:
        return json.loads(self.cli(*args, "--json", home=home))

    # -- processes

    def start_stub(self) -> None:
        proc = subprocess.Popen(
            [*self.load_pin, sys.executable, str(BENCH_DIR / "stub_upstream.py"), "--port", "0"],
            stdout=subprocess.PIPE,
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().split()
        if len(line) != 2 or line[0] != "READY":
            raise RuntimeError("the stub upstream did not start")
        self.stub_port = int(line[1])

    def start_floor(self) -> int:
        """The null proxy (null_proxy.py) on the daemon's core, in front of the stub."""
        cmd = [
            sys.executable, str(BENCH_DIR / "null_proxy.py"),
            "--port", "0", "--upstream", f"127.0.0.1:{self.stub_port}",
        ]  # fmt: skip
        proc = subprocess.Popen([*self.daemon_pin, *cmd], stdout=subprocess.PIPE)
        self.procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().split()
        if len(line) != 2 or line[0] != "READY":
            raise RuntimeError("the null proxy did not start")
        return int(line[1])

    def setup_home(self) -> None:
        self.home.mkdir(parents=True)
        (self.home / "config.toml").write_text(
            "starter_credits = 0\n\n"
            "[upstreams.stub]\n"
            f'base_url = "http://127.0.0.1:{self.stub_port}/v1"\n'
            f'models = ["{MODEL}"]\n\n'
            f'[models."{MODEL}"]\n'
            'input = "1"\noutput = "2"\n'
        )
        self.cli("projects", "create", "bench")
        self.api_key = self.cli_json("keys", "create", "--project", "bench")["secret"]
        topup = self.cli_json("credits", "topup", str(TOPUP_CREDITS))
        self.initial_balance = topup["balance_micro"]

    def start_daemon(self, port: int, home: Path | None = None) -> subprocess.Popen[bytes]:
        cmd = [self.layers, "--home", str(home or self.home), "serve", "--port", str(port)]
        with (self.workdir / f"serve-{port}.log").open("wb") as log:
            proc = subprocess.Popen([*self.daemon_pin, *cmd], stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGINT, as Ctrl-C would: the daemon drains in-flight requests and settles them."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(reversed(self.procs)):
            self.stop(proc)

    def first_completion(self, port: int, deadline: float) -> None:
        """Poll until one whole completion succeeds through the daemon on ``port``."""
        import http.client

        payload = json.dumps(BODY)
        headers = {"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"}
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("POST", "/v1/chat/completions", payload, headers)
                resp = conn.getresponse()
                body = resp.read()
                conn.close()
                if resp.status == 200:
                    self.layers_ok += 1
                    return
                raise RuntimeError(f"HTTP {resp.status}: {body[:300]!r}")
            except (ConnectionError, OSError):
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"no completion from port {port} in time") from None
                time.sleep(0.005)


# ── the measurements ─────────────────────────────────────────────────────────────────────────


@contextlib.contextmanager
def prepared(prefix: str) -> Iterator[Bench]:
    """For the A/B tools (`cpu.py`, `instructions.py`): the stub and a data home with a key
    and credits, this process pinned to the load's core; everything removed afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    b = Bench(QUICK, workdir)
    if not b.wrk:
        sys.exit(load.WRK_INSTALL_HINT)
    if b.pinned:
        os.sched_setaffinity(0, {LOAD_CPU})
    try:
        b.start_stub()
        b.setup_home()
        yield b
    finally:
        b.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


def measure_load(b: Bench, layers_port: int, floor_port: int, daemon_pid: int) -> dict[str, Any]:
    urls = {
        "direct": f"http://127.0.0.1:{b.stub_port}/v1/chat/completions",
        "layers": f"http://127.0.0.1:{layers_port}/v1/chat/completions",
        "floor": f"http://127.0.0.1:{floor_port}/v1/chat/completions",
    }
    scripts = {
        name: load.write_wrk_script(b.workdir / f"{name}.lua", BODY, key)
        for name, key in (("direct", "sk-direct"), ("layers", b.api_key), ("floor", "sk-direct"))
    }
    assert b.wrk is not None
    say("warm-up (not recorded)")
    for name in urls:
        w = load.run_wrk(
            b.wrk, scripts[name], urls[name], connections=16, seconds=1, pin=b.load_pin
        )
        st = load.run_streams(urls[name], STREAM_BODY, b.api_key, count=50, concurrency=4)
        b.unrecorded_errors += w["errors"] + st["errors"]
        if name == "layers":
            b.layers_ok += w["requests"] - w["errors"] + st["requests"]

    whole: dict[str, dict[int, list[dict[str, Any]]]] = {n: {} for n in urls}
    streams: dict[str, dict[int, list[dict[str, Any]]]] = {n: {} for n in urls}
    wake_us: list[float | None] = []  # per round: see wakeup.py
    for rnd in range(1, b.mode.rounds + 1):
        wake_us.append(wakeup.wake_p50_us(DAEMON_CPU, LOAD_CPU) if b.pinned else None)
        if wake_us[-1] is not None:
            say(f"round {rnd} cross-core round trip after 200 µs idle: {wake_us[-1]:.0f} µs")
        for conc in b.mode.concurrencies:
            for name in urls:  # A (direct), B (layers), then the floor
                r = load.run_wrk(
                    b.wrk,
                    scripts[name],
                    urls[name],
                    connections=conc,
                    seconds=b.mode.wrk_seconds,
                    pin=b.load_pin,
                    cpu_of=daemon_pid if name == "layers" else None,
                )
                whole[name].setdefault(conc, []).append(r)
                if name == "layers":
                    b.layers_ok += r["requests"] - r["errors"]
                say(
                    f"round {rnd} whole  c={conc:<3} {name:<6} {r['rps']:9.0f} req/s"
                    f"  p50 {r['p50_ms']:8.2f} ms  p99 {r['p99_ms']:8.2f} ms  errors {r['errors']}"
                )
        for conc, count in b.mode.streams.items():
            for name in urls:
                r = load.run_streams(
                    urls[name], STREAM_BODY, b.api_key, count=count, concurrency=conc
                )
                streams[name].setdefault(conc, []).append(r)
                if name == "layers":
                    b.layers_ok += r["requests"]
                say(
                    f"round {rnd} stream c={conc:<3} {name:<6} {r['rps']:9.0f} req/s"
                    f"  ttfb p50 {r['ttfb_p50_ms']:7.2f} ms  total p50 {r['total_p50_ms']:7.2f}"
                    f" ms  errors {r['errors']}"
                )
    return {"whole": whole, "streams": streams, "wake_us": wake_us}


def summarise_load(raw: dict[str, Any]) -> dict[str, Any]:
    def med(runs: list[dict[str, Any]], key: str) -> float:
        return median([r[key] for r in runs])

    def figure(conc: Any, kind: str, key: str) -> dict[str, float | None]:
        d = med(raw[kind]["direct"][conc], key)
        lay = med(raw[kind]["layers"][conc], key)
        floor = med(raw[kind]["floor"][conc], key) if "floor" in raw[kind] else None
        return {"direct": d, "floor": floor, "layers": lay, "ratio": lay / d if d else None}

    out: dict[str, Any] = {"whole": {}, "streams": {}}
    for conc, direct_runs in raw["whole"]["direct"].items():
        layer_runs = raw["whole"]["layers"][conc]
        row: dict[str, Any] = {k: figure(conc, "whole", k) for k in ("rps", "p50_ms", "p99_ms")}
        row["added_p50_ms"] = row["p50_ms"]["layers"] - row["p50_ms"]["direct"]
        row["errors"] = {
            "direct": sum(r["errors"] for r in direct_runs),
            "layers": sum(r["errors"] for r in layer_runs),
        }
        row["requests"] = {
            "direct": sum(r["requests"] for r in direct_runs),
            "layers": sum(r["requests"] for r in layer_runs),
        }
        cpu = [r["cpu_us_per_request"] for r in layer_runs if r.get("cpu_us_per_request")]
        row["cpu_us_per_request"] = median(cpu) if cpu else None
        out["whole"][conc] = row
    for conc, direct_runs in raw["streams"]["direct"].items():
        layer_runs = raw["streams"]["layers"][conc]
        row = {
            key: figure(conc, "streams", key)
            for key in ("rps", "ttfb_p50_ms", "ttfb_p99_ms", "total_p50_ms", "total_p99_ms")
        }
        row["added_ttfb_p50_ms"] = row["ttfb_p50_ms"]["layers"] - row["ttfb_p50_ms"]["direct"]
        row["errors"] = {
            "direct": sum(r["errors"] for r in direct_runs),
            "layers": sum(r["errors"] for r in layer_runs),
        }
        row["error_samples"] = [e for r in layer_runs + direct_runs for e in r["error_samples"]][:3]
        row["requests"] = {
            "direct": sum(r["requests"] for r in direct_runs),
            "layers": sum(r["requests"] for r in layer_runs),
        }
        out["streams"][conc] = row
    return out


def read_rss(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024  # kB → MiB
    return {"rss_mib": fields.get("VmRSS", float("nan")), "peak_mib": fields.get("VmHWM", 0.0)}


def profile_daemon(b: Bench, pid: int, port: int, out: Path, conc: int) -> dict[str, Any]:
    """py-spy on the daemon during a wrk run at ``conc`` (after the measured rounds)."""
    spy = Path(sys.executable).with_name("py-spy")
    spy_cmd = str(spy) if spy.exists() else shutil.which("py-spy")
    if not spy_cmd:
        return {"error": "py-spy is not installed: pip install py-spy"}
    assert b.wrk is not None
    script = b.workdir / "layers.lua"
    seconds = b.mode.profile_seconds
    wrk = subprocess.Popen(
        [*b.load_pin, b.wrk, "-t1", f"-c{conc}", f"-d{seconds + 2:.0f}s", "--timeout", "10s",
         "-s", str(script), f"http://127.0.0.1:{port}/v1/chat/completions"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(1)
    spy_run = subprocess.run(
        [spy_cmd, "record", "--pid", str(pid), "--duration", f"{seconds:.0f}", "--rate", "250",
         "--format", "raw", "--threads", "--idle", "--output", str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    wrk_out, _ = wrk.communicate(timeout=seconds + 60)
    line = next((ln for ln in wrk_out.splitlines() if ln.startswith("WRKJSON ")), "WRKJSON {}")
    wrk_raw = json.loads(line.removeprefix("WRKJSON "))
    errors = sum(wrk_raw.get(k, 0) for k in ("connect", "read", "write", "status", "timeout"))
    b.layers_ok += wrk_raw.get("requests", 0) - errors
    b.unrecorded_errors += errors
    if spy_run.returncode != 0 or not out.exists():
        return {"error": f"py-spy failed: {spy_run.stderr.strip()[-500:]}"}
    summary = spy_summary.summarize(out)
    summary["raw_file"] = str(out)
    summary["wrk_under_profiler"] = wrk_raw
    summary["concurrency"] = conc
    return summary


def measure_cold_start(b: Bench) -> list[float]:
    times = []
    for _ in range(b.mode.cold_starts):
        port = free_port()
        start = time.perf_counter()
        proc = b.start_daemon(port)
        try:
            b.first_completion(port, start + 30)
            times.append(time.perf_counter() - start)
        finally:
            b.stop(proc)
    return times


def time_command(cmd: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return times


def check_ledger(b: Bench) -> dict[str, Any]:
    """The balance must have moved by exactly the sum of the charges the request log records."""
    balance = b.cli_json("credits", "balance")
    verify = b.cli_json("ledger", "verify")
    with closing(sqlite3.connect(f"file:{b.home / 'layers.db'}?mode=ro", uri=True)) as db:
        rows, charged = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(credits_micro), 0) FROM requests"
        ).fetchone()
        statuses = dict(db.execute("SELECT status, COUNT(*) FROM requests GROUP BY status"))
        entries = -db.execute(
            "SELECT COALESCE(SUM(amount_micro), 0) FROM ledger_entries WHERE kind = 'charge'"
        ).fetchone()[0]
    moved = b.initial_balance - balance["balance_micro"]
    drift = moved - charged
    ok = drift == 0 and entries == charged and balance["open_holds"] == 0 and bool(verify["ok"])
    return {
        "initial_balance_micro": b.initial_balance,
        "final_balance_micro": balance["balance_micro"],
        "balance_moved_micro": moved,
        "requests_credits_micro": charged,
        "charge_entries_micro": entries,
        "drift_micro": drift,
        "open_holds": balance["open_holds"],
        "held_micro": balance["held_micro"],
        "verify_ok": bool(verify.get("ok")),
        "request_rows": rows,
        "request_rows_by_status": statuses,
        "client_successes": b.layers_ok,
        "ok": ok,
    }


def measure_usage(b: Bench) -> dict[str, Any]:
    """Copy the database, add 1,000,000 request rows with one SQL statement, time the reports.

    The rows go straight into `requests`; the triggers on it (migration m002) fill
    `usage_rollup` in the same statement, as they do for the gateway's own writes."""
    copy = b.workdir / "home-1m"
    copy.mkdir()
    shutil.copy(b.home / "config.toml", copy / "config.toml")
    with closing(sqlite3.connect(b.home / "layers.db")) as src:
        key_id, project_id = src.execute("SELECT id, project_id FROM api_keys LIMIT 1").fetchone()
        with closing(sqlite3.connect(copy / "layers.db")) as dst:
            src.backup(dst)
    start = time.perf_counter()
    with closing(sqlite3.connect(copy / "layers.db")) as db:
        db.execute("PRAGMA journal_mode = OFF")
        db.execute("PRAGMA synchronous = OFF")
        models = [
            "stub/fast",
            "openai/gpt-4o-mini",
            "anthropic/claude-sonnet-4.5",
            "google/gemini-2.5-flash",
            "openai/gpt-4o",
        ]
        model_case = " ".join(f"WHEN {i} THEN '{m}'" for i, m in enumerate(models))
        db.execute(
            f"""
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {USAGE_ROWS})
            INSERT INTO requests (id, created_at, key_id, project_id, endpoint, model, provider,
                upstream_model, streamed, status, http_status, finish_reason, prompt_tokens,
                completion_tokens, cached_tokens, reasoning_tokens, base_micro, credits_micro,
                markup, latency_ms, ttft_ms)
            SELECT 'req_bench' || printf('%016d', i),
                strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || (i * 7) || ' seconds'),
                ?, ?, '/v1/chat/completions', m, substr(m, 1, instr(m, '/') - 1),
                substr(m, instr(m, '/') + 1), i % 2,
                CASE WHEN i % 50 = 0 THEN 'error' ELSE 'ok' END,
                CASE WHEN i % 50 = 0 THEN 502 ELSE 200 END, 'stop',
                20 + i % 500, 5 + i % 300, i % 7 * 10, i % 3 * 4,
                (20 + i % 500) + 2 * (5 + i % 300),
                ((20 + i % 500) + 2 * (5 + i % 300)) * 16 / 10, '0.60', 200 + i % 900, 100 + i % 300
            FROM (SELECT i, CASE i % {len(models)} {model_case} END AS m FROM n)
            """,
            (key_id, project_id),
        )
        db.commit()
        db.execute("PRAGMA journal_mode = WAL")
        rollup_rows, rollup_requests = db.execute(
            "SELECT COUNT(*), SUM(requests) FROM usage_rollup"
        ).fetchone()
    generate_s = time.perf_counter() - start
    base = [b.layers, "--home", str(copy)]
    results: dict[str, Any] = {
        "rows": USAGE_ROWS,
        "generate_s": generate_s,
        "db_mib": (copy / "layers.db").stat().st_size / 2**20,
        "rollup_rows": rollup_rows,
        "rollup_requests": rollup_requests,
    }
    for label, args in (
        ("usage", ["usage"]),
        ("usage_by_model", ["usage", "--by", "model"]),
        ("requests_list", ["requests", "list"]),
        # filters that had an index of their own before the sixth session (migration m005)
        ("requests_list_model", ["requests", "list", "--model", "openai/gpt-4o"]),
        ("keys_list", ["keys", "list"]),  # each key's last use
    ):
        times = time_command([*base, *args], b.mode.usage_runs)
        results[label] = {"median_s": median(times), "runs_s": times}
    reported = subprocess.run([*base, "usage", "--json"], capture_output=True, check=True)
    results["reported_requests"] = json.loads(reported.stdout)["total"]["requests"]
    results.update(measure_usage_api(b, copy))
    return results


def measure_usage_api(b: Bench, home: Path) -> dict[str, Any]:
    """``GET /v1/usage`` (and ``?by=model``) from a daemon serving the 1M-row copy: the wall
    time of each request on a fresh connection, after one unrecorded request (the key's
    verification, the daemon's first read of the rollup)."""
    import http.client

    port = free_port()
    daemon = b.start_daemon(port, home)
    headers = {"Authorization": f"Bearer {b.api_key}"}

    def get(path: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    results: dict[str, Any] = {}
    try:
        deadline = time.perf_counter() + 30
        while True:
            try:
                status, body = get("/v1/usage")
                break
            except OSError:
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"no answer from port {port} in time") from None
                time.sleep(0.01)
        if status != 200:
            raise RuntimeError(f"GET /v1/usage: HTTP {status}: {body[:300]!r}")
        results["api_reported_requests"] = json.loads(body)["total"]["requests"]
        paths = (("api_usage", "/v1/usage"), ("api_usage_by_model", "/v1/usage?by=model"))
        for label, path in paths:
            times = []
            for _ in range(b.mode.usage_runs):
                start = time.perf_counter()
                status, body = get(path)
                times.append(time.perf_counter() - start)
                if status != 200:
                    raise RuntimeError(f"GET {path}: HTTP {status}: {body[:300]!r}")
            results[label] = {"median_s": median(times), "runs_s": times}
    finally:
        b.stop(daemon)
    return results


# ── report ───────────────────────────────────────────────────────────────────────────────────


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    wrk = shutil.which("wrk")
    wrk_version = ""
    if wrk:
        out = subprocess.run([wrk, "--version"], capture_output=True, text=True)
        text = (out.stdout or out.stderr).strip()
        wrk_version = text.splitlines()[0].split(" Copyright")[0] if text else ""
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "wrk": wrk_version,
        "layers": layers_revision(),
    }


def layers_revision() -> str:
    """The commit under test, with ``+dirty`` when layers_cli/ has uncommitted changes."""
    repo = BENCH_DIR.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--", "layers_cli"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def _fmt(value: float | None, digits: int = 2, unit: str = "") -> str:
    if value is None or value != value:  # None or NaN
        return "n/a"
    return f"{value:,.{digits}f}{unit}"


def _verdict(ok: bool, rule: str) -> str:
    return f"{rule}: {'ok' if ok else 'MISSED'}"


HEADER = ("metric", "direct", "floor", "layers", "layers/direct", "target")


def _rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    t = TARGETS
    rows: list[tuple[str, ...]] = []

    def compare(label: str, fig: dict[str, float], digits: int = 2, target: str = "") -> None:
        ratio = fig["ratio"]
        if ratio is not None and label.endswith("req/s"):
            shown = _fmt(100 * ratio, 1, "%")
        else:
            shown = _fmt(ratio, 2, "x")
        d, lay = _fmt(fig["direct"], digits), _fmt(fig["layers"], digits)
        rows.append((label, d, _fmt(fig.get("floor"), digits), lay, shown, target))

    def single(label: str, value: str, target: str = "") -> None:
        rows.append((label, "", "", value, "", target))

    for conc, r in report["whole"].items():
        c = int(conc)
        target = ""
        if c == 16:
            ok = r["rps"]["layers"] >= t["rps_c16_min"]
            ok = ok and r["rps"]["ratio"] >= t["rps_c16_ratio_min"]
            target = _verdict(ok, f">= {t['rps_c16_min']:.0f}/s and >= 15% of direct")
        compare(f"whole c={c} req/s", r["rps"], 0, target)
        added = r["added_p50_ms"]
        target = _verdict(added <= t["added_p50_c1_ms_max"], f"added {added:+.2f} ms <= 1.0")
        compare(f"whole c={c} p50 ms", r["p50_ms"], target=target if c == 1 else "")
        compare(f"whole c={c} p99 ms", r["p99_ms"])
        cpu = r.get("cpu_us_per_request")
        if c == 16 and cpu:  # what one core could serve if nobody took any of its time
            single(f"whole c={c} daemon CPU/request", f"{cpu:.0f} µs (1 core: {1e6 / cpu:,.0f}/s)")
    for conc, r in report["streams"].items():
        c = int(conc)
        compare(f"stream c={c} req/s", r["rps"], 0)
        added = r["added_ttfb_p50_ms"]
        target = _verdict(added <= t["added_ttfb_p50_c1_ms_max"], f"added {added:+.2f} ms <= 1.0")
        compare(f"stream c={c} TTFB p50 ms", r["ttfb_p50_ms"], target=target if c == 1 else "")
        compare(f"stream c={c} TTFB p99 ms", r["ttfb_p99_ms"])
        compare(f"stream c={c} total p50 ms", r["total_p50_ms"])
        compare(f"stream c={c} total p99 ms", r["total_p99_ms"])

    rss = report["rss"]
    single(
        "daemon RSS after load",
        f"{rss['rss_mib']:.1f} MiB (peak {rss['peak_mib']:.1f})",
        _verdict(rss["rss_mib"] <= t["rss_mib_max"], "<= 100 MiB"),
    )
    cold = report["cold_start"]
    single(
        "cold start -> 1st completion",
        f"{cold['median_s']:.2f} s (median of {len(cold['runs_s'])})",
        _verdict(cold["median_s"] <= t["cold_start_s_max"], "<= 1.5 s"),
    )
    help_ms = 1000 * report["help"]["median_s"]
    single("layers --help", f"{help_ms:.0f} ms", _verdict(help_ms <= t["help_ms_max"], "<= 300 ms"))
    u = report["usage_1m"]
    for label, key in (
        ("layers usage (1M rows)", "usage"),
        ("layers usage --by model (1M rows)", "usage_by_model"),
        ("layers requests list (1M rows)", "requests_list"),
        ("layers requests list --model (1M rows)", "requests_list_model"),
        ("layers keys list (1M rows)", "keys_list"),
        ("GET /v1/usage (1M rows)", "api_usage"),
        ("GET /v1/usage?by=model (1M rows)", "api_usage_by_model"),
    ):
        seconds = u[key]["median_s"]
        untargeted = key.startswith(("requests_list", "keys_list"))
        target = "" if untargeted else _verdict(seconds <= t["usage_s_max"], "<= 1 s")
        single(label, f"{seconds:.3f} s", target)
    single("database size with 1M rows", f"{u['db_mib']:.0f} MiB")
    e = report["errors"]
    ok = e["direct"] == 0 and e["layers"] == 0 and e.get("floor", 0) == 0
    ok = ok and e["unrecorded"] == 0
    rows.append(
        (
            "errors (non-2xx, socket, stream)",
            str(e["direct"]),
            str(e.get("floor", "")),
            str(e["layers"]),
            "",
            _verdict(ok, f"0 (warm-up and profile: {e['unrecorded']})"),
        )
    )
    led = report["ledger"]
    single(
        "ledger drift (micro-credits)",
        str(led["drift_micro"]),
        _verdict(led["ok"], "0, no open hold, verify ok"),
    )
    return rows


def _round_lines(raw: dict[str, Any]) -> list[str]:
    """Each round of the two figures the medians miss most often, beside the floor of the
    same round and the CPU time the hypervisor stole during the Layers run (Linux): on a
    shared VM a slow phase slows even the byte-copying floor (its c=1 p50 has moved from 0.36
    to 1.06 ms within one run), and the reader should see that."""
    whole = raw["whole"]
    lines = []
    c16, c1 = _conc_key(whole, 16), _conc_key(whole, 1)
    if c16 is not None:
        cells = [
            f"{lay['rps']:,.0f} ({100 * lay['rps'] / d['rps']:.1f}%{_steal(lay)}{_cpu(lay)})"
            for d, lay in zip(whole["direct"][c16], whole["layers"][c16], strict=True)
        ]
        lines.append(
            "rounds, whole c=16 req/s (% of direct, steal, daemon CPU µs per request): "
            + " / ".join(cells)
        )
    if c1 is not None:
        wakes = raw.get("wake_us") or [None] * len(whole["layers"][c1])
        cells = [
            f"{lay['p50_ms'] - d['p50_ms']:+.2f} (floor {f['p50_ms']:.2f}{_steal(lay)}"
            + ("" if wake is None else f", wake {wake / 1000:.2f}")
            + ")"
            for d, lay, f, wake in zip(
                whole["direct"][c1], whole["layers"][c1], whole["floor"][c1], wakes, strict=True
            )
        ]
        lines.append(
            "rounds, whole c=1 added p50 ms (floor p50, steal, cross-core round trip ms after"
            " 200 µs idle): " + " / ".join(cells)
        )
    calm = _calm_rounds(whole)
    if calm:
        lines.append(f"calm rounds (steal <= {CALM_STEAL_PCT:.0f}% in the Layers run): " + calm)
    over = _over_the_floor(raw)
    if over:
        lines.append("over the floor (median of each round's Layers − floor, c=1): " + over)
    return lines


def _over_the_floor(raw: dict[str, Any]) -> str:
    """What Layers itself adds at one connection: each round's figure minus the floor's in
    the same round (the floor pays the same extra hop and wake-ups, so a slow minute moves
    both), then the median. Informative only, like the calm rounds."""
    parts = []
    for kind, key, what in (("whole", "p50_ms", "whole p50"), ("streams", "ttfb_p50_ms", "TTFB")):
        runs = raw.get(kind, {})
        if "floor" not in runs or (c1 := _conc_key(runs, 1)) is None:
            continue
        pairs = zip(runs["layers"][c1], runs["floor"][c1], strict=True)
        parts.append(f"{what} {median([lay[key] - f[key] for lay, f in pairs]):+.2f} ms")
    return "; ".join(parts)


CALM_STEAL_PCT = 5.0


def _conc_key(whole: dict[str, Any], conc: int) -> str | int | None:
    """How ``whole``'s runs are keyed for a concurrency: an int as measured, a string once
    read back from the JSON; None when that concurrency was not run."""
    for key in (conc, str(conc)):
        if key in whole["layers"]:
            return key
    return None


def _calm_rounds(whole: dict[str, Any]) -> str:
    """The medians again over the rounds in which the hypervisor took little of the CPUs'
    time: what the code does when the machine is not slowed by its neighbours. Informative
    only; the verdicts above use every round."""
    parts = []
    for conc, what in ((16, "c=16"), (1, "c=1")):
        key = _conc_key(whole, conc)
        if key is None:
            continue
        pairs = list(zip(whole["direct"][key], whole["layers"][key], strict=True))
        calm = [(d, lay) for d, lay in pairs if _steal_at_most(lay, CALM_STEAL_PCT)]
        if not calm:
            parts.append(f"{what} none of {len(pairs)}")
        elif conc == 16:
            rps = median([lay["rps"] for _, lay in calm])
            share = median([100 * lay["rps"] / d["rps"] for d, lay in calm])
            parts.append(f"{what} {len(calm)} of {len(pairs)}, {rps:,.0f} req/s ({share:.1f}%)")
        else:
            added = median([lay["p50_ms"] - d["p50_ms"] for d, lay in calm])
            parts.append(f"{what} {len(calm)} of {len(pairs)}, added {added:+.2f} ms")
    return "; ".join(parts)


def _steal_at_most(run: dict[str, Any], pct: float) -> bool:
    steal = run.get("steal_pct")
    return steal is not None and steal <= pct


def _steal(run: dict[str, Any]) -> str:
    steal = run.get("steal_pct")
    return "" if steal is None else f", steal {steal:.0f}%"


def _cpu(run: dict[str, Any]) -> str:
    cpu = run.get("cpu_us_per_request")
    return "" if cpu is None else f", cpu {cpu:.0f}"


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    rows = _rows(report)
    widths = [max(len(row[i]) for row in [HEADER, *rows]) for i in range(len(HEADER))]

    def line(row: tuple[str, ...]) -> str:
        cells = (
            c.ljust(w) if i in (0, 5) else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        return "  ".join(cells).rstrip()

    led = report["ledger"]
    out = [
        f"Layers bench ({report['mode']}), {m['date']}: {m['cpu']}, {m['cores']} cores, "
        f"{m['os']}, Python {m['python']}, {m['wrk']}; layers {m['layers']}; daemon pinned: "
        f"{report['pinned']}",
        line(HEADER),
        "  ".join("-" * w for w in widths),
        *(line(r) for r in rows),
        f"ledger: {led['request_rows']:,} request rows {led['request_rows_by_status']}; "
        f"{led['client_successes']:,} successes seen by the clients; balance moved "
        f"{led['balance_moved_micro']:,} micro-credits, charges recorded "
        f"{led['requests_credits_micro']:,}",
    ]
    out.extend(_round_lines(report["raw"]))
    profile = report.get("profile")
    if profile and "error" in profile:
        out.append(f"profile: {profile['error']}")
    elif profile:
        top = ", ".join(f"{r['name']} {r['pct']}%" for r in profile["self_by_package"][:6])
        conc = profile["concurrency"]
        out.append(f"profile (py-spy, c={conc}, event-loop thread, self samples by package): {top}")
    return "\n".join(out)


# ── main ─────────────────────────────────────────────────────────────────────────────────────


def run(mode: Mode, profile_out: Path | None, profile_conc: int, keep: bool) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="layers-bench-"))
    b = Bench(mode, workdir)
    if not b.wrk:
        shutil.rmtree(workdir, ignore_errors=True)
        sys.exit(load.WRK_INSTALL_HINT)
    if b.pinned and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {LOAD_CPU})  # this process is the streaming client
    report: dict[str, Any] = {"mode": mode.name, "machine": machine(), "pinned": b.pinned}
    try:
        say_step("bytecode, stub upstream, data home, project, key, credits")
        b.compile_package()
        b.start_stub()
        floor_port = b.start_floor()
        b.setup_home()
        port = free_port()
        daemon = b.start_daemon(port)
        b.first_completion(port, time.perf_counter() + 30)
        say_step(f"load: {mode.rounds} rounds, direct then through Layers (A B A B)")
        raw = measure_load(b, port, floor_port, daemon.pid)
        report["raw"] = raw
        report.update(summarise_load(raw))
        report["rss"] = read_rss(daemon.pid)
        if profile_out is not None:
            secs = mode.profile_seconds
            say_step(f"profile: py-spy on the daemon during wrk c={profile_conc} for {secs:.0f} s")
            report["profile"] = profile_daemon(b, daemon.pid, port, profile_out, profile_conc)
        b.stop(daemon)
        say_step(f"cold start ×{mode.cold_starts}")
        cold = measure_cold_start(b)
        report["cold_start"] = {"median_s": median(cold), "runs_s": cold}
        say_step(f"layers --help ×{mode.help_runs}")
        helps = time_command([b.layers, "--help"], mode.help_runs)
        report["help"] = {"median_s": median(helps), "runs_s": helps}
        say_step("ledger check")
        report["errors"] = {
            name: sum(
                r["errors"]
                for kind in ("whole", "streams")
                for runs in raw[kind][name].values()
                for r in runs
            )
            for name in ("direct", "layers", "floor")
        }
        report["errors"]["unrecorded"] = b.unrecorded_errors
        report["ledger"] = check_ledger(b)
        say_step(f"layers usage over {USAGE_ROWS:,} rows")
        report["usage_1m"] = measure_usage(b)
    finally:
        b.stop_all()
        if keep:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    report["targets"] = TARGETS
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description="Measure Layers against a direct call.")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 s (about 2 minutes)")
    parser.add_argument("--json", type=Path, help="write the full report as JSON here")
    parser.add_argument(
        "--profile", type=Path, help="also run py-spy on the daemon under load, raw stacks here"
    )
    parser.add_argument(
        "--profile-concurrency", type=int, default=16, help="connections during the profile"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary data homes")
    args = parser.parse_args()
    mode = QUICK if args.quick else FULL
    report = run(mode, args.profile, args.profile_concurrency, args.keep)
    text = render(report)
    print(text)
    if args.profile and report.get("profile") and "error" not in report["profile"]:
        print()
        print(spy_summary.render(report["profile"]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        say(f"wrote {args.json}")
    errors = sum(report["errors"].values())
    ok = report["ledger"]["ok"] and errors == 0
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
