"""Shared pieces of the provider adapter tests (an adapter against its fake on loopback): the
catalog entry a call is made for, the module-scoped fake server with per-test state, and
running one adapter call in its own event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from layers_cli.catalog.model import ModelInfo, Prices
from layers_cli.errors import LayersError
from layers_cli.providers.http import HTTPClient
from tests.fakes import FakeState

from .servers import serve_app

T = TypeVar("T")


def model_info(
    provider: str,
    upstream: str,
    *,
    kind: str = "language",
    capabilities: frozenset[str] | set[str] = frozenset(),
    display_name: str | None = None,
    context_window: int = 0,
    default_output_tokens: int = 0,
    max_output_tokens: int = 0,
    prices: Prices | None = None,
    **extra: Any,
) -> ModelInfo:
    """The catalog entry ``provider/upstream`` (free unless ``prices``; no token limits)."""
    return ModelInfo(
        id=f"{provider}/{upstream}",
        provider=provider,
        upstream_id=upstream,
        display_name=display_name or upstream,
        type=kind,
        capabilities=frozenset(capabilities),
        context_window=context_window,
        default_output_tokens=default_output_tokens,
        max_output_tokens=max_output_tokens,
        prices=prices or Prices(),
        **extra,
    )


def image_model(
    provider: str, upstream: str, per_image: str, display_name: str | None = None
) -> ModelInfo:
    """An image-generation model billed ``per_image`` USD."""
    return model_info(
        provider,
        upstream,
        kind="image",
        capabilities={"image-gen"},
        display_name=display_name,
        prices=Prices(per_image=Decimal(per_image)),
    )


def fake_server(create_app: Callable[..., Any], suffix: str = "", **kw: Any) -> Iterator[Any]:
    """The body of a module-scoped fake fixture (starting uvicorn per test is slow):
    ``yield from fake_server(create_app, "/v1")`` yields (its state, its URL + ``suffix``)."""
    state = FakeState()
    with serve_app(create_app(state, **kw)) as url:
        yield state, url + suffix


def fresh(state: FakeState) -> FakeState:
    """``state`` with its recorded requests and scripted failures forgotten (per test)."""
    state.requests.clear()
    state.failures.clear()
    return state


def with_http(call: Callable[[HTTPClient], Awaitable[T]]) -> T:
    """``await call(http)`` in a fresh event loop with a fresh HTTP client."""

    async def go() -> T:
        async with HTTPClient() as http:
            return await call(http)

    return asyncio.run(go())


def failure_of(run: Callable[..., Any], *args: Any, **kw: Any) -> LayersError:
    """The `LayersError` that ``run(*args, **kw)`` raises."""
    with pytest.raises(LayersError) as info:
        run(*args, **kw)
    return info.value
