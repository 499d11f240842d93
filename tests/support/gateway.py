"""A running gateway for tests: a temp data home, a project with a key, credits, and the real
starlette app on a real loopback port."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layers_cli.server.app import create_app
from layers_cli.server.protocol import UVICORN_OPTIONS
from layers_cli.service import Layers
from layers_cli.settings import load_settings

from .servers import serve_app


@dataclass
class GatewayHandle:
    base_url: str  # ends in /v1
    secret: str
    key: dict[str, Any]
    home: Path
    app: Any

    def service(self) -> Layers:
        """A separate service (own SQLite connection) for assertions."""
        return Layers(load_settings(home=self.home))

    def client(self, **kw: Any) -> Any:
        import openai

        return openai.OpenAI(
            base_url=self.base_url,
            api_key=kw.pop("api_key", self.secret),
            max_retries=kw.pop("max_retries", 0),
            **kw,
        )

    def balance_micro(self) -> int:
        svc = self.service()
        try:
            return svc.balance()["balance_micro"]
        finally:
            svc.close()


def write_config(home: Path, text: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(text)


@contextlib.contextmanager
def running_gateway(
    home: Path,
    *,
    credits: str | None = "100",
    offline: bool = True,
    kind: str = "live",
    key_options: dict[str, Any] | None = None,
    retry_base_delay: float = 0.01,
) -> Iterator[GatewayHandle]:
    settings = load_settings(home=home, offline=offline or None)
    layers = Layers(settings)
    layers.create_project("playground")
    key, secret = layers.create_key("playground", kind=kind, **(key_options or {}))
    if credits:
        layers.topup(credits)
    gateway = layers.gateway()
    gateway.retry_base_delay = retry_base_delay
    app = create_app(layers, gateway)
    with serve_app(app, **UVICORN_OPTIONS) as url:  # as `layers serve` runs it
        yield GatewayHandle(url + "/v1", secret, key, home, app)
    layers.close()
