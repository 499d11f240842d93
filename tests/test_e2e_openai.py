"""The openai SDK → layers serve → a fake OpenAI API (and fake OpenAI-compatible vendors) on
loopback: the translated request, the response the SDK parses, the settled charge, and the
error mapping with the ledger left untouched by every failure.

The fakes and the gateway are started once per module (a gateway costs ~0.5 s to start and
stop); every test resets the fakes' recorded requests and scripted failures, and compares
balances before and after, so tests stay independent.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import openai
import pytest

from layers_cli import ledger
from layers_cli.providers.base import Usage
from tests.fakes import Failure, FakeState
from tests.fakes.openai import MISTRAL_ACCEPTED, create_app, tiny_png, vector
from tests.fakes.openai_common import prompt_tokens
from tests.support.e2e import (
    DEFAULT_POLICY,
    NO_RETRY_POLICY,
    Fakes,
    chat,
    expect_refused,
    layers,
    marked_up_micro,
    module_gateway,
    price,
    provider_config,
    refused_mid_stream,
    reset,
    serve_fakes,
    settled,
    usage_of,
    weather_tool,
)
from tests.support.gateway import GatewayHandle

CHAT = "openai/gpt-6.1-terra"
REASONING = "openai/gpt-5.5"
IMAGE = "openai/gpt-image-2.6-flare"
EMBED = "openai/text-embedding-3-small"
LOCAL = "local/my-model"
KEYS = {
    "OPENAI_API_KEY": "sk-openai-e2e",
    "XAI_API_KEY": "xai-e2e",
    "DEEPSEEK_API_KEY": "sk-deepseek-e2e",
    "MISTRAL_API_KEY": "mistral-e2e",
    "LOCAL_API_KEY": "local-e2e",
}
FAKES: dict[str, dict[str, Any]] = {
    "openai": {},
    "local": {"accepted_fields": None},
    "xai": {"reasoning_in_completion": False},
    "deepseek": {"accepted_fields": None},
    "mistral": {
        "accepted_fields": MISTRAL_ACCEPTED,
        "reject_status": 422,
        "stream_usage": "always",
    },
}
WEATHER = weather_tool()
CLOCK = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
    },
}


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    factories = {name: functools.partial(create_app, **options) for name, options in FAKES.items()}
    with serve_fakes(factories) as started:
        yield started


def config(fakes: Fakes, head: str) -> str:
    vendors = {name: fakes[name][1] for name in ("openai", "xai", "deepseek", "mistral")}
    return (
        provider_config(head, vendors) + "[upstreams.local]\n"
        f'base_url = "{fakes["local"][1]}"\n'
        'api_key_env = "LOCAL_API_KEY"\n'
        'models = [{ id = "my-model", prices = { input = "2", output = "4" } }]\n'
    )


@pytest.fixture(scope="module")
def gw(fakes, tmp_path_factory) -> Iterator[GatewayHandle]:
    """The default policy: 2 retries (3 attempts), 1 s upstream timeout."""
    toml = config(fakes, DEFAULT_POLICY)
    yield from module_gateway(tmp_path_factory, "openai-e2e", toml, KEYS)


@pytest.fixture(scope="module")
def gw_no_retry(fakes, tmp_path_factory) -> Iterator[GatewayHandle]:
    """No retries and a short timeout: terminal mappings (429, timeout) without waiting."""
    toml = config(fakes, NO_RETRY_POLICY)
    yield from module_gateway(tmp_path_factory, "openai-e2e-no-retry", toml, KEYS)


@pytest.fixture(autouse=True)
def _reset(fakes):
    reset(*(state for state, _ in fakes.values()))


@pytest.fixture
def openai_fake(fakes) -> FakeState:
    return fakes["openai"][0]


def ask(gw: GatewayHandle, text: str = "Say hello", model: str = CHAT, **kw: Any) -> Any:
    return chat(gw, model, text, **kw)


# ---------------------------------------------------------------- chat


def test_whole_chat_is_translated_and_billed_at_catalog_prices(gw, openai_fake):
    before = gw.balance_micro()
    completion = gw.client().chat.completions.create(
        model=CHAT,
        messages=[
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Say hello"},
        ],
        max_tokens=50,
        prompt_cache_key="e2e-cache",
        metadata={"feature": "e2e"},
    )
    sent = openai_fake.last
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["authorization"] == "Bearer sk-openai-e2e"
    wire = sent["json"]
    assert wire["model"] == "gpt-6.1-terra" and wire["max_tokens"] == 50
    assert wire["messages"][0] == {"role": "system", "content": "Be terse."}
    assert wire["prompt_cache_key"] == "e2e-cache"
    assert "metadata" not in wire and "stream" not in wire

    assert completion.model == CHAT
    assert completion.choices[0].message.content == "Echo: Say hello"
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage.prompt_tokens == prompt_tokens(wire)
    assert usage.prompt_tokens_details.cached_tokens == prompt_tokens(wire) // 2 > 0
    assert usage.completion_tokens == 3
    assert usage.total_tokens == usage.prompt_tokens + 3
    assert completion.model_extra["provider_metadata"]["openai"]["cached_tokens"] > 0

    info = layers(completion)
    assert info["simulated"] is False and info["provider"] == "openai" and info["model"] == CHAT
    row = settled(gw, info["request_id"], before)
    assert row["provider"] == "openai" and row["upstream_model"] == "gpt-6.1-terra"
    assert row["cached_tokens"] == usage.prompt_tokens_details.cached_tokens
    assert row["credits_micro"] == price(gw, CHAT, usage_of(usage))


def test_reasoning_model_gets_its_own_parameters_and_bills_reasoning(gw, openai_fake):
    before = gw.balance_micro()
    completion = gw.client().chat.completions.create(
        model=REASONING,
        messages=[
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Why is the sky blue"},
        ],
        max_tokens=50,
        temperature=0.2,
        reasoning_effort="low",
    )
    wire = openai_fake.last["json"]
    assert wire["max_completion_tokens"] == 50 and "max_tokens" not in wire
    assert "temperature" not in wire and wire["reasoning_effort"] == "low"
    assert wire["messages"][0]["role"] == "developer"

    usage = completion.usage
    assert usage.completion_tokens_details.reasoning_tokens == 64  # the fake's hidden reasoning
    assert usage.completion_tokens == 64 + 6  # "Echo: Why is the sky blue"
    assert completion.model_extra["provider_metadata"]["openai"]["reasoning_tokens"] == 64
    row = settled(gw, layers(completion)["request_id"], before)
    assert row["reasoning_tokens"] == 64
    assert row["credits_micro"] == price(gw, REASONING, usage_of(usage))


def test_streamed_parallel_tool_calls(gw, openai_fake):
    before = gw.balance_micro()
    chunks = list(
        gw.client().chat.completions.create(
            model=CHAT,
            stream=True,
            tools=[WEATHER, CLOCK],
            messages=[{"role": "user", "content": "Weather and time in Paris?"}],
            max_tokens=50,
        )
    )
    wire = openai_fake.last["json"]
    assert wire["stream"] is True and wire["stream_options"] == {"include_usage": True}
    assert [t["function"]["name"] for t in wire["tools"]] == ["get_weather", "get_time"]

    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            call = calls.setdefault(delta.index, {"id": delta.id, "name": None, "args": ""})
            if delta.function.name:
                call["name"] = delta.function.name
            call["args"] += delta.function.arguments or ""
    assert [c["name"] for c in calls.values()] == ["get_weather", "get_time"]
    assert all(c["id"] for c in calls.values())
    assert json.loads(calls[0]["args"]) == {"city": "Paris"}
    assert json.loads(calls[1]["args"]) == {"zone": "zone-1"}
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert [f for f in finishes if f] == ["tool_calls"]

    last = chunks[-1]
    assert last.choices == [] and last.usage.prompt_tokens == prompt_tokens(wire)
    row = settled(gw, layers(last)["request_id"], before)
    assert row["streamed"] and row["finish_reason"] == "tool_calls"
    assert row["credits_micro"] == price(gw, CHAT, usage_of(last.usage))


def test_tool_round_trip_with_json_string_arguments(gw, openai_fake):
    client = gw.client()
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.chat.completions.create(
        model=CHAT,
        messages=messages,
        tools=[WEATHER, CLOCK],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=50,
    )
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    (call,) = message.tool_calls
    assert isinstance(call.function.arguments, str)
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    messages += [
        message.model_dump(exclude_none=True, exclude={"refusal", "annotations"}),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"},
    ]
    second = client.chat.completions.create(
        model=CHAT, messages=messages, tools=[WEATHER], max_tokens=50
    )
    assert second.choices[0].message.content == "The tool said sunny, 21C"
    echoed = openai_fake.last["json"]["messages"][1]
    assert echoed["tool_calls"][0]["function"]["arguments"] == call.function.arguments


def test_json_schema_answer(gw, openai_fake):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    completion = ask(
        gw,
        "Biggest city in France?",
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "city", "schema": schema, "strict": True},
        },
    )
    assert openai_fake.last["json"]["response_format"]["json_schema"]["schema"] == schema
    assert json.loads(completion.choices[0].message.content) == {"city": "Paris", "population": 1}


def test_streamed_text_is_billed_once_with_the_reported_usage(gw, openai_fake):
    before = gw.balance_micro()
    chunks = list(ask(gw, "one two three four", stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: one two three four"
    usage = chunks[-1].usage
    assert usage.completion_tokens == 5
    assert usage.prompt_tokens == prompt_tokens(openai_fake.last["json"])
    row = settled(gw, layers(chunks[-1])["request_id"], before)
    assert not row["estimated"]
    assert row["credits_micro"] == price(gw, CHAT, usage_of(usage))


# ---------------------------------------------------------------- images and embeddings


def test_image_generation_returns_png_bytes_and_bills_per_image(gw, openai_fake):
    before = gw.balance_micro()
    result = gw.client().images.generate(
        model=IMAGE, prompt="a red lighthouse", n=2, size="1024x1024", quality="high"
    )
    sent = openai_fake.last
    assert sent["path"] == "/v1/images/generations"
    assert sent["headers"]["authorization"] == "Bearer sk-openai-e2e"
    assert sent["json"] == {
        "prompt": "a red lighthouse",
        "n": 2,
        "size": "1024x1024",
        "quality": "high",
        "model": "gpt-image-2.6-flare",
    }
    images = [base64.b64decode(item.b64_json) for item in result.data]
    assert images == [tiny_png("a red lighthouse#0"), tiny_png("a red lighthouse#1")]
    info = result.model_extra["layers"]
    assert info["simulated"] is False
    row = settled(gw, info["request_id"], before)
    assert row["images"] == 2
    usage = Usage(
        prompt_tokens=row["prompt_tokens"], completion_tokens=row["completion_tokens"], images=2
    )
    assert row["completion_tokens"] == 2 * 4160  # the fake's reported image tokens
    assert row["credits_micro"] == price(gw, IMAGE, usage)
    assert row["credits_micro"] == marked_up_micro("0.045", 2)


def test_embeddings_as_floats_and_as_base64(gw, openai_fake):
    client = gw.client()
    before = gw.balance_micro()
    floats = client.embeddings.create(
        model=EMBED, input=["hello world", "good night moon"], encoding_format="float"
    )
    assert openai_fake.last["json"] == {
        "model": "text-embedding-3-small",
        "input": ["hello world", "good night moon"],
        "encoding_format": "float",
    }
    assert [item.index for item in floats.data] == [0, 1]  # the fake answers in reverse
    assert floats.data[0].embedding == vector("hello world", 1536)
    assert floats.data[1].embedding == vector("good night moon", 1536)
    assert floats.usage.prompt_tokens == 2 + 3
    row = settled(gw, floats.model_extra["layers"]["request_id"], before)
    assert row["credits_micro"] == price(gw, EMBED, Usage(prompt_tokens=5))

    # the SDK asks for base64 by default and decodes it; the gateway still asks the
    # upstream for floats and packs them as little-endian float32
    before = gw.balance_micro()
    packed = client.embeddings.create(model=EMBED, input="hello world", dimensions=256)
    assert openai_fake.last["json"]["encoding_format"] == "float"
    assert openai_fake.last["json"]["dimensions"] == 256
    got = packed.data[0].embedding
    assert len(got) == 256
    assert max(abs(a - b) for a, b in zip(got, vector("hello world", 256), strict=True)) < 1e-6
    settled(gw, packed.model_extra["layers"]["request_id"], before)


# ---------------------------------------------------------------- other upstreams


def test_user_declared_upstream_serves_its_model_at_its_prices(gw, fakes):
    state, _ = fakes["local"]
    before = gw.balance_micro()
    completion = ask(gw, "hi there", model=LOCAL)
    sent = state.last
    assert sent["headers"]["authorization"] == "Bearer local-e2e"
    assert sent["json"]["model"] == "my-model"
    assert completion.choices[0].message.content == "Echo: hi there"
    info = layers(completion)
    assert info["provider"] == "local" and info["model"] == LOCAL and not info["simulated"]
    row = settled(gw, info["request_id"], before)
    usage = usage_of(completion.usage)
    expected = (Decimal(usage.prompt_tokens) * 2 + Decimal(usage.completion_tokens) * 4) / 10**6
    assert row["credits_micro"] == marked_up_micro(expected)
    assert row["credits_micro"] == price(gw, LOCAL, usage)

    chunks = list(ask(gw, "hi again", model=LOCAL, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "Echo: hi again"
    )
    assert not layers(chunks[-1]).get("estimated")


def test_user_declared_upstream_errors_name_it(gw, fakes):
    state, _ = fakes["local"]
    state.fail_next(Failure(status=401))
    with expect_refused(
        gw,
        openai.InternalServerError,
        status=502,
        code="provider_auth_error",
        contains=("layers providers set local",),
    ):
        ask(gw, model=LOCAL)


@pytest.mark.parametrize(
    ("vendor", "model", "upstream"),
    [
        ("xai", "xai/grok-4.3", "grok-4.3"),
        ("deepseek", "deepseek/deepseek-flash", "deepseek-flash"),
        ("mistral", "mistral/mistral-small", "mistral-small-latest"),
    ],
    ids=["xai", "deepseek", "mistral"],
)
def test_compatible_vendors_whole_and_streamed(gw, fakes, vendor, model, upstream):
    state, _ = fakes[vendor]
    key = KEYS[f"{vendor.upper()}_API_KEY"]
    before = gw.balance_micro()
    completion = ask(gw, "hello vendor", model=model, seed=7)
    sent = state.last
    assert sent["headers"]["authorization"] == f"Bearer {key}"
    assert sent["json"]["model"] == upstream and sent["json"]["max_tokens"] == 50
    if vendor == "mistral":  # its name for seed; anything unknown would be a 422
        assert sent["json"]["random_seed"] == 7 and "seed" not in sent["json"]
    assert completion.choices[0].message.content == "Echo: hello vendor"
    assert layers(completion)["provider"] == vendor
    row = settled(gw, layers(completion)["request_id"], before)
    assert row["credits_micro"] == price(gw, model, usage_of(completion.usage))

    before = gw.balance_micro()
    chunks = list(ask(gw, "stream vendor", model=model, stream=True))
    if vendor == "mistral":  # Mistral 422s on stream_options; usage rides on the last chunk
        assert "stream_options" not in state.last["json"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: stream vendor"
    assert chunks[-1].usage.completion_tokens == 3
    assert not layers(chunks[-1]).get("estimated")
    row = settled(gw, layers(chunks[-1])["request_id"], before)
    assert row["credits_micro"] == price(gw, model, usage_of(chunks[-1].usage))


# ---------------------------------------------------------------- failures


def test_rate_limit_is_passed_on_with_the_retry_delay(gw_no_retry, openai_fake):
    openai_fake.fail_next(Failure(status=429, headers={"retry-after": "7"}))
    with expect_refused(
        gw_no_retry,
        openai.RateLimitError,
        code="provider_rate_limited",
        contains=("openai", "Rate limit reached"),
    ) as err:
        ask(gw_no_retry)
    assert err.value.response.headers["retry-after"] == "7"
    assert err.value.body["provider"] == "openai"


def test_rate_limit_is_not_retried_by_the_gateway(gw, openai_fake):
    openai_fake.fail_next(Failure(status=429, headers={"retry-after": "1"}), times=3)
    with expect_refused(gw, openai.RateLimitError, logged=False) as err:
        ask(gw)
    assert err.value.response.headers["retry-after"] == "1"
    assert len(openai_fake.requests) == 1  # the client decides when to come back


def test_overloaded_upstream_is_retried_invisibly(gw, openai_fake):
    openai_fake.fail_next(Failure(status=503))
    before = gw.balance_micro()
    completion = ask(gw)
    assert completion.choices[0].message.content == "Echo: Say hello"
    assert len(openai_fake.requests) == 2
    settled(gw, layers(completion)["request_id"], before)

    openai_fake.requests.clear()
    openai_fake.fail_next(Failure(status=500))
    chunks = list(ask(gw, "streamed retry", stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "Echo: streamed retry"
    )
    assert len(openai_fake.requests) == 2


def test_persistent_server_error_is_502_after_three_attempts(gw, openai_fake):
    openai_fake.fail_next(Failure(status=500), times=3)
    with expect_refused(
        gw,
        openai.InternalServerError,
        status=502,
        code="provider_server_error",
        contains=("openai returned HTTP 500",),
    ):
        ask(gw)
    assert len(openai_fake.requests) == 3


def test_timeout_is_504(gw_no_retry, openai_fake):
    openai_fake.fail_next(Failure(delay=1.0))
    with expect_refused(
        gw_no_retry,
        openai.InternalServerError,
        status=504,
        code="provider_timeout",
        contains=("openai did not answer within 0.5 s",),
    ):
        ask(gw_no_retry)


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_credential_tells_the_operator_what_to_run(gw, openai_fake, status):
    openai_fake.fail_next(Failure(status=status))
    with expect_refused(
        gw,
        openai.InternalServerError,
        status=502,
        code="provider_auth_error",
        contains=("layers providers set openai",),
        excludes=("topup", "credits"),
    ):
        ask(gw)
    assert len(openai_fake.requests) == 1  # not retried


def test_rejected_credential_tells_clients_not_to_retry(gw, openai_fake):
    openai_fake.fail_next(Failure(status=401))
    with pytest.raises(openai.InternalServerError) as err:
        ask(gw)
    assert err.value.body["code"] == "provider_auth_error"
    assert err.value.response.headers.get("x-should-retry") == "false"


def test_provider_bad_request_is_400_with_its_message(gw, openai_fake):
    openai_fake.fail_next(Failure(status=400))
    with expect_refused(
        gw, openai.BadRequestError, contains=("openai returned HTTP 400: Invalid request.",)
    ):
        ask(gw)
    assert len(openai_fake.requests) == 1


def test_error_event_mid_stream_raises_and_charges_nothing(gw, openai_fake):
    openai_fake.fail_next(Failure(stream_error_after=3))
    received, error = refused_mid_stream(gw, lambda: ask(gw, "a b c d e f g", stream=True))
    assert received  # the failure came after output reached the client: no retry
    assert len(openai_fake.requests) == 1
    assert "openai" in error.message


def test_malformed_json_is_502(gw, openai_fake):
    openai_fake.fail_next(Failure(malformed=True), times=3)
    with expect_refused(gw, openai.InternalServerError, status=502, contains=("not valid JSON",)):
        ask(gw)
    assert len(openai_fake.requests) == 3


# ---------------------------------------------------------------- holds and other processes


def test_a_balance_spent_by_another_process_is_seen_before_the_upstream_call(gw, openai_fake):
    """Once the daemon knows the balance covers a request, the database work a hold needs
    runs while the upstream call already does. Another process's commit (here a negative
    adjustment) is noticed as the next request arrives, so that request waits for its hold:
    a clean 402 before any output, nothing charged, and the upstream never called."""

    def refused(stream: bool) -> None:
        with expect_refused(gw, openai.APIStatusError, status=402, code="insufficient_credits"):
            result = ask(gw, stream=stream)
            if stream:
                list(result)

    svc = gw.service()
    try:
        for stream in (False, True):
            ask(gw)  # the daemon now knows the balance after a movement
            spent = svc.balance()["balance_micro"] - 1
            ledger.topup(svc.db, -spent, kind="adjustment", note="spent by another process")
            try:
                calls = len(openai_fake.requests)
                refused(stream)
                refused(stream)
                assert len(openai_fake.requests) == calls  # each waited for its hold
            finally:
                ledger.topup(svc.db, spent, kind="adjustment", note="given back")
        assert svc.balance()["open_holds"] == 0 and svc.verify_ledger()["ok"]
    finally:
        svc.close()
