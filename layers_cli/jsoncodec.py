"""JSON for the hot path (client bodies, upstream bodies, responses) with orjson.

orjson parses and renders several times faster than the standard library, which shows on
bench/. Differences that reach users: ``NaN``/``Infinity`` are refused as invalid JSON (they
are not JSON), and integers beyond 64 bits parse as floats. Rendering falls back to the
standard library for the few values orjson refuses (such integers, non-string keys).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

loads = orjson.loads  # raises ValueError (orjson.JSONDecodeError) on invalid JSON


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON bytes."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
