"""The offline simulator: serves any catalog model in-process, deterministically.

It behaves like the model it stands in for: streams, tool calls whose arguments validate
against the tool's schema, JSON that matches a requested schema, reasoning for thinking
models, citations for search models, real PNGs, embeddings of the right size, prompt-cache
hits, and failures on request (``X-Layers-Simulate``, see `parse_simulate_header`).
"""

from __future__ import annotations

from .adapter import SimulatorAdapter
from .failures import DIRECTIVES, parse_simulate_header

ADAPTER = SimulatorAdapter()


def reset_prompt_cache() -> None:
    """Forget every cached prefix (tests, and ``layers serve`` restarts)."""
    ADAPTER.cache.clear()


__all__ = [
    "ADAPTER",
    "DIRECTIVES",
    "SimulatorAdapter",
    "parse_simulate_header",
    "reset_prompt_cache",
]
