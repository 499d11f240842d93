"""Fake upstream providers: real starlette apps served on loopback by `tests.support.servers`.

Every fake shares `FakeState`: it records what it received and can be told to fail next.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Failure:
    """A scripted failure: an HTTP status with a body, a delay (timeout), or a stream cut."""

    status: int | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to sleep before answering (to trigger client timeouts)
    malformed: bool = False  # answer 200 with a body that is not JSON
    stream_error_after: int | None = None  # send N events, then an error event / cut


@dataclass
class FakeState:
    requests: list[dict[str, Any]] = field(default_factory=list)  # {"path","headers","json"}
    failures: list[Failure] = field(default_factory=list)

    def fail_next(self, failure: Failure, times: int = 1) -> None:
        self.failures.extend([failure] * times)

    def take_failure(self) -> Failure | None:
        return self.failures.pop(0) if self.failures else None

    @property
    def last(self) -> dict[str, Any]:
        return self.requests[-1]
