"""The OpenAI adapter against a fake OpenAI served on loopback."""

from __future__ import annotations

import json
from typing import Any

import pytest

from layers_cli.catalog.model import ModelInfo
from layers_cli.errors import (
    ProviderAuthError,
    ProviderBadRequest,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
    ProviderUnavailable,
)
from layers_cli.providers import get_adapter
from layers_cli.providers.base import Chunk, UpstreamCall
from layers_cli.providers.http import HTTPClient
from layers_cli.providers.openai import effort_from_thinking, is_reasoning_model
from tests.fakes import Failure, FakeState
from tests.fakes.openai import create_app
from tests.support.adapters import fake_server, fresh, model_info

pytestmark = pytest.mark.anyio
ADAPTER = get_adapter("openai")

WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Get weather",
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
    "function": {
        "name": "time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}},
            "required": ["zone"],
        },
    },
}


def model(upstream: str, kind: str = "language") -> ModelInfo:
    return model_info(
        "openai",
        upstream,
        kind=kind,
        capabilities={"text", "stream", "tools", "json", "vision"},
        context_window=128_000,
        default_output_tokens=1024,
        max_output_tokens=16_384,
    )


@pytest.fixture(scope="module")
def server():
    """One fake for the module (starting uvicorn per test is slow); state reset per test."""
    yield from fake_server(create_app, "/v1")


@pytest.fixture
def state(server) -> FakeState:
    return fresh(server[0])


@pytest.fixture
def base_url(server, state) -> str:
    return server[1]


@pytest.fixture
async def http():
    async with HTTPClient() as client:
        yield client


def call(base_url: str, http: HTTPClient, upstream: str, body: dict, **kw: Any):
    kind = "image" if "image" in upstream or "dall-e" in upstream else "language"
    kind = "embedding" if "embedding" in upstream else kind
    return UpstreamCall(
        body=body,
        model=model(upstream, kind),
        upstream_model=upstream,
        http=http,
        credential="test-key",
        base_url=base_url,
        timeout=kw.pop("timeout", 5.0),
        **kw,
    )


def chat(*messages: dict, **fields: Any) -> dict:
    return {"model": "openai/x", "messages": list(messages), "max_tokens": 256, **fields}


def user(text: str) -> dict:
    return {"role": "user", "content": text}


async def collect(stream) -> dict[str, Any]:
    """Fold canonical chunks back into one answer, checking the streaming contract."""
    chunks: list[Chunk] = [chunk async for chunk in stream]
    text, reasoning, calls, finishes = "", "", {}, []
    for chunk in chunks:
        text += chunk.content or ""
        reasoning += chunk.reasoning or ""
        for delta in chunk.tool_calls:
            if delta.index not in calls:  # first piece: id + name + ""
                assert delta.id and delta.name and delta.arguments == ""
                calls[delta.index] = {"id": delta.id, "name": delta.name, "arguments": ""}
            else:
                assert delta.id is None and delta.name is None
                calls[delta.index]["arguments"] += delta.arguments
        if chunk.finish_reason:
            finishes.append(chunk.finish_reason)
    with_usage = [c for c in chunks if c.usage is not None]
    assert len(with_usage) == 1 and chunks[-1] is with_usage[0]
    assert len(finishes) == 1
    return {
        "text": text,
        "reasoning": reasoning,
        "calls": [calls[i] for i in sorted(calls)],
        "finish": finishes[0],
        "last": chunks[-1],
        "annotations": [a for c in chunks for a in c.annotations or []],
        "usage": chunks[-1].usage,
    }


# ---------------------------------------------------------------- requests


def test_reasoning_model_detection():
    assert is_reasoning_model("o3") and is_reasoning_model("o4-mini")
    assert is_reasoning_model("gpt-5") and is_reasoning_model("gpt-5.1-mini")
    assert not is_reasoning_model("gpt-5-chat-latest")
    assert not is_reasoning_model("gpt-4o") and not is_reasoning_model("gpt-4.1-mini")
    assert effort_from_thinking({"type": "enabled", "budget_tokens": 1024}) == "low"
    assert effort_from_thinking({"type": "enabled", "budget_tokens": 8000}) == "medium"
    assert effort_from_thinking({"type": "enabled", "budget_tokens": 32000}) == "high"
    assert effort_from_thinking({"type": "disabled"}) is None


async def test_chat_request_is_cleaned_for_openai(base_url, http, state):
    body = chat(
        {"role": "system", "content": "Be terse."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather?", "cache_control": {"type": "ephemeral"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "I should call weather.",
            "tool_calls": [
                {
                    "id": "call_9",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_9", "content": '{"tempC": 20}'},
        temperature=0.5,
        metadata={"project": "playground"},
        cache=True,
        thinking={"type": "enabled", "budget_tokens": 2048},
        reasoning_effort="low",
        n=2,
        logprobs=True,
        stop=["END"],
        seed=7,
        tools=[WEATHER],
        tool_choice="auto",
    )
    result = await ADAPTER.complete(call(base_url, http, "gpt-4o", body))

    sent = state.last
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["authorization"] == "Bearer test-key"
    wire = sent["json"]
    assert wire["model"] == "gpt-4o"
    assert wire["max_tokens"] == 256 and "max_completion_tokens" not in wire
    assert wire["temperature"] == 0.5 and wire["stop"] == ["END"] and wire["seed"] == 7
    for dropped in ("metadata", "cache", "thinking", "reasoning_effort", "n", "logprobs"):
        assert dropped not in wire
    assert "stream" not in wire and "stream_options" not in wire
    assert wire["messages"][0] == {"role": "system", "content": "Be terse."}
    assert wire["messages"][1]["content"][0] == {"type": "text", "text": "Weather?"}
    assert "reasoning_content" not in wire["messages"][2]
    assert wire["messages"][2]["tool_calls"][0]["id"] == "call_9"
    assert wire["tools"][0]["function"]["parameters"]["$schema"].startswith("http")

    assert result.finish_reason == "stop"
    assert result.message == {"role": "assistant", "content": 'The tool said {"tempC": 20}'}
    assert result.upstream_id and result.upstream_id.startswith("chatcmpl-")
    meta = result.provider_metadata["openai"]
    assert meta["system_fingerprint"] == "fp_fake" and meta["service_tier"] == "default"


async def test_reasoning_model_gets_developer_role_and_completion_limit(base_url, http, state):
    body = chat(
        {"role": "system", "content": "Think first."},
        user("What is 2+2?"),
        temperature=0.2,
        top_p=0.9,
        presence_penalty=0.1,
        thinking={"type": "enabled", "budget_tokens": 20000},
    )
    result = await ADAPTER.complete(call(base_url, http, "o3", body))

    wire = state.last["json"]
    assert wire["messages"][0]["role"] == "developer"
    assert wire["max_completion_tokens"] == 256 and "max_tokens" not in wire
    assert not {"temperature", "top_p", "presence_penalty"} & set(wire)
    assert wire["reasoning_effort"] == "high"  # from thinking.budget_tokens
    usage = result.usage
    assert usage.reasoning_tokens == 64
    assert usage.completion_tokens == 64 + 4  # "Echo: What is 2+2?"
    assert result.provider_metadata["openai"]["reasoning_tokens"] == 64


async def test_explicit_reasoning_effort_wins(base_url, http, state):
    body = chat(
        user("hi"),
        max_tokens=None,
        max_completion_tokens=99,
        reasoning_effort="minimal",
        thinking={"type": "enabled", "budget_tokens": 20000},
    )
    await ADAPTER.complete(call(base_url, http, "gpt-5-mini", body))
    wire = state.last["json"]
    assert wire["reasoning_effort"] == "minimal" and wire["max_completion_tokens"] == 99


async def test_cached_tokens_and_usage_semantics(base_url, http):
    body = chat(user("cache me " * 40), prompt_cache_key="playground")
    result = await ADAPTER.complete(call(base_url, http, "gpt-4o-mini", body))
    usage = result.usage
    assert usage.cached_tokens > 0 and usage.cached_tokens == usage.prompt_tokens // 2
    assert usage.to_openai()["prompt_tokens_details"]["cached_tokens"] == usage.cached_tokens
    assert not usage.estimated
    assert result.provider_metadata["openai"]["cached_tokens"] == usage.cached_tokens


# ---------------------------------------------------------------- responses


async def test_parallel_tool_calls_whole(base_url, http):
    body = chat(user("Weather and time?"), tools=[WEATHER, TIME], tool_choice="auto")
    result = await ADAPTER.complete(call(base_url, http, "gpt-4o", body))
    assert result.finish_reason == "tool_calls"
    assert result.message["content"] is None
    calls = result.message["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["weather", "time"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}
    assert isinstance(calls[1]["function"]["arguments"], str)
    assert all(c["type"] == "function" and c["id"] for c in calls)


async def test_structured_output_refusal_length_and_annotations(base_url, http):
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["a", "n"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    result = await ADAPTER.complete(
        call(base_url, http, "gpt-4o", chat(user("json"), response_format=fmt))
    )
    assert json.loads(result.message["content"]) == {"a": "a-1", "n": 1}

    refused = await ADAPTER.complete(call(base_url, http, "gpt-4o", chat(user("REFUSE this"))))
    assert refused.message["refusal"] == "I can't help with that."
    assert refused.message["content"] is None and refused.finish_reason == "stop"

    cut = await ADAPTER.complete(
        call(base_url, http, "gpt-4o", chat(user("one two three four"), max_tokens=2))
    )
    assert cut.finish_reason == "length" and cut.message["content"] == "Echo: one"

    cited = await ADAPTER.complete(
        call(base_url, http, "gpt-4o-search-preview", chat(user("news")))
    )
    assert cited.message["annotations"][0]["url_citation"]["url"] == "https://example.com/echo"


# ---------------------------------------------------------------- streams


async def test_stream_text_with_usage_chunk(base_url, http, state):
    body = chat(user("hello there world"), stream=True)
    result = await collect(ADAPTER.stream(call(base_url, http, "gpt-4o", body)))
    wire = state.last["json"]
    assert wire["stream"] is True and wire["stream_options"] == {"include_usage": True}
    assert result["text"] == "Echo: hello there world"
    assert result["finish"] == "stop"
    assert not result["usage"].estimated and result["usage"].completion_tokens == 4
    assert result["last"].provider_metadata["openai"]["system_fingerprint"] == "fp_fake"


async def test_stream_parallel_tool_calls_keep_their_indexes(base_url, http):
    body = chat(user("Weather and time?"), tools=[WEATHER, TIME], stream=True)
    result = await collect(ADAPTER.stream(call(base_url, http, "gpt-4o", body)))
    assert result["finish"] == "tool_calls"
    assert [c["name"] for c in result["calls"]] == ["weather", "time"]
    assert [c["id"] for c in result["calls"]] == ["call_1", "call_2"]
    assert json.loads(result["calls"][0]["arguments"]) == {"city": "Paris"}
    assert json.loads(result["calls"][1]["arguments"]) == {"zone": "UTC"}


async def test_stream_reasoning_model_usage(base_url, http):
    body = chat(user("think"), stream=True)
    result = await collect(ADAPTER.stream(call(base_url, http, "o4-mini", body)))
    assert result["usage"].reasoning_tokens == 64
    assert result["last"].provider_metadata["openai"]["reasoning_tokens"] == 64


async def test_stream_annotations_ride_with_the_finish(base_url, http):
    body = chat(user("news"), stream=True)
    result = await collect(ADAPTER.stream(call(base_url, http, "gpt-4o-search-preview", body)))
    assert result["annotations"][0]["type"] == "url_citation"


# ---------------------------------------------------------------- images and embeddings


async def test_gpt_image_returns_png_bytes_and_token_usage(base_url, http, state):
    body = {"prompt": "a red fox", "n": 2, "size": "1024x1024", "response_format": "url"}
    result = await ADAPTER.images(call(base_url, http, "gpt-image-1", body))
    wire = state.last["json"]
    assert wire["model"] == "gpt-image-1" and "response_format" not in wire
    assert len(result.images) == 2 and all(img.startswith(b"\x89PNG") for img in result.images)
    assert result.mime_type == "image/png"
    assert result.usage.images == 2 and result.usage.prompt_tokens == 3
    assert result.usage.completion_tokens == 8320
    assert result.provider_metadata["openai"]["size"] == "1024x1024"


async def test_dalle_asks_for_base64(base_url, http, state):
    result = await ADAPTER.images(call(base_url, http, "dall-e-3", {"prompt": "a cat"}))
    assert state.last["json"]["response_format"] == "b64_json"
    assert result.images[0].startswith(b"\x89PNG")
    assert result.revised_prompts == ["A detailed picture of a cat"]
    assert result.usage.images == 1


async def test_embeddings_with_dimensions(base_url, http, state):
    body = {"input": ["alpha", "beta"], "dimensions": 8, "encoding_format": "base64"}
    result = await ADAPTER.embed(call(base_url, http, "text-embedding-3-small", body))
    wire = state.last["json"]
    assert wire["encoding_format"] == "float" and wire["dimensions"] == 8
    assert len(result.vectors) == 2 and all(len(v) == 8 for v in result.vectors)
    assert result.vectors[0] != result.vectors[1]  # ordered by index, not by position
    assert abs(sum(x * x for x in result.vectors[0]) - 1) < 1e-6
    assert result.usage.prompt_tokens == 2

    await ADAPTER.embed(
        call(base_url, http, "text-embedding-ada-002", {"input": "x", "dimensions": 8})
    )
    assert "dimensions" not in state.last["json"]


# ---------------------------------------------------------------- errors


async def test_error_mapping(base_url, http, state):
    c = call(base_url, http, "gpt-4o", chat(user("hi")))

    state.fail_next(Failure(status=400, body={"error": {"message": "Bad param 'x'."}}))
    with pytest.raises(ProviderBadRequest) as bad:
        await ADAPTER.complete(c)
    assert bad.value.status == 400 and "Bad param 'x'." in bad.value.message
    assert bad.value.provider == "openai"

    state.fail_next(Failure(status=401))
    with pytest.raises(ProviderAuthError) as auth:
        await ADAPTER.complete(c)
    assert auth.value.status == 502 and auth.value.code == "provider_auth_error"
    assert "layers providers set openai" in auth.value.hint
    assert "Incorrect API key" in auth.value.message

    state.fail_next(Failure(status=429, headers={"retry-after-ms": "1500"}))
    with pytest.raises(ProviderRateLimited) as limited:
        await ADAPTER.complete(c)
    assert limited.value.status == 429 and limited.value.retry_after == 1.5
    assert "Rate limit reached" in limited.value.message

    state.fail_next(Failure(status=500))
    with pytest.raises(ProviderServerError) as server:
        await ADAPTER.complete(c)
    assert server.value.status == 502 and "had an error" in server.value.message

    state.fail_next(Failure(status=503, headers={"retry-after": "7"}))
    with pytest.raises(ProviderUnavailable) as busy:
        await ADAPTER.complete(c)
    assert busy.value.status == 503 and busy.value.retry_after == 7


async def test_timeout_and_malformed_body(base_url, http, state):
    state.fail_next(Failure(delay=0.6))
    slow = call(base_url, http, "gpt-4o", chat(user("hi")), timeout=0.3)
    with pytest.raises(ProviderTimeout) as timeout:
        await ADAPTER.complete(slow)
    assert timeout.value.status == 504 and timeout.value.provider == "openai"

    state.fail_next(Failure(malformed=True))
    with pytest.raises(ProviderServerError) as broken:
        await ADAPTER.complete(call(base_url, http, "gpt-4o", chat(user("hi"))))
    assert "openai" in broken.value.message and "not valid JSON" in broken.value.message


async def test_stream_errors(base_url, http, state):
    body = chat(user("one two three four five"), stream=True)

    state.fail_next(Failure(status=429, headers={"retry-after": "2"}))
    with pytest.raises(ProviderRateLimited) as before:
        await collect(ADAPTER.stream(call(base_url, http, "gpt-4o", body)))
    assert before.value.retry_after == 2

    frame = {"error": {"message": "The server is overloaded.", "type": "server_error"}}
    state.fail_next(Failure(stream_error_after=3, body=frame))
    seen: list[Chunk] = []
    with pytest.raises(ProviderServerError) as mid:
        async for chunk in ADAPTER.stream(call(base_url, http, "gpt-4o", body)):
            seen.append(chunk)
    assert seen and "overloaded" in mid.value.message and mid.value.provider == "openai"

    state.fail_next(Failure(stream_error_after=2, body={"error": {"type": "rate_limit_error"}}))
    with pytest.raises(ProviderRateLimited):
        await collect(ADAPTER.stream(call(base_url, http, "gpt-4o", body)))

    state.fail_next(Failure(malformed=True))
    with pytest.raises(ProviderServerError) as broken:
        await collect(ADAPTER.stream(call(base_url, http, "gpt-4o", body)))
    assert "not valid JSON" in broken.value.message


def test_the_fake_speaks_what_the_openai_sdk_expects(server):
    """Guards the fake's fidelity (the lead reuses it end to end behind the gateway)."""
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server[1], api_key="k", max_retries=0)
    messages = [{"role": "user", "content": "Weather?"}]
    with client.chat.completions.stream(model="gpt-4o", messages=messages, tools=[WEATHER]) as s:
        for _ in s:
            pass
        final = s.get_final_completion()
    assert json.loads(final.choices[0].message.tool_calls[0].function.arguments) == {
        "city": "Paris"
    }
    vectors = client.embeddings.create(model="text-embedding-3-small", input="a", dimensions=4)
    assert len(vectors.data[0].embedding) == 4  # the SDK asked for base64 and decoded it
    with pytest.raises(openai.BadRequestError, match="max_completion_tokens"):
        client.chat.completions.create(model="o3", messages=messages, max_tokens=5)
