"""The openai SDK → layers serve → a fake Anthropic Messages API on loopback (named SSE events):
the translated request, the OpenAI-shaped answer, usage with cache reads and writes, thinking
signatures carried across turns, the settled charge, and the error mapping (429, 529, 500,
401, timeout, an error event mid-stream, malformed JSON) with the ledger untouched.

The fake and the gateways start once per module; each test resets the fake and compares
balances before and after.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.fakes import Failure, FakeState
from tests.fakes.anthropic import answer, create_app, sign
from tests.support.e2e import (
    DEFAULT_POLICY,
    JSON_SCHEMA_DRAFT_07,
    NO_RETRY_POLICY,
    chat,
    expect_refused,
    layers,
    module_gateway,
    price,
    provider_config,
    refused_mid_stream,
    reset,
    serve_fakes,
    settled,
    weather_tool,
)
from tests.support.e2e import (
    usage_of as any_usage_of,
)
from tests.support.gateway import GatewayHandle

MODEL = "anthropic/claude-haiku-4.5"
UPSTREAM = "claude-haiku-4-5-20251001"
KEY = "sk-ant-e2e"
ENV = {"ANTHROPIC_API_KEY": KEY}
WEATHER = weather_tool(**{"$schema": JSON_SCHEMA_DRAFT_07})


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeState, str]]:
    with serve_fakes({"anthropic": create_app}) as started:
        yield started["anthropic"]


@pytest.fixture(scope="module")
def gw(fake, tmp_path_factory) -> Iterator[GatewayHandle]:
    """The default policy: 2 retries (3 attempts), 1 s upstream timeout."""
    toml = provider_config(DEFAULT_POLICY, {"anthropic": fake[1]})
    yield from module_gateway(tmp_path_factory, "anthropic-e2e", toml, ENV)


@pytest.fixture(scope="module")
def gw_no_retry(fake, tmp_path_factory) -> Iterator[GatewayHandle]:
    """No retries and a short timeout: terminal mappings without waiting."""
    toml = provider_config(NO_RETRY_POLICY, {"anthropic": fake[1]})
    yield from module_gateway(tmp_path_factory, "anthropic-e2e-no-retry", toml, ENV)


@pytest.fixture
def state(fake) -> FakeState:
    reset(fake[0])
    return fake[0]


# Anthropic always reports prompt and completion token details
usage_of = functools.partial(any_usage_of, require_details=True)


def expected_usage(raw: dict[str, Any]) -> dict[str, int]:
    """Anthropic usage in OpenAI semantics: prompt = input + cache writes + cache reads."""
    write, read = raw["cache_creation_input_tokens"], raw["cache_read_input_tokens"]
    return {
        "prompt_tokens": raw["input_tokens"] + write + read,
        "completion_tokens": raw["output_tokens"],
        "cached_tokens": read,
        "cache_write_tokens": write,
    }


def ask(gw: GatewayHandle, text: str = "Say hello", **kw: Any) -> Any:
    return chat(gw, MODEL, text, **kw)


def text_of(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# ---------------------------------------------------------------- chat


def test_whole_chat_is_translated_and_billed(gw, state):
    before = gw.balance_micro()
    completion = gw.client().chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Say hello"},
        ],
        max_tokens=50,
        temperature=1.5,
        stop=["never"],
        user="user-7",
    )
    sent = state.last
    assert sent["path"] == "/v1/messages"
    assert sent["headers"]["x-api-key"] == KEY
    assert sent["headers"]["anthropic-version"] == "2023-06-01"
    wire = sent["json"]
    assert wire["model"] == UPSTREAM and wire["max_tokens"] == 50
    assert wire["system"] in ("Be terse.", [{"type": "text", "text": "Be terse."}])
    assert [m["role"] for m in wire["messages"]] == ["user"]
    assert wire["temperature"] == 1.0  # OpenAI's 0..2 clamped to Anthropic's 0..1
    assert wire["stop_sequences"] == ["never"] and wire["metadata"] == {"user_id": "user-7"}

    assert completion.choices[0].message.content == "Echo: Say hello"
    assert completion.choices[0].finish_reason == "stop"
    raw = answer(wire, set())["usage"]
    usage = completion.usage
    assert usage.prompt_tokens == expected_usage(raw)["prompt_tokens"] > 0
    assert usage.completion_tokens == raw["output_tokens"]
    meta = completion.model_extra["provider_metadata"]["anthropic"]
    assert meta["stop_reason"] == "end_turn"

    info = layers(completion)
    assert info["provider"] == "anthropic" and info["simulated"] is False
    row = settled(gw, info["request_id"], before)
    assert row["upstream_model"] == UPSTREAM
    assert row["credits_micro"] == price(gw, MODEL, usage_of(usage))


def test_prompt_cache_writes_then_reads_and_each_is_priced(gw, state):
    system = "You are a meticulous assistant. " * 40  # a long prefix worth caching
    messages = [
        {
            "role": "system",
            "content": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
        },
        {"role": "user", "content": "First question"},
    ]
    client = gw.client()
    before = gw.balance_micro()
    first = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=50)
    wire = state.last["json"]
    assert wire["system"][-1]["cache_control"] == {"type": "ephemeral"}
    raw = answer(wire, set())["usage"]
    assert raw["cache_creation_input_tokens"] > 0
    details = first.usage.prompt_tokens_details
    assert details.cache_write_tokens == raw["cache_creation_input_tokens"]
    assert details.cached_tokens == 0
    assert first.usage.prompt_tokens == expected_usage(raw)["prompt_tokens"]
    meta = first.model_extra["provider_metadata"]["anthropic"]
    assert meta["cache_creation_input_tokens"] == raw["cache_creation_input_tokens"]
    row = settled(gw, layers(first)["request_id"], before)
    assert row["cache_write_tokens"] == raw["cache_creation_input_tokens"]
    assert row["credits_micro"] == price(gw, MODEL, usage_of(first.usage))

    before = gw.balance_micro()
    messages[1]["content"] = "Second question"
    second = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=50)
    details = second.usage.prompt_tokens_details
    assert details.cached_tokens == raw["cache_creation_input_tokens"]
    assert getattr(details, "cache_write_tokens", None) is None  # only when there were any
    meta = second.model_extra["provider_metadata"]["anthropic"]
    assert meta["cache_read_input_tokens"] == details.cached_tokens
    row = settled(gw, layers(second)["request_id"], before)
    assert row["cached_tokens"] == details.cached_tokens
    assert row["credits_micro"] == price(gw, MODEL, usage_of(second.usage))
    # reading the cache costs less than writing it did
    assert row["credits_micro"] < price(gw, MODEL, usage_of(first.usage))


def test_streamed_tool_call_from_named_events(gw, state):
    before = gw.balance_micro()
    chunks = list(ask(gw, "Use get_weather for Paris", stream=True, tools=[WEATHER]))
    wire = state.last["json"]
    assert wire["stream"] is True
    assert wire["tools"][0]["name"] == "get_weather"
    assert "$schema" not in wire["tools"][0]["input_schema"]

    deltas = [d for c in chunks if c.choices for d in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].id == "toolu_01" and deltas[0].function.name == "get_weather"
    arguments = "".join(d.function.arguments or "" for d in deltas)
    assert json.loads(arguments) == {"city": "example city"}
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert [f for f in finishes if f] == ["tool_calls"]

    last = chunks[-1]
    raw = answer({**wire, "stream": False}, set())["usage"]
    assert last.usage.prompt_tokens == expected_usage(raw)["prompt_tokens"]
    assert last.usage.completion_tokens == raw["output_tokens"]
    row = settled(gw, layers(last)["request_id"], before)
    assert row["streamed"] and row["finish_reason"] == "tool_calls"
    assert row["credits_micro"] == price(gw, MODEL, usage_of(last.usage))


def test_streamed_text(gw, state):
    before = gw.balance_micro()
    chunks = list(ask(gw, "count one two three", stream=True))
    assert text_of(chunks) == "Echo: count one two three"
    assert [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ] == ["stop"]
    row = settled(gw, layers(chunks[-1])["request_id"], before)
    assert not row["estimated"]
    assert row["credits_micro"] == price(gw, MODEL, usage_of(chunks[-1].usage))


def test_thinking_tool_loop_carries_signed_thinking_back(gw, state):
    """The second turn only validates at the fake if the adapter restores the signed thinking
    block (the signature is a hash of the exact text) in front of the tool_use."""
    client = gw.client()
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Use get_weather for Paris"}]
    before = gw.balance_micro()
    first = client.chat.completions.create(
        model=MODEL, messages=messages, tools=[WEATHER], max_tokens=50, reasoning_effort="low"
    )
    wire = state.last["json"]
    assert wire["thinking"]["type"] == "enabled"
    assert wire["max_tokens"] > wire["thinking"]["budget_tokens"] >= 1024
    message = first.choices[0].message
    thought = "Considering: Use get_weather for Paris"
    assert message.model_extra["reasoning_content"] == thought
    thinking = first.model_extra["provider_metadata"]["anthropic"]["thinking"]
    assert thinking == [{"type": "thinking", "thinking": thought, "signature": sign(thought)}]
    (call,) = message.tool_calls
    assert json.loads(call.function.arguments) == {"city": "example city"}
    settled(gw, layers(first)["request_id"], before)

    messages += [
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": thought,
            "tool_calls": [call.model_dump()],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    second = client.chat.completions.create(
        model=MODEL, messages=messages, tools=[WEATHER], max_tokens=50, reasoning_effort="low"
    )
    assistant = state.last["json"]["messages"][1]["content"]
    assert assistant[0] == {"type": "thinking", "thinking": thought, "signature": sign(thought)}
    assert assistant[1]["type"] == "tool_use" and assistant[1]["input"] == {"city": "example city"}
    assert second.choices[0].message.content == "Tool result: sunny"
    assert second.choices[0].finish_reason == "stop"


def test_json_schema_answer(gw, state):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    completion = ask(
        gw,
        "Biggest city in France?",
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}},
    )
    assert state.last["json"]["output_config"]["format"]["type"] == "json_schema"
    answer_json = json.loads(completion.choices[0].message.content)
    assert answer_json == {"city": "example city", "population": 1}


# ---------------------------------------------------------------- failures


def test_overloaded_529_is_retried_invisibly(gw, state):
    state.fail_next(Failure(status=529))
    before = gw.balance_micro()
    completion = ask(gw)
    assert completion.choices[0].message.content == "Echo: Say hello"
    assert len(state.requests) == 2
    settled(gw, layers(completion)["request_id"], before)


def test_overloaded_before_the_first_token_of_a_stream_is_retried(gw, state):
    state.fail_next(Failure(stream_error_after=1))  # message_start, then event: error
    before = gw.balance_micro()
    chunks = list(ask(gw, "retry me", stream=True))
    assert text_of(chunks) == "Echo: retry me"
    assert len(state.requests) == 2
    settled(gw, layers(chunks[-1])["request_id"], before)


def test_persistent_529_is_503(gw, state):
    state.fail_next(Failure(status=529), times=3)
    with expect_refused(
        gw,
        openai.InternalServerError,
        status=503,
        code="provider_unavailable",
        contains=("anthropic is overloaded",),
    ):
        ask(gw)
    assert len(state.requests) == 3


def test_persistent_500_is_502(gw, state):
    state.fail_next(Failure(status=500), times=3)
    with expect_refused(
        gw,
        openai.InternalServerError,
        status=502,
        contains=("anthropic returned HTTP 500: Fake failure 500",),
    ):
        ask(gw)
    assert len(state.requests) == 3


def test_rate_limit_is_passed_on_with_the_retry_delay(gw_no_retry, state):
    state.fail_next(Failure(status=429, headers={"retry-after": "9"}))
    with expect_refused(gw_no_retry, openai.RateLimitError, contains=("Fake failure 429",)) as err:
        ask(gw_no_retry)
    assert err.value.response.headers["retry-after"] == "9"
    assert err.value.body["provider"] == "anthropic"


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_credential_tells_the_operator_what_to_run(gw, state, status):
    state.fail_next(Failure(status=status))
    with expect_refused(
        gw,
        openai.InternalServerError,
        status=502,
        code="provider_auth_error",
        contains=("layers providers set anthropic",),
        excludes=("topup",),
    ):
        ask(gw)
    assert len(state.requests) == 1


def test_bad_request_is_400_with_anthropics_message(gw, state):
    state.fail_next(
        Failure(
            status=400,
            body={
                "type": "error",
                "error": {"type": "invalid_request_error", "message": "prompt is too long"},
            },
        )
    )
    with expect_refused(
        gw, openai.BadRequestError, contains=("anthropic returned HTTP 400: prompt is too long",)
    ):
        ask(gw)


def test_timeout_is_504(gw_no_retry, state):
    state.fail_next(Failure(delay=1.0))
    with expect_refused(
        gw_no_retry, openai.InternalServerError, status=504, code="provider_timeout"
    ):
        ask(gw_no_retry)


def test_error_event_mid_stream_raises_and_charges_nothing(gw, state):
    state.fail_next(Failure(stream_error_after=5))  # two text deltas, then event: error
    received, error = refused_mid_stream(
        gw, lambda: ask(gw, "a long enough answer to split", stream=True)
    )
    assert received
    assert "Overloaded" in error.message and "anthropic" in error.message
    assert len(state.requests) == 1  # output had reached the client: no retry


def test_malformed_json_is_502(gw, state):
    state.fail_next(Failure(malformed=True), times=3)
    with expect_refused(gw, openai.InternalServerError, status=502, contains=("not JSON",)):
        ask(gw)
    assert len(state.requests) == 3
