"""The value type of one catalog entry. Prices are exact decimals, never floats."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

CAPABILITIES = (
    "text",
    "vision",
    "tools",
    "json",
    "stream",
    "cache",
    "thinking",
    "web",
    "image-gen",
    "embed",
)
MODEL_TYPES = ("language", "image", "embedding")
LIFECYCLES = ("active", "deprecated", "retired")


@dataclass(frozen=True)
class Prices:
    """List prices in USD: per 1M tokens for tokens, per image for images."""

    input: Decimal = Decimal(0)
    output: Decimal = Decimal(0)
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    per_image: Decimal | None = None


@dataclass(frozen=True)
class ModelInfo:
    id: str  # the Layers id apps send, "anthropic/claude-sonnet-4.5"
    provider: str  # "anthropic"; or the name of an [upstreams.NAME] from config.toml
    upstream_id: str  # the provider's own id, "claude-sonnet-4-5"
    display_name: str
    type: str  # one of MODEL_TYPES
    capabilities: frozenset[str]
    context_window: int
    default_output_tokens: int
    max_output_tokens: int
    prices: Prices
    lifecycle: str = "active"  # one of LIFECYCLES
    end_of_life: str | None = None  # ISO date
    replacement: str | None = None  # Layers id suggested instead
    aliases: tuple[str, ...] = ()
    dimensions: int | None = None  # embedding models: the vector size
    markup: Decimal | None = None  # per-model markup override (config.toml)
    description: str = ""
    extra: dict[str, object] = field(default_factory=dict, compare=False, hash=False)

    def has(self, capability: str) -> bool:
        return capability in self.capabilities
