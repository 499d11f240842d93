"""Summarise a py-spy ``--format raw --threads --idle`` profile of the gateway.

Each raw line is ``thread (TID): NAME;frame;frame;... COUNT`` with frames written as
``function (file:line)``. The summary gives, per thread, the share of samples that were busy,
and for the event-loop thread the top functions by self samples (leaf frame) and by inclusive
samples (anywhere on the stack, counted once per stack), plus self samples grouped by package.

Run alone: ``python bench/spy_summary.py profile.txt``.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]*?)(?::(?P<line>\d+))?\)$")
# leaf frames that mean "waiting", not "working"
_IDLE = (
    ("select", "selectors.py"),
    ("_worker", "concurrent/futures/thread.py"),
    ("wait", "threading.py"),
    ("get", "queue.py"),
    # uvloop: the loop's own C code waiting in epoll shows as this Python frame
    ("Runner.run", "asyncio/runners.py"),
    # the database thread blocked on its queue (SimpleQueue.get is C)
    ("DatabaseThread._serve", "layers_cli/dbthread.py"),
)
_PACKAGES = (
    "layers_cli", "starlette", "uvicorn", "h11", "httpx", "httpcore", "anyio", "sqlite_utils",
    "aiohttp", "multidict", "yarl",
    "asyncio", "json", "pydantic", "typer", "concurrent", "threading", "contextlib", "logging",
)  # fmt: skip


def _parse(frame: str) -> tuple[str, str, str]:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip(), "", ""
    return m["func"], m["file"], m["line"] or ""


def _package(file: str) -> str:
    for name in _PACKAGES:
        if file.startswith(name + "/") or file == name + ".py":
            return name
    return "other: " + (file.split("/", 1)[0] if "/" in file else file or "?")


def _is_idle(func: str, file: str) -> bool:
    return any(func.endswith(f) and file.endswith(path) for f, path in _IDLE)


def summarize(path: Path, top: int = 20) -> dict[str, Any]:
    threads: dict[str, Counter[tuple[str, ...]]] = {}
    for raw in path.read_text().splitlines():
        stack, _, count = raw.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        thread, *frames = stack.split(";")
        name = thread.split(": ", 1)[-1] if ": " in thread else thread
        threads.setdefault(name, Counter())[tuple(frames)] += int(count)

    out: dict[str, Any] = {"threads": {}}
    for name, stacks in threads.items():
        total = sum(stacks.values())
        idle = sum(n for st, n in stacks.items() if st and _is_idle(*_parse(st[-1])[:2]))
        out["threads"][name] = {
            "samples": total,
            "busy_samples": total - idle,
            "busy_pct": round(100 * (total - idle) / total, 1) if total else 0.0,
        }
    main = threads.get("MainThread") or (max(threads.values(), key=lambda c: sum(c.values())))
    busy = {st: n for st, n in main.items() if st and not _is_idle(*_parse(st[-1])[:2])}
    busy_total = sum(busy.values()) or 1
    self_fn: Counter[str] = Counter()
    self_pkg: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    for stack, n in busy.items():
        func, file, line = _parse(stack[-1])
        self_fn[f"{func} ({file}:{line})"] += n
        self_pkg[_package(file)] += n
        seen = set()
        for frame in stack:
            func, file, _ = _parse(frame)
            label = f"{func} ({file})"
            if label not in seen:
                seen.add(label)
                incl[label] += n

    def rows(counter: Counter[str], limit: int) -> list[dict[str, Any]]:
        return [
            {"name": k, "samples": v, "pct": round(100 * v / busy_total, 1)}
            for k, v in counter.most_common(limit)
        ]

    # inclusive: skip the frames every request passes through (the loop, server, middleware)
    below = {k: v for k, v in incl.items() if v < busy_total * 0.97}
    layers_incl = Counter({k: v for k, v in below.items() if "(layers_cli/" in k})
    out.update(
        {
            "busy_samples": busy_total,
            "self_by_package": rows(self_pkg, len(self_pkg)),
            "self_top": rows(self_fn, top),
            "inclusive_layers_top": rows(layers_incl, top),
            "inclusive_top": rows(Counter(below), top),
        }
    )
    return out


def render(summary: dict[str, Any]) -> str:
    lines = ["Threads (busy share of samples):"]
    for name, t in summary["threads"].items():
        lines.append(f"  {name:<24} {t['busy_pct']:5.1f}% busy of {t['samples']} samples")
    sections = (
        ("Event-loop thread, self samples by package", "self_by_package"),
        ("Event-loop thread, top functions by self samples", "self_top"),
        (
            "Event-loop thread, layers_cli functions by inclusive samples (<97%)",
            "inclusive_layers_top",
        ),
        ("Event-loop thread, all functions by inclusive samples (<97%)", "inclusive_top"),
    )
    for title, key in sections:
        lines.append(f"{title} (% of {summary['busy_samples']} busy samples):")
        lines.extend(f"  {r['pct']:5.1f}%  {r['name']}" for r in summary[key])
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(summarize(Path(sys.argv[1]))))
