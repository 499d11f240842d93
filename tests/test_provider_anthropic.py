"""The Anthropic adapter against a fake Anthropic Messages API served on loopback."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest

from layers_cli.catalog.model import ModelInfo, Prices
from layers_cli.errors import (
    CapabilityError,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
    ProviderUnavailable,
)
from layers_cli.providers import get_adapter
from layers_cli.providers.anthropic import AnthropicAdapter, build_request
from layers_cli.providers.anthropic_translate import ThinkingCache, fit_budget, model_traits
from layers_cli.providers.base import Chunk, Completion, UpstreamCall
from layers_cli.providers.http import HTTPClient
from tests.fakes import Failure, FakeState
from tests.fakes.anthropic import answer, create_app, sign
from tests.support.servers import serve_app

CAPS = frozenset({"text", "vision", "tools", "json", "stream", "cache", "thinking"})
WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Get the weather",
        "parameters": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
TIME = {
    "type": "function",
    "function": {"name": "time", "parameters": {"type": "object", "properties": {}}},
}


def make_model(upstream: str = "claude-sonnet-4-5", **extra: Any) -> ModelInfo:
    return ModelInfo(
        id=f"anthropic/{upstream}",
        provider="anthropic",
        upstream_id=upstream,
        display_name=upstream,
        type="language",
        capabilities=CAPS,
        context_window=200_000,
        default_output_tokens=1024,
        max_output_tokens=64_000,
        prices=Prices(),
        extra=extra,
    )


@pytest.fixture(scope="module")
def server():
    state = FakeState()
    with serve_app(create_app(state)) as url:
        yield state, url


@pytest.fixture
def fake(server) -> tuple[FakeState, str]:
    state, url = server
    state.requests.clear()
    state.failures.clear()
    return state, f"{url}/v1"


def run(
    base_url: str,
    body: dict[str, Any],
    *,
    upstream: str = "claude-sonnet-4-5",
    stream: bool = False,
    adapter: AnthropicAdapter | None = None,
    timeout: float = 5.0,
) -> Any:
    """One adapter call; a stream returns ``(chunks, error)`` so partial output is visible."""

    async def go() -> Any:
        async with HTTPClient() as http:
            call = UpstreamCall(
                body={"model": f"anthropic/{upstream}", **body},
                model=make_model(upstream),
                upstream_model=upstream,
                http=http,
                credential="test-key",
                base_url=base_url,
                timeout=timeout,
            )
            used = adapter or AnthropicAdapter(ThinkingCache())
            if not stream:
                return await used.complete(call)
            chunks: list[Chunk] = []
            try:
                async for chunk in used.stream(call):
                    chunks.append(chunk)
            except ProviderError as exc:
                return chunks, exc
            return chunks, None

    return asyncio.run(go())


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def usage_chunk(chunks: list[Chunk]) -> Chunk:
    with_usage = [c for c in chunks if c.usage is not None]
    assert len(with_usage) == 1 and with_usage[0] is chunks[-1]
    return chunks[-1]


# -- whole responses -----------------------------------------------------------------------


def test_request_is_translated_and_response_is_canonical(fake):
    state, base = fake
    body = {
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
            *user("hello there"),
        ],
        "max_tokens": 100,
        "temperature": 1.5,
        "top_p": 0.9,
        "stop": "zzz",
        "seed": 7,
        "user": "user-1",
        "metadata": {"layers_project": "demo"},
        "frequency_penalty": 0.1,
        "n": 1,
    }
    result = run(base, body)
    request = state.last
    assert request["path"] == "/v1/messages"
    assert request["headers"]["x-api-key"] == "test-key"
    assert request["headers"]["anthropic-version"] == "2023-06-01"
    assert request["json"] == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "temperature": 1.0,
        "top_p": 0.9,
        "stop_sequences": ["zzz"],
        "metadata": {"user_id": "user-1"},
        "messages": [{"role": "user", "content": "hello there"}],
        "system": "Be terse.\n\nAnswer in English.",
    }
    assert isinstance(result, Completion)
    assert result.message == {"role": "assistant", "content": "Echo: hello there"}
    assert result.finish_reason == "stop"
    raw = answer(request["json"], set())
    assert result.usage.prompt_tokens == raw["usage"]["input_tokens"]
    assert result.usage.completion_tokens == raw["usage"]["output_tokens"]
    assert result.usage.cached_tokens == 0
    assert result.upstream_id == raw["id"]
    meta = result.provider_metadata["anthropic"]
    assert meta["cache_read_input_tokens"] == 0 and meta["stop_reason"] == "end_turn"


def test_parallel_tool_calls_and_merged_tool_results(fake):
    state, base = fake
    messages = user("What is the weather and time in Paris?")
    first = run(base, {"messages": messages, "tools": [WEATHER, TIME], "tool_choice": "auto"})
    sent = state.last["json"]
    assert sent["tools"][0] == {
        "name": "weather",
        "description": "Get the weather",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    }
    assert sent["tool_choice"] == {"type": "auto"}
    assert first.finish_reason == "tool_calls"
    calls = first.message["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["weather", "time"]
    assert all(c["type"] == "function" and c["id"].startswith("toolu_") for c in calls)
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "example city"}
    assert first.message["content"] is None

    follow_up = [
        *messages,
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": '{"tempC": 20}'},
        {"role": "tool", "tool_call_id": calls[1]["id"], "content": "12:00"},
    ]
    second = run(base, {"messages": follow_up, "tools": [WEATHER, TIME]})
    sent = state.last["json"]["messages"]
    assert sent[1]["content"][0] == {
        "type": "tool_use",
        "id": calls[0]["id"],
        "name": "weather",
        "input": {"city": "example city"},
    }
    assert sent[2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": calls[0]["id"], "content": '{"tempC": 20}'},
            {"type": "tool_result", "tool_use_id": calls[1]["id"], "content": "12:00"},
        ],
    }
    assert second.finish_reason == "stop"
    assert second.message["content"] == 'Tool result: {"tempC": 20} 12:00'


def test_parallel_tool_calls_false_disables_parallel_use(fake):
    state, base = fake
    body = {"messages": user("weather and time?"), "tools": [WEATHER, TIME]}
    result = run(base, {**body, "parallel_tool_calls": False})
    assert state.last["json"]["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert len(result.message["tool_calls"]) == 1


@pytest.mark.parametrize(
    ("choice", "upstream", "expected", "tool_names"),
    [
        ("required", "claude-sonnet-4-5", {"type": "any"}, ["weather", "time"]),
        ("none", "claude-sonnet-4-5", {"type": "none"}, ["weather", "time"]),
        (
            {"type": "function", "function": {"name": "time"}},
            "claude-sonnet-4-5",
            {"type": "tool", "name": "time"},
            ["weather", "time"],
        ),
        # newest models reject forced tool use: auto, with only the named tool
        ("required", "claude-sonnet-5-5", {"type": "auto"}, ["weather", "time"]),
        (
            {"type": "function", "function": {"name": "time"}},
            "claude-sonnet-5-5",
            {"type": "auto"},
            ["time"],
        ),
    ],
)
def test_tool_choice_mapping(choice, upstream, expected, tool_names):
    body = {"messages": user("hi"), "tools": [WEATHER, TIME], "tool_choice": choice}
    payload, _ = build_request(body, make_model(upstream), upstream)
    assert payload["tool_choice"] == expected
    assert [t["name"] for t in payload["tools"]] == tool_names


def test_forced_tool_choice_is_answered_by_the_fake(fake):
    state, base = fake
    body = {
        "messages": user("hi"),
        "tools": [WEATHER, TIME],
        "tool_choice": {"type": "function", "function": {"name": "time"}},
    }
    result = run(base, body)
    assert [c["function"]["name"] for c in result.message["tool_calls"]] == ["time"]
    assert json.loads(result.message["tool_calls"][0]["function"]["arguments"]) == {}


def test_images_and_pdf_parts(fake):
    state, base = fake
    pdf = "data:application/pdf;base64,JVBERi0xLjQ="
    content = [
        {"type": "text", "text": "Describe these"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}},
        {"type": "file", "file": {"filename": "a.pdf", "file_data": pdf}},
    ]
    result = run(base, {"messages": [{"role": "user", "content": content}]})
    blocks = state.last["json"]["messages"][0]["content"]
    assert blocks[1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }
    assert blocks[2] == {
        "type": "image",
        "source": {"type": "url", "url": "https://example.com/cat.jpg"},
    }
    assert blocks[3] == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQ="},
        "title": "a.pdf",
    }
    assert result.message["content"] == "Echo: Describe these"


def test_audio_input_is_a_capability_error():
    part = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    with pytest.raises(CapabilityError, match="audio"):
        build_request({"messages": [{"role": "user", "content": [part]}]}, make_model(), "x")


SCHEMA_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "answer",
        "strict": True,
        "schema": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {"a": {"type": "string"}, "n": {"type": "integer"}},
            "required": ["a", "n"],
            "additionalProperties": False,
        },
    },
}


def test_json_schema_uses_native_structured_outputs(fake):
    state, base = fake
    body = {"messages": user("give json"), "response_format": SCHEMA_FORMAT}
    result = run(base, body)
    sent = state.last["json"]
    schema = sent["output_config"]["format"]["schema"]
    assert sent["output_config"]["format"]["type"] == "json_schema" and "$schema" not in schema
    assert "tools" not in sent and "anthropic-beta" not in state.last["headers"]
    assert json.loads(result.message["content"]) == {"a": "example a", "n": 1}
    assert result.finish_reason == "stop"


@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_on_older_models_uses_a_forced_tool(fake, stream):
    state, base = fake
    upstream = "claude-3-7-sonnet-20250219"
    body = {"messages": user("give json"), "response_format": SCHEMA_FORMAT}
    result = run(base, body, upstream=upstream, stream=stream)
    sent = state.last["json"]
    assert "output_config" not in sent
    assert [t["name"] for t in sent["tools"]] == ["answer"]
    assert "$schema" not in sent["tools"][0]["input_schema"]
    assert sent["tool_choice"] == {"type": "tool", "name": "answer"}
    if stream:
        chunks, error = result
        assert error is None and not any(c.tool_calls for c in chunks)
        content = "".join(c.content or "" for c in chunks)
        finish = [c.finish_reason for c in chunks if c.finish_reason]
    else:
        assert "tool_calls" not in result.message
        content, finish = result.message["content"], [result.finish_reason]
    assert json.loads(content) == {"a": "example a", "n": 1}
    assert finish == ["stop"]


def test_json_object_uses_a_json_tool(fake):
    state, base = fake
    body = {"messages": user("json please"), "response_format": {"type": "json_object"}}
    result = run(base, body)
    assert state.last["json"]["tool_choice"] == {"type": "tool", "name": "json"}
    assert json.loads(result.message["content"]) == {}


def test_json_tool_with_thinking_is_not_forced(fake):
    state, base = fake
    upstream = "claude-3-7-sonnet-20250219"
    body = {
        "messages": user("give the answer"),
        "response_format": SCHEMA_FORMAT,
        "reasoning_effort": "low",
    }
    result = run(base, body, upstream=upstream)
    sent = state.last["json"]
    assert sent["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert "`answer` tool" in sent["system"] and sent["thinking"]["type"] == "enabled"
    assert json.loads(result.message["content"]) == {"a": "example a", "n": 1}
    assert result.message["reasoning_content"] == "Considering: give the answer"
    assert result.finish_reason == "stop"


# -- reasoning -----------------------------------------------------------------------------


def test_reasoning_effort_becomes_a_budget_and_signatures_round_trip(fake):
    state, base = fake
    adapter = AnthropicAdapter(ThinkingCache())
    messages = user("weather in Paris?")
    body = {
        "messages": messages,
        "tools": [WEATHER],
        "reasoning_effort": "medium",
        "max_tokens": 1000,
        "temperature": 0.5,
    }
    first = run(base, body, adapter=adapter)
    sent = state.last["json"]
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    assert sent["max_tokens"] == 5096 and "temperature" not in sent
    thought = "Considering: weather in Paris?"
    assert first.message["reasoning_content"] == thought
    assert first.provider_metadata["anthropic"]["thinking"] == [
        {"type": "thinking", "thinking": thought, "signature": sign(thought)}
    ]
    call = first.message["tool_calls"][0]
    follow_up = [
        *messages,
        {"role": "assistant", "content": None, "reasoning_content": thought, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny"},
    ]
    second = run(base, {**body, "messages": follow_up}, adapter=adapter)
    assistant = state.last["json"]["messages"][1]["content"]
    assert assistant[0] == {"type": "thinking", "thinking": thought, "signature": sign(thought)}
    assert state.last["json"]["thinking"]["type"] == "enabled"
    assert second.message["content"] == "Tool result: sunny"

    # Another process (empty cache) cannot sign the echoed text: thinking is left out.
    third = run(base, {**body, "messages": follow_up})
    assert "thinking" not in state.last["json"]
    assert state.last["json"]["messages"][1]["content"][0]["type"] == "tool_use"
    assert third.finish_reason == "stop"

    # Explicit thinking_blocks (from provider_metadata) work without the cache.
    blocks = first.provider_metadata["anthropic"]["thinking"]
    follow_up[1] = {**follow_up[1], "thinking_blocks": blocks, "reasoning_content": None}
    run(base, {**body, "messages": follow_up})
    assert state.last["json"]["messages"][1]["content"][0] == blocks[0]
    assert state.last["json"]["thinking"]["type"] == "enabled"


def test_hosted_thinking_field_and_budget_fitting(fake):
    state, base = fake
    body = {"messages": user("think"), "thinking": {"type": "enabled", "budget_tokens": 2048}}
    result = run(base, {**body, "max_tokens": 8000})
    assert state.last["json"]["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert state.last["json"]["max_tokens"] == 8000
    assert result.message["reasoning_content"] == "Considering: think"
    assert fit_budget(1000, 4096, 64_000) == (5096, 4096)
    assert fit_budget(4096, 16_384, 4096) == (4096, 2048)
    assert fit_budget(1024, 1024, 1024) is None


def test_adaptive_thinking_and_model_generations(fake):
    state, base = fake
    result = run(
        base, {"messages": user("hmm"), "reasoning_effort": "high"}, upstream="claude-sonnet-4-6"
    )
    assert state.last["json"]["thinking"] == {"type": "adaptive", "display": "summarized"}
    assert state.last["json"]["output_config"] == {"effort": "high"}
    assert state.last["json"]["max_tokens"] == 1024
    assert result.message["reasoning_content"] == "Considering: hmm"

    body = {"messages": user("hmm"), "thinking": {"type": "enabled", "budget_tokens": 2048}}
    run(base, {**body, "temperature": 0.2}, upstream="claude-sonnet-5-5")
    assert state.last["json"]["thinking"] == {"type": "adaptive", "display": "summarized"}
    run(base, {"messages": user("hmm"), "temperature": 0.2}, upstream="claude-opus-5")
    assert "temperature" not in state.last["json"]

    off = {"messages": user("hmm"), "reasoning_effort": "none"}
    assert build_request(off, make_model(), "claude-sonnet-4-5")[0]["thinking"] == {
        "type": "disabled"
    }
    assert "thinking" not in build_request(off, make_model(), "claude-sonnet-5-5")[0]


def test_forced_tool_choice_wins_over_thinking():
    body = {
        "messages": user("x"),
        "tools": [WEATHER],
        "tool_choice": "required",
        "reasoning_effort": "high",
    }
    payload, plan = build_request(body, make_model(), "claude-sonnet-4-5")
    assert "thinking" not in payload and not plan.thinking
    assert payload["tool_choice"] == {"type": "any"}


def test_model_traits_and_catalog_override():
    assert model_traits(make_model(), "claude-3-7-sonnet-20250219").structured is False
    assert model_traits(make_model(), "claude-sonnet-4-20250514").structured is False
    assert model_traits(make_model(), "claude-opus-4-1-20250805").structured is True
    fable = model_traits(make_model(), "claude-fable-5-1")
    assert fable.no_forced and fable.no_budget and fable.adaptive
    assert model_traits(make_model(), "claude-some-future-9").no_sampling
    assert not model_traits(make_model(), "my-proxy-model").structured
    override = make_model(structured_outputs=False)
    assert model_traits(override, "claude-sonnet-4-5").structured is False


def test_thinking_cache_is_bounded():
    cache = ThinkingCache(size=2)
    for text in ("a", "b", "c"):
        cache.put(text, [{"type": "thinking", "thinking": text, "signature": "s"}])
    assert cache.get("a") is None
    assert cache.get(" c ") == [{"type": "thinking", "thinking": "c", "signature": "s"}]


# -- prompt caching ------------------------------------------------------------------------


def test_cache_flag_places_breakpoints_and_usage_counts_cache(fake):
    state, base = fake
    system = f"You are a careful assistant. {uuid.uuid4()} " * 20
    body = {
        "messages": [{"role": "system", "content": system}, *user("cached question")],
        "tools": [WEATHER],
        "cache": True,
    }
    first = run(base, body)
    sent = state.last["json"]
    ephemeral = {"type": "ephemeral"}
    assert sent["system"] == [{"type": "text", "text": system, "cache_control": ephemeral}]
    assert sent["tools"][-1]["cache_control"] == ephemeral
    assert sent["messages"][-1]["content"] == [
        {"type": "text", "text": "cached question", "cache_control": ephemeral}
    ]
    meta = first.provider_metadata["anthropic"]
    written = meta["cache_creation_input_tokens"]
    assert written > 0 and first.usage.cache_write_tokens == written
    assert first.usage.cached_tokens == 0
    assert first.usage.prompt_tokens == answer(sent, set())["usage"]["input_tokens"] + written

    second = run(base, body)
    assert second.usage.cached_tokens == written
    assert second.usage.cache_write_tokens == 0
    assert second.provider_metadata["anthropic"]["cache_read_input_tokens"] == written
    assert second.usage.prompt_tokens == first.usage.prompt_tokens
    assert second.usage.to_openai()["prompt_tokens_details"]["cached_tokens"] == written


def test_cache_control_passes_through(fake):
    state, base = fake
    hour = {"type": "ephemeral", "ttl": "1h"}
    body = {
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "S", "cache_control": hour}]},
            {"role": "user", "content": [{"type": "text", "text": "U", "cache_control": hour}]},
            {"role": "assistant", "content": "A", "cache_control": {"type": "ephemeral"}},
            *user("next"),
        ]
    }
    run(base, body)
    sent = state.last["json"]
    assert sent["system"] == [{"type": "text", "text": "S", "cache_control": hour}]
    assert sent["messages"][0]["content"][0]["cache_control"] == hour
    assert sent["messages"][1]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert sent["messages"][2]["content"] == "next"


# -- stop reasons and citations --------------------------------------------------------------


def test_refusal_length_stop_sequence_and_citations(fake):
    state, base = fake
    refused = run(base, {"messages": user("please refuse this")})
    assert refused.finish_reason == "content_filter"
    assert refused.message["content"] == "I can't help with that."

    cut = run(base, {"messages": user("one two three four"), "max_tokens": 2})
    assert cut.finish_reason == "length"

    stopped = run(base, {"messages": user("one two three four"), "stop": ["three"]})
    assert stopped.finish_reason == "stop"
    assert stopped.message["content"] == "Echo: one two "
    assert stopped.provider_metadata["anthropic"]["stop_sequence"] == "three"

    cited = run(base, {"messages": user("cite your source")})
    (note,) = cited.message["annotations"]
    assert note["type"] == "url_citation"
    assert note["url_citation"]["url"] == "https://example.com/source"
    assert note["url_citation"]["end_index"] == len(cited.message["content"])


# -- streams -------------------------------------------------------------------------------


def test_stream_text(fake):
    state, base = fake
    chunks, error = run(base, {"messages": user("stream me please")}, stream=True)
    assert error is None
    assert state.last["json"]["stream"] is True
    assert "".join(c.content or "" for c in chunks) == "Echo: stream me please"
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["stop"]
    last = usage_chunk(chunks)
    raw = answer({k: v for k, v in state.last["json"].items() if k != "stream"}, set())
    assert last.usage.prompt_tokens == raw["usage"]["input_tokens"]
    assert last.usage.completion_tokens == raw["usage"]["output_tokens"]
    assert last.provider_metadata["anthropic"]["stop_reason"] == "end_turn"


def test_stream_thinking_and_tool_calls(fake):
    state, base = fake
    adapter = AnthropicAdapter(ThinkingCache())
    body = {"messages": user("weather and time?"), "tools": [WEATHER, TIME]}
    chunks, error = run(base, {**body, "reasoning_effort": "low"}, stream=True, adapter=adapter)
    assert error is None
    thought = "Considering: weather and time?"
    assert "".join(c.reasoning or "" for c in chunks) == thought
    deltas = [d for c in chunks for d in c.tool_calls]
    firsts = [d for d in deltas if d.id]
    assert [(d.index, d.name, d.arguments) for d in firsts] == [
        (0, "weather", ""),
        (1, "time", ""),
    ]
    assert all(d.name is None for d in deltas if not d.id)
    args = {i: "".join(d.arguments for d in deltas if d.index == i) for i in (0, 1)}
    assert json.loads(args[0]) == {"city": "example city"} and json.loads(args[1]) == {}
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["tool_calls"]
    meta = usage_chunk(chunks).provider_metadata["anthropic"]
    assert meta["thinking"] == [
        {"type": "thinking", "thinking": thought, "signature": sign(thought)}
    ]
    assert adapter.cache.get(thought) == meta["thinking"]


def test_stream_citations_and_redacted_thinking(fake):
    state, base = fake
    body = {"messages": user("cite it, redacted"), "reasoning_effort": "low"}
    chunks, error = run(base, body, stream=True)
    assert error is None
    last = usage_chunk(chunks)
    assert [b["type"] for b in last.provider_metadata["anthropic"]["thinking"]] == [
        "thinking",
        "redacted_thinking",
    ]
    (finish,) = [c for c in chunks if c.finish_reason]
    (note,) = finish.annotations
    assert note["url_citation"]["url"] == "https://example.com/source"
    text = "".join(c.content or "" for c in chunks)
    assert (note["url_citation"]["start_index"], note["url_citation"]["end_index"]) == (
        0,
        len(text),
    )


# -- errors --------------------------------------------------------------------------------

BAD_REQUEST = {
    "type": "error",
    "error": {"type": "invalid_request_error", "message": "messages: roles must alternate"},
}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("failure", "error_type", "status", "quote"),
    [
        (Failure(status=429, headers={"retry-after": "7"}), ProviderRateLimited, 429, "429"),
        (Failure(status=529), ProviderUnavailable, 503, "Fake failure 529"),
        (Failure(status=500), ProviderServerError, 502, "Fake failure 500"),
        (Failure(status=401), ProviderAuthError, 502, "Fake failure 401"),
        (Failure(status=400, body=BAD_REQUEST), ProviderBadRequest, 400, "roles must alternate"),
        (Failure(malformed=True), ProviderServerError, 502, "anthropic"),
        (Failure(delay=0.8), ProviderTimeout, 504, "did not answer"),
    ],
)
def test_errors_are_mapped(fake, stream, failure, error_type, status, quote):
    state, base = fake
    state.fail_next(failure)
    body = {"messages": user("hi")}
    if stream:
        chunks, error = run(base, body, stream=True, timeout=0.3)
        assert chunks == []
    else:
        with pytest.raises(ProviderError) as caught:
            run(base, body, timeout=0.3)
        error = caught.value
    assert type(error) is error_type
    assert error.status == status and error.provider == "anthropic"
    assert quote in error.message
    if error_type is ProviderRateLimited:
        assert error.retry_after == 7.0 and error.headers["retry-after"] == "7"
    if error_type is ProviderAuthError:
        assert error.code == "provider_auth_error"
        assert "layers providers set anthropic" in error.hint


def test_error_event_mid_stream(fake):
    state, base = fake
    state.fail_next(Failure(stream_error_after=4))
    chunks, error = run(base, {"messages": user("a fairly long answer here")}, stream=True)
    assert chunks and chunks[0].content
    assert all(c.usage is None for c in chunks)
    assert isinstance(error, ProviderUnavailable)
    assert error.status == 503 and "Overloaded" in error.message


def test_images_and_embeddings_are_not_supported():
    adapter = get_adapter("anthropic")
    call = UpstreamCall(body={}, model=make_model(), upstream_model="claude-sonnet-4-5")
    with pytest.raises(CapabilityError):
        asyncio.run(adapter.images(call))
    with pytest.raises(CapabilityError):
        asyncio.run(adapter.embed(call))


def test_fake_is_strict_like_the_real_api(fake):
    state, base = fake
    good = {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": user("hi")}
    with httpx.Client(base_url=base) as client:
        headers = {"anthropic-version": "2023-06-01"}
        assert client.post("/messages", json=good, headers=headers).status_code == 401
        bearer = {**headers, "authorization": "Bearer k"}
        assert client.post("/messages", json=good, headers=bearer).status_code == 200
        extra = client.post("/messages", json={**good, "seed": 1}, headers=bearer)
        assert extra.status_code == 400
        assert extra.json()["error"]["type"] == "invalid_request_error"
