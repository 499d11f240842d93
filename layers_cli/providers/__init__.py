"""Provider registry: provider name → adapter module, imported lazily on first use.

Each adapter module exposes ``ADAPTER`` (a `base.Provider`). Resolving by import string keeps
``layers --help`` fast and lets a third party add a provider by adding one module.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import Provider

BUILTIN: dict[str, str] = {
    "openai": "layers_cli.providers.openai",
    "anthropic": "layers_cli.providers.anthropic",
    "google": "layers_cli.providers.google",
    "perplexity": "layers_cli.providers.perplexity",
    "bfl": "layers_cli.providers.bfl",
    "recraft": "layers_cli.providers.recraft",
    "openai-compatible": "layers_cli.providers.openai_compat",
    # OpenAI-compatible vendors: the generic adapter with their own base URL and key
    "xai": "layers_cli.providers.openai_compat",
    "deepseek": "layers_cli.providers.openai_compat",
    "mistral": "layers_cli.providers.openai_compat",
    "simulator": "layers_cli.providers.simulator",
}

# Environment variables consulted (in order) when the keyring holds no credential.
CREDENTIAL_ENV: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "google": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "perplexity": ("PERPLEXITY_API_KEY",),
    "bfl": ("BFL_API_KEY",),
    "recraft": ("RECRAFT_API_KEY",),
    "xai": ("XAI_API_KEY",),
    "deepseek": ("DEEPSEEK_API_KEY",),
    "mistral": ("MISTRAL_API_KEY",),
}

DEFAULT_BASE_URLS: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com/v1",
    "google": "https://generativelanguage.googleapis.com/v1beta",
    "perplexity": "https://api.perplexity.ai",
    "bfl": "https://api.bfl.ai/v1",
    "recraft": "https://external.api.recraft.ai/v1",
    "xai": "https://api.x.ai/v1",
    "deepseek": "https://api.deepseek.com/v1",
    "mistral": "https://api.mistral.ai/v1",
}


@cache
def get_adapter(name: str) -> Provider:
    """The adapter for a provider name (``openai``, ``anthropic``, …, ``simulator``)."""
    module = importlib.import_module(BUILTIN[name])
    return module.ADAPTER  # type: ignore[no-any-return]
