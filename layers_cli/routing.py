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
