"""Failures and latency on request, from the ``X-Layers-Simulate`` header.

Apps must handle overloads, timeouts and streams cut short; offline they can ask for them:
``error=529``, ``timeout``, ``disconnect-after=5``, ``ttft-ms=200``, ``tps=50``. Errors are
raised the way a real adapter raises them (``error_for_status`` and friends), so the rest of
the gateway cannot tell a simulated failure from a real one, except for "(simulated)".
"""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass
from http import HTTPStatus

from ...errors import InvalidRequest, ProviderError
from ..base import connection_error, error_for_status, timeout_error

DIRECTIVES = ("error", "timeout", "disconnect-after", "ttft-ms", "tps", "retry-after")
_NEEDS_VALUE = ("error", "disconnect-after", "ttft-ms", "tps", "retry-after")

# What each provider really says, so client code that matches on messages sees the real text.
_MESSAGES: dict[str, dict[int, str]] = {
    "anthropic": {
        400: "messages: at least one message is required",
        401: "invalid x-api-key",
        403: "Your API key does not have permission to use the specified resource.",
        404: "model: not found",
        429: "Number of request tokens has exceeded your per-minute rate limit",
        500: "Internal server error",
        529: "Overloaded",
    },
    "openai": {
        400: "Invalid request: the request body could not be processed.",
        401: "Incorrect API key provided.",
        404: "The model does not exist or you do not have access to it.",
        429: "Rate limit reached for requests per min (RPM). Please try again in 2s.",
        500: "The server had an error while processing your request. Sorry about that!",
        503: "The engine is currently overloaded, please try again later.",
    },
    "google": {
        400: "Request contains an invalid argument.",
        403: "The caller does not have permission",
        429: "Resource has been exhausted (e.g. check quota).",
        500: "An internal error has occurred. Please retry or report in the troubleshooting guide.",
        503: "The model is overloaded. Please try again later.",
    },
    "perplexity": {
        429: "Rate limit exceeded. Please slow down your requests.",
        500: "Internal server error",
    },
}
_RETRY_AFTER = {429: 2.0, 503: 2.0, 529: 2.0}


def parse_simulate_header(value: str | None) -> dict[str, str]:
    """``"disconnect-after=5; ttft-ms=200, tps=50"`` → ``{"disconnect-after": "5", …}``.

    Directives are separated by ``;`` or ``,``; a bare name (``timeout``) maps to ``""``.
    Unknown names raise `InvalidRequest` naming the valid ones.
    """
    directives: dict[str, str] = {}
    for part in re.split(r"[;,]", value or ""):
        if not part.strip():
            continue
        name, _, arg = part.partition("=")
        directives[name.strip().lower()] = arg.strip()
    validate(directives)
    return directives


def validate(directives: dict[str, str]) -> None:
    """Reject unknown directives and bad numbers before any work is done."""
    for name, arg in directives.items():
        if name not in DIRECTIVES:
            raise InvalidRequest(
                f"Unknown X-Layers-Simulate directive {name!r}.",
                hint="Valid directives: " + ", ".join(DIRECTIVES) + " (e.g. `error=529`).",
                param="X-Layers-Simulate",
            )
        if name in _NEEDS_VALUE and _number(arg) is None:
            raise InvalidRequest(
                f"X-Layers-Simulate directive {name!r} needs a non-negative number, got {arg!r}.",
                hint=f"For example `{name}={_EXAMPLES[name]}`.",
                param="X-Layers-Simulate",
            )
    status = directives.get("error")
    if status is not None and not (400 <= float(status) <= 599 and float(status).is_integer()):
        raise InvalidRequest(
            f"X-Layers-Simulate error={status} is not an HTTP error status.",
            hint="Use a status from 400 to 599, e.g. `error=429` or `error=529`.",
            param="X-Layers-Simulate",
        )


_EXAMPLES = {
    "error": "529",
    "disconnect-after": "5",
    "ttft-ms": "200",
    "tps": "50",
    "retry-after": "2",
}


def _number(arg: str) -> float | None:
    try:
        value = float(arg)
    except ValueError:
        return None
    return value if value >= 0 and math.isfinite(value) else None


def raise_requested(provider: str, directives: dict[str, str], timeout: float) -> None:
    """Raise the error or timeout asked for; nothing happens without such a directive."""
    validate(directives)
    if "error" in directives:
        status = int(float(directives["error"]))
        retry_after = directives.get("retry-after")
        delay = float(retry_after) if retry_after else _RETRY_AFTER.get(status)
        raise error_for_status(
            provider,
            status,
            f"{provider_message(provider, status)} (simulated)",
            retry_after=delay,
        )
    if "timeout" in directives:
        raise timeout_error(provider, timeout)


def provider_message(provider: str, status: int) -> str:
    own = _MESSAGES.get(provider, {}).get(status)
    if own:
        return own
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Overloaded" if status == 529 else f"HTTP error {status}"


def disconnect(provider: str) -> ProviderError:
    """The error a dropped upstream connection becomes."""
    reset = ConnectionResetError("upstream closed the stream (simulated)")
    return connection_error(provider, reset)


def disconnect_after(directives: dict[str, str]) -> int | None:
    arg = directives.get("disconnect-after")
    return None if arg is None else int(float(arg))


@dataclass(frozen=True)
class Pace:
    """Simulated latency: time to first token and tokens per second (none by default)."""

    ttft: float = 0.0
    tps: float | None = None

    @classmethod
    def of(cls, directives: dict[str, str]) -> Pace:
        ttft = float(directives.get("ttft-ms") or 0) / 1000
        tps = float(directives["tps"]) if directives.get("tps") else None
        return cls(ttft=ttft, tps=tps if tps else None)

    async def first(self) -> None:
        if self.ttft > 0:
            await asyncio.sleep(self.ttft)

    async def tokens(self, count: int) -> None:
        if self.tps and count > 0:
            await asyncio.sleep(count / self.tps)
