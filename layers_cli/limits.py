"""Per-key rate limits: requests per minute and tokens per minute, in process memory.

A sliding 60-second window per key. Token use is counted when a request is admitted (its
estimated prompt plus output allowance) and corrected when it settles, so a burst of large
requests cannot slip under the limit.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

from .errors import RateLimited

WINDOW = 60.0


@dataclass
class _Window:
    """A minute of one key's requests. Token counts sit beside their times, not in tuples:
    a float and an int are no work for the garbage collector, a tuple per request (kept a
    minute, thousands of them at load) was."""

    requests: deque[float] = field(default_factory=deque)
    token_times: deque[float] = field(default_factory=deque)
    token_counts: deque[int] = field(default_factory=deque)
    token_sum: int = 0

    def trim(self, now: float) -> None:
        while self.requests and self.requests[0] <= now - WINDOW:
            self.requests.popleft()
        while self.token_times and self.token_times[0] <= now - WINDOW:
            self.token_times.popleft()
            self.token_sum -= self.token_counts.popleft()

    def count_tokens(self, now: float, tokens: int) -> None:
        self.token_times.append(now)
        self.token_counts.append(tokens)
        self.token_sum += tokens


@dataclass(frozen=True)
class LimitState:
    """What the ``X-RateLimit-*`` headers report for one key after a request."""

    limit: int | None
    remaining: int | None
    reset_seconds: int

    def headers(self) -> dict[str, str]:
        if self.limit is None:
            return {}
        return {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(max(0, self.remaining or 0)),
            "x-ratelimit-reset": str(self.reset_seconds),
        }


_UNLIMITED = LimitState(None, None, 0)


class RateLimiter:
    def __init__(self, clock=time.monotonic) -> None:  # type: ignore[no-untyped-def]
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    def admit(self, key_id: str, rpm: int | None, tpm: int | None, tokens: int) -> LimitState:
        """Count one request of ``tokens`` against the key, or raise 429 saying which limit."""
        now = self._clock()
        window = self._windows.get(key_id)
        if window is None:
            window = self._windows[key_id] = _Window()
        window.trim(now)
        if rpm is not None and len(window.requests) >= rpm:
            wait = window.requests[0] + WINDOW - now
            raise self._limited(f"{rpm} requests per minute", wait, rpm)
        if tpm is not None and window.token_sum + tokens > tpm:
            if tokens > tpm:
                raise RateLimited(
                    f"This request may use {tokens} tokens, more than the key's limit of "
                    f"{tpm} tokens per minute.",
                    hint="Lower max_tokens or raise the limit with `layers keys update KEY "
                    "--tpm N`.",
                    code="tokens_per_minute",
                    limit="tpm",
                )
            wait = self._tokens_free_at(window, tpm - tokens) - now
            raise self._limited(f"{tpm} tokens per minute", wait, tpm, code="tokens_per_minute")
        window.requests.append(now)
        window.count_tokens(now, tokens)
        return self._state(window, rpm, now)

    def adjust(self, key_id: str, estimated: int, actual: int) -> None:
        """Replace a request's admitted estimate by its actual token count."""
        window = self._windows.get(key_id)
        if window is None or actual == estimated:
            return
        window.count_tokens(self._clock(), actual - estimated)

    def _tokens_free_at(self, window: _Window, allowed: int) -> float:
        total = window.token_sum
        for stamp, count in zip(window.token_times, window.token_counts, strict=True):
            total -= count
            if total <= allowed:
                return stamp + WINDOW
        return self._clock() + WINDOW

    def _state(self, window: _Window, rpm: int | None, now: float) -> LimitState:
        if rpm is None:
            return _UNLIMITED
        reset = math.ceil(window.requests[0] + WINDOW - now) if window.requests else 0
        return LimitState(rpm, rpm - len(window.requests), max(0, reset))

    def peek(self, key_id: str, rpm: int | None) -> LimitState:
        window = self._windows.setdefault(key_id, _Window())
        now = self._clock()
        window.trim(now)
        return self._state(window, rpm, now)

    @staticmethod
    def _limited(
        what: str, wait: float, limit: int, code: str = "requests_per_minute"
    ) -> RateLimited:
        seconds = max(1, math.ceil(wait))
        return RateLimited(
            f"Rate limit reached: this key allows {what}. Retry in {seconds} s.",
            hint="Raise it with `layers keys update KEY --rpm N --tpm N`.",
            code=code,
            headers={
                "retry-after": str(seconds),
                "x-ratelimit-limit": str(limit),
                "x-ratelimit-remaining": "0",
                "x-ratelimit-reset": str(seconds),
            },
            limit="rpm" if code == "requests_per_minute" else "tpm",
            retry_after=seconds,
        )
