"""Provider credentials: the OS keyring first, environment variables second.

Secrets are read here and handed to adapters by the service; they are never printed, logged or
stored in the database. With no usable keyring backend (a headless server), `set_credential`
fails with a message that points at the environment variables instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import SecretsError

SERVICE = "layers"


@dataclass(frozen=True)
class Credential:
    provider: str
    secret: str | None
    source: str  # "keyring", "env:NAME", "config", or "none"

    @property
    def present(self) -> bool:
        return bool(self.secret)


def _keyring():  # type: ignore[no-untyped-def]
    import keyring

    return keyring


def _backend_usable() -> bool:
    kr = _keyring()
    try:
        from keyring.backends import fail

        return not isinstance(kr.get_keyring(), fail.Keyring)
    except Exception:  # pragma: no cover - exotic backends
        return True


def _no_backend_error(provider: str, env_names: tuple[str, ...]) -> SecretsError:
    env = " or ".join(env_names) or f"{provider.upper()}_API_KEY"
    return SecretsError(
        "No OS keyring backend is available on this machine (typical of headless servers).",
        hint=f"Set the environment variable {env} for `layers serve` instead.",
    )


def get_credential(provider: str, env_names: tuple[str, ...] = ()) -> Credential:
    try:
        secret = _keyring().get_password(SERVICE, provider) if _backend_usable() else None
    except Exception:  # a locked or broken keyring must not stop the gateway
        secret = None
    if secret:
        return Credential(provider, secret, "keyring")
    for name in env_names:
        value = os.environ.get(name)
        if value:
            return Credential(provider, value, f"env:{name}")
    return Credential(provider, None, "none")


def set_credential(provider: str, secret: str, env_names: tuple[str, ...] = ()) -> None:
    if not secret or not secret.strip():
        raise SecretsError("The credential is empty; nothing was stored.")
    if not _backend_usable():
        raise _no_backend_error(provider, env_names)
    try:
        _keyring().set_password(SERVICE, provider, secret.strip())
    except Exception as exc:
        raise SecretsError(
            f"The keyring refused to store the {provider} credential: {exc.__class__.__name__}.",
            hint=f"Use the environment variable {' or '.join(env_names)} instead.",
        ) from exc


def delete_credential(provider: str) -> bool:
    """Remove a stored credential; returns False when there was none in the keyring."""
    if not _backend_usable():
        return False
    from keyring.errors import PasswordDeleteError

    try:
        _keyring().delete_password(SERVICE, provider)
    except PasswordDeleteError:
        return False
    return True
