"""The Perplexity adapter against a fake Sonar API served on loopback."""

from __future__ import annotations

import json
from typing import Any

import pytest

from layers_cli.catalog.model import ModelInfo
from layers_cli.errors import (
    CapabilityError,
    ProviderAuthError,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
    ProviderUnavailable,
)
from layers_cli.providers import get_adapter
from layers_cli.providers.base import Chunk, UpstreamCall
from layers_cli.providers.http import HTTPClient
from layers_cli.providers.perplexity import ThinkSplitter, citation_annotations, merge_turns
from tests.fakes import Failure, FakeState
from tests.fakes.perplexity import create_app
from tests.support.adapters import fake_server, fresh, model_info

pytestmark = pytest.mark.anyio
ADAPTER = get_adapter("perplexity")
QUESTION = "weather in Paris"
SOURCES = ["https://example.com/weather-in-paris/1", "https://example.com/weather-in-paris/2"]


def model(upstream: str, *extra: str) -> ModelInfo:
    return model_info(
        "perplexity",
        upstream,
        capabilities={"text", "stream", "json", "web", *extra},
        context_window=128_000,
        default_output_tokens=1024,
        max_output_tokens=8192,
    )


@pytest.fixture(scope="module")
def server():
    yield from fake_server(create_app)


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


def call(base_url, http, upstream: str, body: dict, *extra: str, **kw: Any) -> UpstreamCall:
    return UpstreamCall(
        body=body,
        model=model(upstream, *extra),
        upstream_model=upstream,
        http=http,
        credential="test-key",
        base_url=base_url,
        timeout=kw.pop("timeout", 5.0),
    )


def chat(*messages: dict, **fields: Any) -> dict:
    return {"model": "perplexity/x", "messages": list(messages), "max_tokens": 300, **fields}


def user(text: str = QUESTION) -> dict:
    return {"role": "user", "content": text}


async def collect(stream) -> dict[str, Any]:
    chunks: list[Chunk] = [chunk async for chunk in stream]
    assert [c for c in chunks if c.usage is not None] == [chunks[-1]]
    finishes = [c.finish_reason for c in chunks if c.finish_reason]
    assert len(finishes) == 1
    return {
        "text": "".join(c.content or "" for c in chunks),
        "reasoning": "".join(c.reasoning or "" for c in chunks),
        "finish": finishes[0],
        "last": chunks[-1],
        "annotations": [a for c in chunks for a in c.annotations or []],
        "chunks": chunks,
    }


async def test_search_answer_with_citations(base_url, http, state):
    body = chat(
        {"role": "developer", "content": "Cite sources."},
        user("Hello"),
        user(QUESTION),
        max_tokens=None,
        max_completion_tokens=300,
        search_recency_filter="week",
        web_search_options={"search_context_size": "high"},
        metadata={"project": "p"},
        seed=4,
        user="u1",
    )
    result = await ADAPTER.complete(call(base_url, http, "sonar-pro", body))

    sent = state.last
    assert sent["path"] == "/chat/completions"
    assert sent["headers"]["authorization"] == "Bearer test-key"
    wire = sent["json"]
    assert wire["model"] == "sonar-pro" and wire["max_tokens"] == 300
    assert wire["search_recency_filter"] == "week"
    assert not {"metadata", "seed", "user", "stream_options", "max_completion_tokens"} & set(wire)
    assert wire["messages"] == [
        {"role": "system", "content": "Cite sources."},
        {"role": "user", "content": f"Hello\n\n{QUESTION}"},  # roles must alternate
    ]

    message = result.message
    assert message["content"] == f"Here is what I found about {QUESTION} [1][2]."
    assert result.extra["citations"] == SOURCES
    assert [r["url"] for r in result.extra["search_results"]] == SOURCES
    first = message["annotations"][0]["url_citation"]
    assert first["url"] == SOURCES[0] and first["title"].startswith("Source 1")
    assert message["content"][first["start_index"] : first["end_index"]] == "[1]"
    meta = result.provider_metadata["perplexity"]
    assert meta["citations"] == SOURCES and len(meta["search_results"]) == 2
    assert meta["num_search_queries"] == 1 and meta["search_context_size"] == "high"
    assert meta["cost"]["request_cost"] == 0.005
    assert result.usage.completion_tokens == 10 and result.usage.reasoning_tokens == 0
    assert result.finish_reason == "stop"


async def test_reasoning_model_thinks_apart_and_counts_reasoning(base_url, http):
    fmt = {
        "type": "json_schema",
        "json_schema": {
            "name": "w",
            "strict": True,
            "schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    body = chat(user(), response_format=fmt)
    result = await ADAPTER.complete(call(base_url, http, "sonar-reasoning-pro", body))
    assert json.loads(result.message["content"]) == {"city": "Paris"}
    assert result.message["reasoning_content"] == f"The user asks about {QUESTION}. Searching."
    usage = result.usage
    assert usage.reasoning_tokens == 3 * 8
    assert usage.completion_tokens == 2 + 3 * 8  # Perplexity counts reasoning apart


async def test_json_object_becomes_a_schema(base_url, http, state):
    body = chat(user(), response_format={"type": "json_object"})
    await ADAPTER.complete(call(base_url, http, "sonar", body))
    assert state.last["json"]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"schema": {"type": "object"}},
    }


async def test_stream_splits_think_and_ends_with_sources(base_url, http, state):
    body = chat(user(), stream=True)
    result = await collect(ADAPTER.stream(call(base_url, http, "sonar-reasoning", body)))
    wire = state.last["json"]
    assert wire["stream"] is True and "stream_options" not in wire
    assert result["text"] == f"Here is what I found about {QUESTION} [1][2]."
    assert result["reasoning"].strip() == f"The user asks about {QUESTION}. Searching."
    assert "<think>" not in result["text"] + result["reasoning"]
    last = result["last"]
    assert last.extra["citations"] == SOURCES
    assert result["annotations"][1]["url_citation"]["url"] == SOURCES[1]
    assert last.provider_metadata["perplexity"]["citations"] == SOURCES
    usage = last.usage
    assert not usage.estimated and usage.reasoning_tokens == 24
    assert usage.completion_tokens == 10 + 24  # the final (not an interim) usage
    assert result["finish"] == "stop"


async def test_tools_need_the_capability(base_url, http, state):
    tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
    body = chat(
        user(), tools=[tool], tool_choice={"type": "function", "function": {"name": "lookup"}}
    )
    with pytest.raises(CapabilityError) as refused:
        await ADAPTER.complete(call(base_url, http, "sonar", body))
    assert refused.value.status == 400 and "perplexity/sonar" in refused.value.message
    assert state.requests == []

    result = await ADAPTER.complete(call(base_url, http, "sonar-pro", body, "tools"))
    assert state.last["json"]["tool_choice"] == "required"
    assert result.finish_reason == "tool_calls"
    assert result.message["tool_calls"][0]["function"]["name"] == "lookup"


async def test_no_images_or_embeddings(base_url, http):
    with pytest.raises(CapabilityError):
        await ADAPTER.images(call(base_url, http, "sonar", {"prompt": "x"}))
    with pytest.raises(CapabilityError):
        await ADAPTER.embed(call(base_url, http, "sonar", {"input": "x"}))


async def test_errors(base_url, http, state):
    c = call(base_url, http, "sonar", chat(user()))

    state.fail_next(Failure(status=401))
    with pytest.raises(ProviderAuthError) as auth:
        await ADAPTER.complete(c)
    assert "Invalid API key provided." in auth.value.message
    assert "layers providers set perplexity" in auth.value.hint

    state.fail_next(Failure(status=429, headers={"retry-after": "3"}))
    with pytest.raises(ProviderRateLimited) as limited:
        await ADAPTER.complete(c)
    assert limited.value.retry_after == 3 and "Rate limit exceeded" in limited.value.message

    state.fail_next(Failure(status=500))
    with pytest.raises(ProviderServerError):
        await ADAPTER.complete(c)
    state.fail_next(Failure(status=503))
    with pytest.raises(ProviderUnavailable):
        await ADAPTER.complete(c)

    state.fail_next(Failure(malformed=True))
    with pytest.raises(ProviderServerError) as broken:
        await ADAPTER.complete(c)
    assert "perplexity" in broken.value.message

    state.fail_next(Failure(delay=0.6))
    with pytest.raises(ProviderTimeout):
        await ADAPTER.complete(call(base_url, http, "sonar", chat(user()), timeout=0.3))

    frame = {"error": {"message": "search backend failed", "type": "server_error", "code": 500}}
    state.fail_next(Failure(stream_error_after=3, body=frame))
    with pytest.raises(ProviderServerError) as mid:
        await collect(ADAPTER.stream(call(base_url, http, "sonar", chat(user(), stream=True))))
    assert "search backend failed" in mid.value.message and mid.value.provider == "perplexity"


def test_think_splitter_handles_tags_split_anywhere():
    text = "<think>\nstep one\n</think>\n\nFinal [1]"
    for size in range(1, len(text) + 1):
        splitter = ThinkSplitter()
        out = [splitter.feed(text[i : i + size]) for i in range(0, len(text), size)]
        out.append(splitter.flush())
        assert "".join(r for r, _ in out) == "\nstep one\n"
        assert "".join(a for _, a in out) == "Final [1]"
    plain = ThinkSplitter()
    assert plain.feed("No thinking <think> here") == ("", "No thinking <think> here")


def test_citations_without_markers_and_turn_merging():
    annotations = citation_annotations("no markers", ["https://a"], [])
    assert annotations[0]["url_citation"] == {
        "start_index": 0,
        "end_index": 0,
        "url": "https://a",
        "title": "https://a",
    }
    merged = merge_turns(
        [
            {"role": "user", "content": "a"},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}]},
        ]
    )
    assert merged == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "a"},
                {"type": "image_url", "image_url": {"url": "u"}},
            ],
        }
    ]
