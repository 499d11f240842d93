"""Where each provider's models go: the real API (with which credential and base URL) or the
offline simulator. Resolved once when the gateway starts, never per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .providers import BUILTIN, CREDENTIAL_ENV, DEFAULT_BASE_URLS
from .secrets import get_credential
from .settings import Settings


@dataclass(frozen=True)
class ProviderRoute:
    name: str
    adapter: str  # registry name of the adapter module
    base_url: str | None
    credential: str | None
    source: str  # "keyring", "env:NAME", "config", "none"
    live: bool

    def describe(self) -> dict[str, Any]:
        """What `layers providers list` and `layers serve` show; never the secret."""
        return {
            "name": self.name,
            "status": "live" if self.live else "simulated",
            "source": self.source,
            "base_url": self.base_url,
        }


def provider_routes(settings: Settings) -> dict[str, ProviderRoute]:
    routes: dict[str, ProviderRoute] = {}
    for name in BUILTIN:
        if name in ("simulator", "openai-compatible"):
            continue
        cred = get_credential(name, CREDENTIAL_ENV.get(name, ()))
        override = settings.providers.get(name, {})
        base_url = override.get("base_url") or DEFAULT_BASE_URLS.get(name)
        live = cred.present and not settings.offline
        routes[name] = ProviderRoute(name, name, base_url, cred.secret, cred.source, live)
    for name, upstream in settings.upstreams.items():
        env = upstream.get("api_key_env")
        cred = get_credential(name, (env,) if env else ())
        secret, source = cred.secret, cred.source
        if not secret and upstream.get("api_key"):
            secret, source = str(upstream["api_key"]), "config"
        # a local model server may need no key at all: declared upstreams are live unless
        # they name a key variable that is missing
        live = not settings.offline and (bool(secret) or not env)
        routes[name] = ProviderRoute(
            name, "openai-compatible", upstream.get("base_url"), secret, source, live
        )
    return routes


def probe_provider(settings: Settings, catalog: Any, name: str) -> dict[str, Any]:
    """One cheap real call (1 output token on the provider's cheapest language model, or one
    smallest image for image-only providers) to check a credential and measure latency."""
    import asyncio
    import time

    from .errors import NotFound, ProviderError
    from .providers import get_adapter
    from .providers.base import UpstreamCall
    from .providers.http import HTTPClient

    routes = provider_routes(settings)
    route = routes.get(name)
    if route is None:
        raise NotFound(
            f"Unknown provider '{name}'. Known providers: {', '.join(sorted(routes))}.",
            param="provider",
        )
    if not route.live:
        return {
            "ok": False,
            "latency_ms": None,
            "provider": name,
            "message": f"{name} has no credential (run `layers providers set {name}`).",
        }
    models = sorted(
        catalog.list(provider=name), key=lambda m: (m.type != "language", m.prices.input, m.id)
    )
    models = [m for m in models if m.lifecycle != "retired"]
    if not models:
        return {
            "ok": False,
            "latency_ms": None,
            "provider": name,
            "message": f"The catalog has no model of {name} to call.",
        }
    model = models[0]
    if model.type == "language":
        body: dict[str, Any] = {
            "model": model.upstream_id,
            "max_tokens": 1,
            "messages": [{"role": "user", "content": "ping"}],
        }
    else:
        body = {"model": model.upstream_id, "prompt": "a dot", "n": 1, "size": "256x256"}

    async def run() -> None:
        async with HTTPClient(timeout=30) as http:
            call = UpstreamCall(
                body=body,
                model=model,
                upstream_model=model.upstream_id,
                http=http,
                credential=route.credential,
                base_url=route.base_url,
                timeout=30,
            )
            adapter = get_adapter(route.adapter)
            if model.type == "language":
                await adapter.complete(call)
            else:
                await adapter.images(call)

    started = time.perf_counter()
    try:
        asyncio.run(run())
    except ProviderError as exc:
        return {
            "ok": False,
            "provider": name,
            "model": model.id,
            "message": exc.message,
            "latency_ms": int((time.perf_counter() - started) * 1000),
        }
    return {
        "ok": True,
        "provider": name,
        "model": model.id,
        "latency_ms": int((time.perf_counter() - started) * 1000),
        "message": f"{model.id} answered.",
    }
