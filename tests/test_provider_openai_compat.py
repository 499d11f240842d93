"""The generic OpenAI-compatible engine: xAI, DeepSeek, Mistral and user-declared upstreams,
each against the fake configured to behave like that vendor."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest

from layers_cli.catalog.model import ModelInfo, Prices
from layers_cli.errors import (
    ProviderAuthError,
    ProviderBadRequest,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
)
from layers_cli.providers import get_adapter
from layers_cli.providers.base import Chunk, UpstreamCall
from layers_cli.providers.http import HTTPClient
from layers_cli.providers.openai_compat import OpenAICompatible, StreamTranslator
from layers_cli.providers.openai_wire import split_content, usage_from
from tests.fakes import Failure, FakeState
from tests.fakes.openai import MISTRAL_ACCEPTED, create_app, vector
from tests.support.servers import serve_app

pytestmark = pytest.mark.anyio
ADAPTER = get_adapter("openai-compatible")
FAKES = {
    "strict": {},
    "xai": {"reasoning_in_completion": False},
    "lenient": {"accepted_fields": None, "require_auth": False, "stream_usage": "never"},
    "deepseek": {"accepted_fields": None},
    "mistral": {
        "accepted_fields": MISTRAL_ACCEPTED,
        "reject_status": 422,
        "stream_usage": "always",
    },
    "b64": {"embeddings_base64": True},
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def model(provider: str, upstream: str) -> ModelInfo:
    return ModelInfo(
        id=f"{provider}/{upstream}",
        provider=provider,
        upstream_id=upstream,
        display_name=upstream,
        type="language",
        capabilities=frozenset({"text", "stream", "tools", "json"}),
        context_window=128_000,
        default_output_tokens=1024,
        max_output_tokens=8192,
        prices=Prices(),
    )


@pytest.fixture(scope="module")
def servers():
    """Fakes started on first use and shared by the module; state is reset per lookup."""
    started: dict[str, tuple[FakeState, str]] = {}
    with contextlib.ExitStack() as stack:

        def get(kind: str) -> tuple[FakeState, str]:
            if kind not in started:
                state = FakeState()
                url = stack.enter_context(serve_app(create_app(state, **FAKES[kind])))
                started[kind] = (state, url + "/v1")
            state, url = started[kind]
            state.requests.clear()
            state.failures.clear()
            return state, url

        yield get


@pytest.fixture
async def http():
    async with HTTPClient() as client:
        yield client


def call(url: str | None, http, provider: str, upstream: str, body: dict, **kw: Any):
    kw.setdefault("credential", "test-key")
    return UpstreamCall(
        body=body,
        model=model(provider, upstream),
        upstream_model=upstream,
        http=http,
        base_url=url,
        timeout=kw.pop("timeout", 5.0),
        **kw,
    )


def user(text: str) -> dict:
    return {"role": "user", "content": text}


async def chunks_of(stream) -> list[Chunk]:
    chunks = [chunk async for chunk in stream]
    assert [c for c in chunks if c.usage is not None] == [chunks[-1]]
    return chunks


# ---------------------------------------------------------------- user-declared upstreams


async def test_user_declared_upstream_forwards_its_extras(servers, http):
    state, url = servers("lenient")
    body = {
        "model": "acme/llama",
        "messages": [
            {"role": "developer", "content": "Be brief."},
            user("hi"),
            {"role": "assistant", "content": "Hello", "reasoning_content": "greet"},
            user("again"),
        ],
        "max_completion_tokens": 64,
        "top_k": 40,  # an AI SDK providerOptions extra, meant for this upstream
        "metadata": {"a": "b"},
        "cache": True,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "layers": {"tag": "x"},
    }
    result = await ADAPTER.complete(call(url, http, "acme", "llama-3.1-8b", body, credential=None))
    sent = state.last
    assert "authorization" not in sent["headers"]
    wire = sent["json"]
    assert wire["model"] == "llama-3.1-8b" and wire["top_k"] == 40 and wire["max_tokens"] == 64
    assert not {"metadata", "cache", "thinking", "layers", "max_completion_tokens"} & set(wire)
    assert wire["messages"][0] == {"role": "system", "content": "Be brief."}
    assert wire["messages"][2] == {"role": "assistant", "content": "Hello"}
    assert result.message == {"role": "assistant", "content": "Echo: again"}
    assert set(result.provider_metadata) == {"acme"}


async def test_stream_without_usage_is_estimated(servers, http):
    state, url = servers("lenient")
    body = {"model": "m", "messages": [user("count these words please")], "stream": True}
    chunks = await chunks_of(ADAPTER.stream(call(url, http, "acme", "llama", body)))
    assert state.last["json"]["stream_options"] == {"include_usage": True}
    assert "".join(c.content or "" for c in chunks) == "Echo: count these words please"
    usage = chunks[-1].usage
    assert usage.estimated and usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["stop"]


async def test_errors_name_the_upstream(servers, http):
    state, url = servers("strict")
    c = call(url, http, "acme", "llama", {"messages": [user("hi")]})

    state.fail_next(Failure(status=401))
    with pytest.raises(ProviderAuthError) as auth:
        await ADAPTER.complete(c)
    assert auth.value.provider == "acme" and "layers providers set acme" in auth.value.hint

    state.fail_next(Failure(status=429, headers={"retry-after-ms": "250"}))
    with pytest.raises(ProviderRateLimited) as limited:
        await ADAPTER.complete(c)
    assert limited.value.retry_after == 0.25 and "acme" in limited.value.message

    state.fail_next(Failure(status=502, body={"error": {"message": "bad gateway upstream"}}))
    with pytest.raises(ProviderServerError) as server:
        await ADAPTER.complete(c)
    assert "acme returned HTTP 502: bad gateway upstream" in server.value.message

    state.fail_next(Failure(malformed=True))
    with pytest.raises(ProviderServerError) as broken:
        await ADAPTER.complete(c)
    assert broken.value.provider == "acme"

    state.fail_next(Failure(delay=0.6))
    with pytest.raises(ProviderTimeout):
        await ADAPTER.complete(call(url, http, "acme", "llama", c.body, timeout=0.3))

    stream_body = {"messages": [user("a b c d e")], "stream": True}
    state.fail_next(Failure(stream_error_after=2, body={"message": "boom", "type": "server"}))
    with pytest.raises(ProviderServerError) as mid:
        await chunks_of(ADAPTER.stream(call(url, http, "acme", "llama", stream_body)))
    assert mid.value.provider == "acme" and "boom" in mid.value.message


async def test_missing_base_url_is_explained(http):
    with pytest.raises(ProviderServerError) as missing:
        await ADAPTER.complete(call(None, http, "acme", "llama", {"messages": [user("hi")]}))
    assert "[upstreams.acme]" in missing.value.hint


# ---------------------------------------------------------------- named vendors


async def test_deepseek_keeps_reasoning_for_tool_turns(servers, http):
    state, url = servers("deepseek")
    body = {
        "messages": [
            user("Weather?"),
            {
                "role": "assistant",
                "content": None,
                "reasoning_content": "Need the weather tool.",
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": {}},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ],
        "thinking": {"type": "enabled", "budget_tokens": 4096},
        "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {}}},
        "seed": 3,
        "max_tokens": 100,
    }
    result = await ADAPTER.complete(call(url, http, "deepseek", "deepseek-reasoner", body))
    wire = state.last["json"]
    assistant = wire["messages"][1]
    assert assistant["reasoning_content"] == "Need the weather tool."
    assert assistant["tool_calls"][0]["function"]["arguments"] == "{}"
    assert wire["thinking"] == {"type": "enabled"}
    assert wire["response_format"] == {"type": "json_object"}
    assert "seed" not in wire
    assert result.message["reasoning_content"] == "Thinking about Weather?"

    body["stream"] = True
    chunks = await chunks_of(ADAPTER.stream(call(url, http, "deepseek", "deepseek-reasoner", body)))
    assert "".join(c.reasoning or "" for c in chunks) == "Thinking about Weather?"
    assert chunks[-1].usage.reasoning_tokens == 3


async def test_mistral_dialect(servers, http):
    state, url = servers("mistral")
    body = {
        "messages": [{"role": "developer", "content": "Terse."}, user("hi there")],
        "seed": 42,
        "max_completion_tokens": 50,
        "user": "u1",
        "stream": True,
    }
    chunks = await chunks_of(ADAPTER.stream(call(url, http, "mistral", "mistral-small", body)))
    wire = state.last["json"]
    assert wire["random_seed"] == 42 and "seed" not in wire and "user" not in wire
    assert "stream_options" not in wire and wire["max_tokens"] == 50
    assert wire["messages"][0]["role"] == "system"
    usage = chunks[-1].usage
    assert not usage.estimated and usage.completion_tokens == 3  # from the last chunk

    mistral_422 = {
        "object": "error",
        "message": {
            "detail": [{"type": "extra_forbidden", "msg": "Extra inputs are not permitted"}]
        },
        "type": "invalid_request_error",
    }
    state.fail_next(Failure(status=422, body=mistral_422))
    with pytest.raises(ProviderBadRequest) as bad:
        await ADAPTER.complete(
            call(url, http, "mistral", "mistral-small", {"messages": [user("x")]})
        )
    assert bad.value.status == 400 and "Extra inputs are not permitted" in bad.value.message


async def test_xai_reasoning_tokens_count_as_completion(servers, http):
    state, url = servers("xai")
    body = {"messages": [user("why is the sky blue")], "max_tokens": 100}
    result = await ADAPTER.complete(call(url, http, "xai", "grok-3-mini-reasoning", body))
    usage = result.usage
    assert usage.reasoning_tokens == 7  # "Thinking about why is the sky blue"
    assert usage.completion_tokens == 7 + 6  # "Echo: why is the sky blue"
    assert result.message["reasoning_content"].startswith("Thinking about")


async def test_xai_images_download_urls_without_credentials(servers, http):
    state, url = servers("strict")
    body = {"prompt": "a lighthouse", "n": 2, "size": "1024x1024", "quality": "hd"}
    result = await ADAPTER.images(call(url, http, "xai", "grok-2-image-url", body))
    post, *downloads = state.requests
    assert post["json"] == {
        "prompt": "a lighthouse",
        "n": 2,
        "model": "grok-2-image-url",
        "response_format": "b64_json",
    }
    assert [d["path"] for d in downloads] == ["/files/0.png", "/files/1.png"]
    assert all("authorization" not in d["headers"] for d in downloads)
    assert all(image.startswith(b"\x89PNG") for image in result.images)
    assert result.usage.images == 2


async def test_base64_embeddings_are_decoded(servers, http):
    state, url = servers("b64")
    body = {"input": "hello world"}
    result = await ADAPTER.embed(call(url, http, "acme", "embedder", body))
    assert state.last["json"] == {
        "model": "embedder",
        "input": "hello world",
        "encoding_format": "float",
    }
    expected = vector("hello world", 1536)
    assert len(result.vectors[0]) == 1536
    assert all(abs(a - b) < 1e-6 for a, b in zip(result.vectors[0], expected, strict=True))
    assert result.usage.prompt_tokens == 2


# ---------------------------------------------------------------- translation details


def translator() -> StreamTranslator:
    c = UpstreamCall(body={"messages": [user("x")]}, model=model("acme", "m"), upstream_model="m")
    return StreamTranslator(OpenAICompatible(), c)


def event(delta: dict, finish: str | None = None) -> dict:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_tool_call_pieces_from_unusual_upstreams():
    t = translator()
    out: list[Chunk] = []
    # arguments before the name: buffered until the name arrives
    out += t.feed(event({"tool_calls": [{"index": 0, "id": "a", "function": {"arguments": "{"}}]}))
    assert out == []
    out += t.feed(
        event({"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": "}"}}]})
    )
    # every call numbered 0, told apart by id; arguments as an object
    piece = {"index": 0, "id": "b", "function": {"name": "g", "arguments": {"k": 1}}}
    out += t.feed(event({"tool_calls": [piece]}))
    # no index at all: continues the latest call
    out += t.feed(event({"tool_calls": [{"function": {"arguments": ""}}]}, finish="stop"))
    out += t.finish()
    deltas = [d for chunk in out for d in chunk.tool_calls]
    assert [(d.index, d.id, d.name, d.arguments) for d in deltas] == [
        (0, "a", "f", ""),
        (0, None, None, "{}"),
        (1, "b", "g", ""),
        (1, None, None, '{"k": 1}'),
    ]
    assert out[-2].finish_reason == "tool_calls"  # "stop" after tool calls
    assert out[-1].usage.estimated


def test_error_frames_map_by_type():
    with pytest.raises(ProviderRateLimited):
        translator().feed({"error": {"message": "slow down", "type": "rate_limit_exceeded"}})
    with pytest.raises(ProviderBadRequest):
        translator().feed({"error": {"message": "nope", "code": 400}})


def test_usage_semantics_across_vendors():
    deepseek = usage_from(
        {"prompt_tokens": 10, "completion_tokens": 5, "prompt_cache_hit_tokens": 4}
    )
    assert deepseek.cached_tokens == 4 and deepseek.prompt_tokens == 10
    # total = prompt + completion + reasoning: reasoning was outside completion
    outside = {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 45,
        "completion_tokens_details": {"reasoning_tokens": 30},
    }
    assert usage_from(outside).completion_tokens == 35
    inside = dict(outside, completion_tokens=35)
    assert usage_from(inside).completion_tokens == 35
    written = {"prompt_tokens": 9, "prompt_tokens_details": {"cache_write_tokens": 6}}
    assert usage_from(written).to_openai()["prompt_tokens_details"]["cache_write_tokens"] == 6
    assert usage_from(None) is None


def test_mistral_thinking_parts_become_reasoning():
    content = [
        {"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]},
        {"type": "text", "text": "Answer"},
    ]
    assert split_content(content) == ("Answer", "hmm")
    assert split_content(None) == (None, "")
    assert json.loads(json.dumps(split_content("x"))) == ["x", ""]
