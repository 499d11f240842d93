"""Shared pieces of the end-to-end tests (openai SDK → layers serve → fake providers on
loopback): module-scoped gateways started in a clean environment, fake servers, and the money
checks every e2e module makes (a request's charge is exactly what left the balance and the
catalog price × usage × markup; a failure leaves the ledger untouched)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import keyring
import openai
import pytest

from layers_cli.pricing import charge
from layers_cli.providers.base import Usage
from tests.conftest import PROVIDER_ENV, MemoryKeyring
from tests.fakes import FakeState

from .gateway import GatewayHandle, running_gateway, write_config
from .servers import serve_app

MARKUP = Decimal("0.6")  # the default markup: every charge is catalog price × 1.6

Fakes = dict[str, tuple[FakeState, str]]


# ---------------------------------------------------------------- gateways and fakes


@contextlib.contextmanager
def clean_environment(env: Mapping[str, str]) -> Iterator[None]:
    """Module fixtures run before conftest's per-test isolation: give the gateway an
    in-memory keyring and only the credentials named here while it resolves its routes."""
    with pytest.MonkeyPatch.context() as mp:
        for name in (*PROVIDER_ENV, "LAYERS_OFFLINE", "LAYERS_MARKUP", "LAYERS_HOME"):
            mp.delenv(name, raising=False)
        for name, value in env.items():
            mp.setenv(name, value)
        previous = keyring.get_keyring()
        keyring.set_keyring(MemoryKeyring())
        try:
            yield
        finally:
            keyring.set_keyring(previous)


@contextlib.contextmanager
def gateway(home: Path, config: str, env: Mapping[str, str]) -> Iterator[GatewayHandle]:
    """A live gateway (1000 credits) on ``config``, whose routes were resolved with only the
    credentials in ``env`` (see `clean_environment`)."""
    write_config(home, config)
    with contextlib.ExitStack() as stack:
        with clean_environment(env):
            handle = stack.enter_context(running_gateway(home, offline=False, credits="1000"))
        yield handle


DEFAULT_POLICY = "upstream_timeout = 1.0\n"  # and the default 2 retries (3 attempts)
NO_RETRY_POLICY = "upstream_timeout = 0.5\nmax_retries = 0\n"  # terminal mappings at once


def provider_config(head: str, base_urls: Mapping[str, str]) -> str:
    """config.toml: ``head`` (a policy), then each provider pointed at its fake."""
    providers = "".join(
        f'[providers.{name}]\nbase_url = "{url}"\n\n' for name, url in base_urls.items()
    )
    return f"{head}\n{providers}"


def module_gateway(
    tmp_path_factory: pytest.TempPathFactory, name: str, config: str, env: Mapping[str, str]
) -> Iterator[GatewayHandle]:
    """The body of a module-scoped gateway fixture: ``yield from module_gateway(...)``."""
    with gateway(tmp_path_factory.mktemp(name), config, env) as handle:
        yield handle


@contextlib.contextmanager
def serve_fakes(
    factories: Mapping[str, Callable[[FakeState], Any]], suffix: str = "/v1"
) -> Iterator[Fakes]:
    """Start one fake per name; yields name → (its recorded state, its base URL + suffix)."""
    with contextlib.ExitStack() as stack:
        started = {}
        for name, factory in factories.items():
            state = FakeState()
            url = stack.enter_context(serve_app(factory(state)))
            started[name] = (state, url + suffix)
        yield started


def reset(*states: FakeState) -> None:
    """Forget recorded requests and scripted failures (module fakes, per-test state)."""
    for state in states:
        state.requests.clear()
        state.failures.clear()


# ---------------------------------------------------------------- money and ledger


def usage_of(usage: Any, *, require_details: bool = False) -> Usage:
    """The SDK's usage object as a canonical `Usage` (to price it). With ``require_details``
    the prompt and completion token details must both be there."""
    prompt = usage.prompt_tokens_details
    completion = usage.completion_tokens_details
    if require_details:
        assert prompt is not None and completion is not None
    return Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cached_tokens=(prompt.cached_tokens or 0) if prompt else 0,
        cache_write_tokens=(getattr(prompt, "cache_write_tokens", 0) or 0) if prompt else 0,
        reasoning_tokens=(completion.reasoning_tokens or 0) if completion else 0,
    )


def price(gw: GatewayHandle, model_id: str, usage: Usage) -> int:
    """Catalog price × usage × 1.6, in micro-credits."""
    svc = gw.service()
    try:
        return charge(svc.catalog.get(model_id), usage, MARKUP).micro
    finally:
        svc.close()


def marked_up_micro(usd: str | Decimal, n: int = 1) -> int:
    """``n`` × a USD price × 1.6, in micro-credits."""
    return int(Decimal(usd) * n * (1 + MARKUP) * 10**8)


def settled(gw: GatewayHandle, request_id: str, before: int) -> dict[str, Any]:
    """The request's row; its charge is exactly what left the balance, no hold stays open."""
    svc = gw.service()
    try:
        row = svc.get_request(request_id)
        balance = svc.balance()
        assert before - balance["balance_micro"] == row["credits_micro"] > 0
        assert balance["open_holds"] == 0
        assert svc.verify_ledger()["ok"]
        return row
    finally:
        svc.close()


def assert_untouched(gw: GatewayHandle, before: int, request_id: str | None = None) -> None:
    """A failed request moved no money, left no hold, and was logged as an error."""
    svc = gw.service()
    try:
        balance = svc.balance()
        assert balance["balance_micro"] == before
        assert balance["open_holds"] == 0
        assert svc.verify_ledger()["ok"]
        if request_id:
            row = svc.get_request(request_id)
            assert row["status"] == "error" and row["credits_micro"] == 0
    finally:
        svc.close()


@contextlib.contextmanager
def expect_refused(
    gw: GatewayHandle,
    exc_type: type[openai.APIError] = openai.APIError,
    *,
    status: int | None = None,
    code: str | None = None,
    contains: tuple[str, ...] = (),
    excludes: tuple[str, ...] = (),
    logged: bool = True,
) -> Iterator[pytest.ExceptionInfo[Any]]:
    """The request made in the block fails with ``exc_type`` (and ``status``, ``code``, a
    message with every text of ``contains`` and none of ``excludes``) and moves no money: the
    balance recorded on entry is unchanged, no hold stays open and (``logged``) the request
    is an error row. Yields the `pytest.raises` info for further checks after the block."""
    before = gw.balance_micro()
    with pytest.raises(exc_type) as err:
        yield err
    body = err.value.body
    if status is not None:
        assert err.value.status_code == status  # type: ignore[attr-defined]
    if code is not None:
        assert body["code"] == code
    for text in contains:
        assert text in body["message"]
    for text in excludes:
        assert text not in body["message"]
    assert_untouched(gw, before, body["request_id"] if logged else None)


def refused_mid_stream(
    gw: GatewayHandle, open_stream: Callable[[], Iterable[Any]]
) -> tuple[list[str], openai.APIError]:
    """Read the stream ``open_stream()`` until its error event (see `expect_refused`: no money
    moves): the text deltas received before it, and the error."""
    received: list[str] = []
    with expect_refused(gw) as err:
        for chunk in open_stream():
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    return received, err.value


# ---------------------------------------------------------------- responses


def layers(obj: Any) -> dict[str, Any]:
    """The gateway's ``layers`` block on a response or chunk."""
    return obj.model_extra["layers"]


def chat(gw: GatewayHandle, model: str, text: str, **kw: Any) -> Any:
    """One user message to ``model`` (50 max tokens unless given)."""
    kw.setdefault("max_tokens", 50)
    return gw.client().chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], **kw
    )


JSON_SCHEMA_DRAFT_07 = "http://json-schema.org/draft-07/schema#"


def weather_tool(**schema: Any) -> dict[str, Any]:
    """``get_weather(city)`` as an OpenAI function tool; ``schema`` adds keys to its JSON
    schema (``$schema``, ``additionalProperties``: what providers must strip or keep)."""
    return {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
                **schema,
            },
        },
    }
