"""Money through the running gateway: concurrent requests against a small balance, a client
that disconnects mid-stream, and a daemon killed while it held credits."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time

import httpx
import pytest

from layers_cli import ledger
from layers_cli.db import open_db
from tests.support.gateway import running_gateway
from tests.support.servers import free_socket

MODEL = "openai/gpt-4o-mini"
BODY = {
    "model": MODEL,
    "stream": True,
    "max_tokens": 300,
    "messages": [{"role": "user", "content": "Tell me about lighthouses."}],
}


def _required_micro(gw) -> int:
    """The hold one BODY request needs, as the 402 of an empty account reports it."""
    r = httpx.post(
        gw.base_url + "/chat/completions",
        json=BODY,
        headers={"authorization": f"Bearer {gw.secret}"},
    )
    assert r.status_code == 402
    whole, _, frac = r.json()["error"]["required"].partition(".")
    return int(whole) * 1_000_000 + int(frac.ljust(6, "0"))


async def _race(gw, n: int, stream: bool | None = True) -> list[int]:
    """``n`` concurrent requests, streamed, whole, or (``None``) every other one streamed."""
    headers = {"authorization": f"Bearer {gw.secret}", "x-layers-simulate": "ttft-ms=1500"}

    async def one(client: httpx.AsyncClient, i: int) -> int:
        body = {**BODY, "stream": stream if stream is not None else i % 2 == 0}
        async with client.stream(
            "POST", gw.base_url + "/chat/completions", json=body, headers=headers
        ) as r:
            await r.aread()
            return r.status_code

    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=n)) as client:
        return await asyncio.gather(*(one(client, i) for i in range(n)))


def test_fifty_concurrent_requests_against_a_balance_for_exactly_k(tmp_path):
    k = 7
    with running_gateway(tmp_path / "race", credits=None) as gw:
        hold = _required_micro(gw)
        svc = gw.service()
        ledger.topup(svc.db, hold * k, note="exactly k holds")
        statuses = asyncio.run(_race(gw, 50))
        assert statuses.count(200) == k
        assert statuses.count(402) == 50 - k
        charges = -svc.db.conn.execute(
            "SELECT COALESCE(SUM(amount_micro), 0) FROM ledger_entries WHERE kind = 'charge'"
        ).fetchone()[0]
        assert charges > 0
        assert svc.balance()["balance_micro"] == hold * k - charges
        assert svc.balance()["open_holds"] == 0
        assert svc.verify_ledger()["ok"]
        ok_rows = svc.list_requests(status="ok", limit=100)
        assert len(ok_rows) == k
        assert sum(r["credits_micro"] for r in ok_rows) == charges
        svc.close()


@pytest.mark.parametrize("stream", [False, None], ids=["whole", "mixed"])
def test_fifty_concurrent_requests_once_the_daemon_knows_the_balance(tmp_path, stream):
    """Whole responses the daemon can prove are covered are held in its memory only, streams
    against its reservation (see `holds`): the same race, once the daemon has seen the
    balance, still lets exactly k through, whole, streamed or mixed, and the others get their
    402 before any upstream call."""
    k = 7
    with running_gateway(tmp_path / "race", credits=None) as gw:
        hold = _required_micro(gw)
        svc = gw.service()
        ledger.topup(svc.db, hold * (k + 1), note="k holds, and one for the first request")
        first = httpx.post(
            gw.base_url + "/chat/completions",
            json={**BODY, "stream": False},
            headers={"authorization": f"Bearer {gw.secret}"},
        )
        assert first.status_code == 200  # the daemon now knows the balance
        left = svc.balance()["balance_micro"]
        assert hold * k < left < hold * (k + 1)
        statuses = asyncio.run(_race(gw, 50, stream=stream))
        assert statuses.count(200) == k and statuses.count(402) == 50 - k
        rows = svc.list_requests(limit=100)
        charged = sum(r["credits_micro"] for r in rows if r["status"] == "ok")
        assert len(rows) == 52 and charged > 0  # with the probe's 402 and the first request
        assert svc.balance()["balance_micro"] == hold * (k + 1) - charged
        assert all(r["error_code"] == "insufficient_credits" for r in rows if r["status"] != "ok")
        assert svc.balance()["open_holds"] == 0 and svc.verify_ledger()["ok"]
        svc.close()


def test_client_disconnect_mid_stream_is_settled_as_estimated(tmp_path):
    with running_gateway(tmp_path / "cut") as gw:
        before = gw.balance_micro()
        headers = {"authorization": f"Bearer {gw.secret}", "x-layers-simulate": "tps=40"}
        body = {
            **BODY,
            "max_tokens": 2000,
            "messages": [{"role": "user", "content": "Write a very long essay on tides."}],
        }
        with httpx.stream(
            "POST", gw.base_url + "/chat/completions", json=body, headers=headers, timeout=30
        ) as r:
            request_id = r.headers["x-request-id"]
            received = 0
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    received += 1
                if received >= 3:
                    break  # leave mid-stream: the connection closes here
        svc = gw.service()
        deadline = time.monotonic() + 10
        row = None
        while time.monotonic() < deadline:
            rows = svc.list_requests(limit=5)
            row = next((x for x in rows if x["id"] == request_id), None)
            if row:
                break
            time.sleep(0.05)
        assert row is not None, "the cancelled stream was never settled"
        assert row["status"] == "cancelled" and row["estimated"] is True
        assert row["finish_reason"] == "client_disconnect"
        assert row["credits_micro"] > 0
        assert svc.balance()["open_holds"] == 0
        assert before - svc.balance()["balance_micro"] == row["credits_micro"]
        svc.close()


def test_daemon_killed_with_an_open_hold_releases_it_on_next_start(tmp_path):
    home = tmp_path / "daemon"
    env = {**os.environ, "LAYERS_HOME": str(home)}

    def start() -> tuple[subprocess.Popen, int]:
        sock = free_socket()
        port = sock.getsockname()[1]
        sock.close()
        proc = subprocess.Popen(
            [sys.executable, "-m", "layers_cli", "serve", "--offline", "--port", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        return proc, port

    def wait_ready(port: int) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError("layers serve did not start")

    proc, port = start()
    try:
        wait_ready(port)
        db = open_db(home / "layers.db")
        assert ledger.balance(db).entries == 500 * 1_000_000  # the starter credits
        from layers_cli.service import Layers
        from layers_cli.settings import load_settings

        svc = Layers(load_settings(home=home))
        _, svc_key = svc.create_key("default")
        svc.close()

        def slow_stream() -> None:
            try:
                httpx.post(
                    f"http://127.0.0.1:{port}/v1/chat/completions",
                    json=BODY,
                    timeout=3,
                    headers={
                        "authorization": f"Bearer {svc_key}",
                        "x-layers-simulate": "ttft-ms=20000",
                    },
                )
            except httpx.HTTPError:
                pass

        import threading

        t = threading.Thread(target=slow_stream, daemon=True)
        t.start()
        deadline = time.monotonic() + 10
        while ledger.balance(db).held == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ledger.balance(db).held > 0
        proc.kill()  # SIGKILL: no chance to settle
        proc.wait(timeout=10)
        assert ledger.balance(db).held > 0
    finally:
        if proc.poll() is None:
            proc.kill()
    proc2, port2 = start()
    try:
        wait_ready(port2)
        assert ledger.balance(db).held == 0
        assert ledger.balance(db).entries == 500 * 1_000_000
        assert ledger.verify(db)["ok"]
    finally:
        proc2.terminate()
        output, _ = proc2.communicate(timeout=20)
    assert re.search(r"Released 1 hold", output)
    db.close()


def test_sigterm_drains_in_flight_requests(tmp_path):
    """SIGTERM while a stream is in flight: the stream still completes and is settled."""
    import signal
    import threading

    home = tmp_path / "drain"
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    env = {**os.environ, "LAYERS_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "layers_cli", "serve", "--offline", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        secret = None
        for line in proc.stdout:  # type: ignore[union-attr]
            if "lyr_live_" in line:
                secret = line.strip()
            if line.startswith("Press Ctrl-C"):
                break
        assert secret
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        result: dict[str, object] = {}

        def slow() -> None:
            with httpx.stream(
                "POST",
                f"http://127.0.0.1:{port}/v1/chat/completions",
                json=BODY,
                timeout=30,
                headers={"authorization": f"Bearer {secret}", "x-layers-simulate": "ttft-ms=1500"},
            ) as r:
                result["status"] = r.status_code
                result["lines"] = [line for line in r.iter_lines() if line]

        t = threading.Thread(target=slow)
        t.start()
        db = open_db(home / "layers.db")
        while ledger.balance(db).held == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        t.join(timeout=30)
        proc.wait(timeout=30)
        assert result["status"] == 200
        assert result["lines"][-1] == "data: [DONE]"  # type: ignore[index]
        assert ledger.balance(db).held == 0
        charged = db.conn.execute(
            "SELECT COUNT(*) FROM ledger_entries WHERE kind = 'charge'"
        ).fetchone()[0]
        assert charged == 1 and ledger.verify(db)["ok"]
        db.close()
    finally:
        if proc.poll() is None:
            proc.kill()
