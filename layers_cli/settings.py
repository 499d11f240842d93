"""Settings, read once: defaults → config.toml → LAYERS_* environment → CLI flags.

The result is a frozen `Settings` handed down to everything else; no module reads the
environment or the config file on its own. ``LAYERS_HOME`` (or ``--home``) moves the whole
data home, which is what makes tests trivial.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from .errors import ConfigError

APP_NAME = "layers"
DB_FILENAME = "layers.db"
CONFIG_FILENAME = "config.toml"
DEFAULT_MARKUP = Decimal("0.60")
DEFAULT_STARTER_CREDITS = 500  # credits ($5.00) granted once to a fresh home by `layers serve`
DEFAULT_PORT = 8787


def default_home() -> Path:
    """The data home: ``LAYERS_HOME`` if set, else platformdirs' user data dir for `layers`."""
    env = os.environ.get("LAYERS_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir(APP_NAME, appauthor=False))


@dataclass(frozen=True)
class Settings:
    home: Path
    markup: Decimal = DEFAULT_MARKUP
    offline: bool = False
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    starter_credits: int = DEFAULT_STARTER_CREDITS
    upstream_timeout: float = 120.0
    max_retries: int = 2
    # Raw sections of config.toml, interpreted by their owners (catalog, providers, service).
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    retired: dict[str, str] = field(default_factory=dict)
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)
    upstreams: dict[str, dict[str, Any]] = field(default_factory=dict)
    fallbacks: dict[str, list[str]] = field(default_factory=dict)

    @property
    def db_path(self) -> Path:
        return self.home / DB_FILENAME

    @property
    def config_path(self) -> Path:
        return self.home / CONFIG_FILENAME

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def _decimal(value: Any, name: str) -> Decimal:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise ConfigError(f"config.toml: {name} must be a number, got {value!r}.") from exc


def _read_config(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    import tomllib  # only when there is a file to parse

    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid TOML: {exc}.", hint="Fix the file or move it aside."
        ) from exc


def _env_bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def load_settings(home: Path | str | None = None, **flags: Any) -> Settings:
    """Build the one `Settings` object for this process."""
    home_path = Path(home).expanduser() if home else default_home()
    raw = _read_config(home_path / CONFIG_FILENAME)
    server = raw.get("server", {})
    values: dict[str, Any] = {
        "home": home_path,
        "markup": _decimal(raw.get("markup", DEFAULT_MARKUP), "markup"),
        "offline": bool(raw.get("offline", False)),
        "host": server.get("host", "127.0.0.1"),
        "port": int(server.get("port", DEFAULT_PORT)),
        "starter_credits": int(raw.get("starter_credits", DEFAULT_STARTER_CREDITS)),
        "upstream_timeout": float(raw.get("upstream_timeout", 120.0)),
        "max_retries": int(raw.get("max_retries", 2)),
        "models": dict(raw.get("models", {})),
        "aliases": dict(raw.get("aliases", {})),
        "retired": dict(raw.get("retired", {})),
        "providers": dict(raw.get("providers", {})),
        "upstreams": dict(raw.get("upstreams", {})),
        "fallbacks": {k: list(v) for k, v in raw.get("fallbacks", {}).items()},
    }
    env = os.environ
    if "LAYERS_MARKUP" in env:
        values["markup"] = _decimal(env["LAYERS_MARKUP"], "LAYERS_MARKUP")
    if "LAYERS_OFFLINE" in env:
        values["offline"] = _env_bool(env["LAYERS_OFFLINE"])
    if "LAYERS_HOST" in env:
        values["host"] = env["LAYERS_HOST"]
    if "LAYERS_PORT" in env:
        values["port"] = int(env["LAYERS_PORT"])
    return Settings(**values).with_overrides(**flags)
