"""The Google Gemini adapter against a fake Gemini API served over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from layers_cli.catalog.model import ModelInfo
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
from layers_cli.providers.base import Chunk, UpstreamCall
from layers_cli.providers.google import (
    ADAPTER,
    NATIVE_ASPECTS,
    StreamState,
    aspect_ratio,
    parse_retry_delay,
)
from layers_cli.providers.google_translate import (
    SKIP_SIGNATURE,
    build_request,
    content_parts,
    convert_schema,
    map_finish,
    thinking_config,
)
from layers_cli.providers.http import HTTPClient
from tests.fakes import Failure
from tests.fakes.google import INVALID_KEY, SIGNATURE, create_app
from tests.support.adapters import fake_server, fresh, model_info, with_http

CHAT = frozenset({"text", "vision", "tools", "json", "stream", "thinking", "web"})


def model(upstream: str = "gemini-2.5-flash", kind: str = "language", caps=CHAT) -> ModelInfo:
    return model_info(
        "google",
        upstream,
        kind=kind,
        capabilities=caps,
        context_window=1_048_576,
        default_output_tokens=8192,
        max_output_tokens=65536,
        dimensions=3072 if kind == "embedding" else None,
    )


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
        "strict": True,
    },
}


@pytest.fixture(scope="module")
def server():
    yield from fake_server(create_app)


@pytest.fixture
def fake(server):
    state, url = server
    return fresh(state), f"{url}/v1beta"


def _call(base: str, body: dict, http: HTTPClient, **kw: Any) -> UpstreamCall:
    info = kw.pop("info", None) or model(kw.pop("upstream", "gemini-2.5-flash"))
    return UpstreamCall(
        body=body,
        model=info,
        upstream_model=info.upstream_id,
        http=http,
        credential=kw.pop("credential", "test-key"),
        base_url=base,
        timeout=kw.pop("timeout", 5.0),
    )


def complete(base: str, body: dict, **kw: Any):
    return with_http(lambda http: ADAPTER.complete(_call(base, body, http, **kw)))


def stream(base: str, body: dict, **kw: Any) -> tuple[list[Chunk], ProviderError | None]:
    """All chunks received, and the error that ended the stream (if any)."""

    async def go():
        chunks: list[Chunk] = []
        async with HTTPClient() as http:
            try:
                async for chunk in ADAPTER.stream(_call(base, body, http, **kw)):
                    chunks.append(chunk)
            except ProviderError as exc:
                return chunks, exc
        return chunks, None

    return asyncio.run(go())


def other(base: str, method: str, body: dict, info: ModelInfo, **kw: Any):
    return with_http(
        lambda http: getattr(ADAPTER, method)(_call(base, body, http, info=info, **kw))
    )


def user(text: str) -> dict:
    return {"role": "user", "content": text}


# --------------------------------------------------------------------------- chat


def test_registry_resolves_the_adapter():
    assert get_adapter("google") is ADAPTER
    assert ADAPTER.name == "google"


def test_complete_translates_request_and_response(fake):
    state, base = fake
    png = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode()
    body = {
        "model": "google/gemini-2.5-flash",
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe Paris", "cache_control": {"type": "x"}},
                    {"type": "image_url", "image_url": {"url": png}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/cat.png"}},
                ],
            },
        ],
        "max_tokens": 200,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": "ZZZ",
        "seed": 7,
        "metadata": {"layers": "private"},
        "cache": True,
        "stream_options": {"include_usage": True},
    }
    result = complete(base, body)

    sent = state.last
    assert sent["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent["headers"]["x-goog-api-key"] == "test-key"
    req = sent["json"]
    assert req["systemInstruction"] == {"parts": [{"text": "Be terse."}, {"text": "Use metric."}]}
    assert req["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "Describe Paris"},
                {"inlineData": {"mimeType": "image/png", "data": png.split(",", 1)[1]}},
                {"fileData": {"mimeType": "image/png", "fileUri": "https://x.test/cat.png"}},
            ],
        }
    ]
    assert req["generationConfig"] == {
        "maxOutputTokens": 200,
        "temperature": 0.5,
        "topP": 0.9,
        "seed": 7,
        "stopSequences": ["ZZZ"],
    }
    assert set(req) == {"contents", "systemInstruction", "generationConfig"}

    assert result.message == {
        "role": "assistant",
        "content": "Echo: Describe Paris [2 attachment(s)]",
    }
    assert result.finish_reason == "stop"
    assert result.upstream_id.startswith("resp-")
    prompt = result.usage.prompt_tokens
    assert prompt > 0 and result.usage.completion_tokens == 10
    assert result.usage.reasoning_tokens == 0 and not result.usage.estimated
    meta = result.provider_metadata["google"]
    assert meta["finishReason"] == "STOP"
    assert meta["modelVersion"] == "gemini-2.5-flash"
    assert meta["safetyRatings"][0]["probability"] == "NEGLIGIBLE"


def test_tool_call_round_trip_with_thought_signature(fake):
    state, base = fake
    first = complete(
        base, {"messages": [user("Weather in Paris?")], "tools": [WEATHER], "tool_choice": "auto"}
    )
    req = state.last["json"]
    declaration = req["tools"][0]["functionDeclarations"][0]
    assert declaration == {
        "name": "weather",
        "description": "Get weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
    assert req["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}

    assert first.finish_reason == "tool_calls"
    assert first.message["content"] is None
    [call] = first.message["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"] == {"name": "weather", "arguments": '{"city":"Paris"}'}
    assert call["extra_content"] == {"google": {"thought_signature": SIGNATURE}}

    # The AI SDK's second request: the call echoed back, reasoning_content, one tool result.
    again = complete(
        base, {"messages": [user("Weather in Paris?")], "tools": [WEATHER], "tool_choice": "auto"}
    )
    assert again.message["tool_calls"][0]["id"] == call["id"]  # deterministic ids

    assistant = {
        "role": "assistant",
        "content": None,
        "reasoning_content": "I should call weather.",
        "tool_calls": [call],
    }
    tool = {"role": "tool", "tool_call_id": call["id"], "content": '{"city":"Paris","tempC":20}'}
    second = complete(
        base, {"messages": [user("Weather in Paris?"), assistant, tool], "tools": [WEATHER]}
    )
    contents = state.last["json"]["contents"]
    assert contents[1] == {
        "role": "model",
        "parts": [
            {
                "functionCall": {"name": "weather", "args": {"city": "Paris"}},
                "thoughtSignature": SIGNATURE,
            }
        ],
    }
    assert contents[2] == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "weather", "response": {"city": "Paris", "tempC": 20}}}
        ],
    }
    assert "I should call weather" not in json.dumps(state.last["json"])
    assert second.finish_reason == "stop"
    assert second.message["content"] == 'Result: {"city": "Paris", "tempC": 20}'


def test_parallel_tool_results_share_one_turn_and_are_wrapped(fake):
    state, base = fake
    calls = [
        {"id": "a", "type": "function", "function": {"name": "weather", "arguments": "{}"}},
        {"id": "b", "type": "function", "function": {"name": "clock", "arguments": "{}"}},
    ]
    messages = [
        user("Weather and time?"),
        {"role": "assistant", "content": "Checking.", "tool_calls": calls},
        {"role": "tool", "tool_call_id": "a", "content": "sunny"},
        {"role": "tool", "tool_call_id": "b", "content": "[1, 2]"},
    ]
    complete(base, {"messages": messages})
    contents = state.last["json"]["contents"]
    assert contents[1]["parts"][0] == {"text": "Checking."}
    assert "thoughtSignature" not in contents[1]["parts"][1]  # Gemini 2.5: none invented
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "weather", "response": {"result": "sunny"}}},
        {"functionResponse": {"name": "clock", "response": {"result": [1, 2]}}},
    ]
    assert len(contents) == 3


def test_gemini_3_gets_the_documented_signature_sentinel():
    calls = [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}},
        {"id": "b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
    ]
    body = {"messages": [user("hi"), {"role": "assistant", "content": None, "tool_calls": calls}]}
    parts = build_request(body, "gemini-3-pro-preview", True)["contents"][1]["parts"]
    assert parts[0]["thoughtSignature"] == SKIP_SIGNATURE
    assert "thoughtSignature" not in parts[1]
    parts = build_request(body, "gemini-2.5-pro", True)["contents"][1]["parts"]
    assert "thoughtSignature" not in parts[0]


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("none", {"mode": "NONE"}),
        ("auto", {"mode": "AUTO"}),
        ("required", {"mode": "ANY"}),
        (
            {"type": "function", "function": {"name": "weather"}},
            {"mode": "ANY", "allowedFunctionNames": ["weather"]},
        ),
    ],
)
def test_tool_choice_maps_to_function_calling_config(choice, config):
    body = {"messages": [user("x")], "tools": [WEATHER], "tool_choice": choice}
    request = build_request(body, "gemini-2.5-flash", False)
    assert request["toolConfig"] == {"functionCallingConfig": config}


def test_schema_conversion_strips_what_gemini_rejects():
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "name": {"type": ["string", "null"], "format": "email", "default": "x"},
            "size": {"enum": [1, 2], "type": "integer"},
            "kind": {"const": "a"},
            "tags": {"type": "array", "items": {"$ref": "#/$defs/Tag"}},
            "when": {"type": "string", "format": "date-time"},
            "either": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "empty": {"type": "object", "properties": {}, "additionalProperties": False},
        },
        "required": ["name", "ghost"],
        "$defs": {
            "Tag": {"type": "object", "properties": {"v": {"type": "string"}}, "strict": True}
        },
    }
    assert convert_schema(schema, ordering=True) == {
        "type": "object",
        "properties": {
            "name": {"type": "string", "nullable": True},
            "size": {"type": "integer", "description": "One of: 1, 2."},
            "kind": {"type": "string", "enum": ["a"]},
            "tags": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"v": {"type": "string"}},
                    "propertyOrdering": ["v"],
                },
            },
            "when": {"type": "string", "format": "date-time"},
            "either": {"type": "string", "nullable": True},
            "empty": {"type": "object"},
        },
        "required": ["name"],
        "propertyOrdering": ["name", "size", "kind", "tags", "when", "either", "empty"],
    }
    assert convert_schema({"type": "object", "properties": {}}) is None


def test_json_schema_response_format(fake):
    state, base = fake
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "temp": {"type": "number"}},
        "required": ["city", "temp"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "r", "strict": True, "schema": schema}}
    result = complete(base, {"messages": [user("Weather in Rome")], "response_format": fmt})
    gen = state.last["json"]["generationConfig"]
    assert gen["responseMimeType"] == "application/json"
    assert gen["responseSchema"] == {
        "type": "object",
        "properties": {"city": {"type": "string"}, "temp": {"type": "number"}},
        "required": ["city", "temp"],
        "propertyOrdering": ["city", "temp"],
    }
    assert json.loads(result.message["content"]) == {"city": "Rome", "temp": 1.5}

    complete(base, {"messages": [user("json please")], "response_format": {"type": "json_object"}})
    assert state.last["json"]["generationConfig"] == {"responseMimeType": "application/json"}


def test_reasoning_budget_thoughts_and_usage(fake):
    state, base = fake
    body = {
        "messages": [user("Why is the sky blue?")],
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "max_completion_tokens": 4096,
    }
    result = complete(base, body)
    gen = state.last["json"]["generationConfig"]
    assert gen == {
        "maxOutputTokens": 4096,
        "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": True},
    }
    assert result.message["reasoning_content"].startswith("Thinking about the request")
    assert result.message["content"] == "Echo: Why is the sky blue?"  # signed "" part skipped
    usage = result.usage
    thoughts = result.provider_metadata["google"]["thoughtsTokenCount"]
    assert usage.reasoning_tokens == thoughts > 0
    assert usage.completion_tokens == 7 + thoughts  # candidates + thoughts


def test_reasoning_effort_mapping():
    def cfg(effort: str, upstream: str) -> dict | None:
        return thinking_config({"reasoning_effort": effort}, True, upstream)

    assert cfg("low", "gemini-2.5-flash") == {"thinkingBudget": 1024, "includeThoughts": True}
    assert cfg("high", "gemini-2.5-flash") == {"thinkingBudget": 24576, "includeThoughts": True}
    assert cfg("none", "gemini-2.5-flash") == {"thinkingBudget": 0}
    assert cfg("none", "gemini-2.5-pro") == {"thinkingBudget": 128}
    assert cfg("medium", "gemini-3-pro-preview") == {
        "thinkingLevel": "HIGH",
        "includeThoughts": True,
    }
    assert cfg("minimal", "gemini-3-flash-preview") == {
        "thinkingLevel": "MINIMAL",
        "includeThoughts": True,
    }
    assert thinking_config({"reasoning_effort": "high"}, False, "gemini-2.0-flash") is None
    assert thinking_config({}, True, "gemini-2.5-flash") is None


def test_cached_tokens_count_inside_prompt_tokens(fake):
    _, base = fake
    result = complete(
        base, {"messages": [{"role": "system", "content": "rule " * 1200}, user("hi")]}
    )
    usage = result.usage
    assert usage.prompt_tokens >= 1024
    assert usage.cached_tokens == usage.prompt_tokens // 2
    assert result.provider_metadata["google"]["cachedContentTokenCount"] == usage.cached_tokens


def test_grounding_becomes_url_citations(fake):
    state, base = fake
    result = complete(base, {"messages": [user("News today")], "web_search_options": {}})
    assert state.last["json"]["tools"] == [{"googleSearch": {}}]
    [note] = result.message["annotations"]
    assert note["type"] == "url_citation"
    assert note["url_citation"]["url"].startswith("https://example.com/")
    assert note["url_citation"]["start_index"] == 0
    assert note["url_citation"]["end_index"] == len(result.message["content"])
    assert "groundingMetadata" in result.provider_metadata["google"]


@pytest.mark.parametrize(
    ("prompt", "finish"), [("[blocked] hi", "content_filter"), ("[unsafe] hi", "content_filter")]
)
def test_safety_blocks_map_to_content_filter(fake, prompt, finish):
    _, base = fake
    result = complete(base, {"messages": [user(prompt)]})
    assert result.finish_reason == finish
    assert result.message["content"] is None
    chunks, error = stream(base, {"messages": [user(prompt)]})
    assert error is None
    assert [c.finish_reason for c in chunks if c.finish_reason] == [finish]


def test_max_tokens_maps_to_length(fake):
    _, base = fake
    result = complete(base, {"messages": [user("a long prompt " * 10)], "max_tokens": 3})
    assert result.finish_reason == "length"
    assert len(result.message["content"]) == 12


def test_content_parts_cover_audio_files_and_plain_data_urls():
    parts = content_parts(
        [
            {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}},
            {"type": "file", "file": {"filename": "a.pdf", "file_data": "JVBERi0"}},
            {"type": "image_url", "image_url": {"url": "data:text/plain,hi%20there"}},
            {"type": "mystery"},
        ]
    )
    assert parts == [
        {"inlineData": {"mimeType": "audio/wav", "data": "UklGR"}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0"}},
        {"inlineData": {"mimeType": "text/plain", "data": base64.b64encode(b"hi there").decode()}},
    ]


# --------------------------------------------------------------------------- streams


def test_stream_text_reasoning_and_usage(fake):
    state, base = fake
    body = {"messages": [user("Tell me about the Eiffel Tower")], "reasoning_effort": "low"}
    chunks, error = stream(base, body)
    assert error is None
    assert state.last["path"].endswith("/models/gemini-2.5-flash:streamGenerateContent")
    assert state.last["query"] == {"alt": "sse"}
    assert state.last["json"]["generationConfig"]["thinkingConfig"]["thinkingBudget"] == 1024

    texts = [c.content for c in chunks if c.content]
    assert len(texts) >= 3 and "".join(texts) == "Echo: Tell me about the Eiffel Tower"
    assert "".join(c.reasoning for c in chunks if c.reasoning).startswith("Thinking about")
    assert [c for c in chunks if c.usage] == [chunks[-1]]
    assert chunks[-2].finish_reason == "stop"
    usage = chunks[-1].usage
    whole = complete(base, body)
    assert usage == whole.usage  # the last usageMetadata equals the whole response's
    assert chunks[-1].provider_metadata["google"]["finishReason"] == "STOP"


def test_stream_tool_calls(fake):
    _, base = fake
    body = {"messages": [user("weather and clock in Oslo")], "tools": [WEATHER, _clock()]}
    chunks, error = stream(base, body)
    assert error is None
    deltas = [d for c in chunks for d in c.tool_calls]
    assert [(d.index, d.name, d.arguments) for d in deltas] == [
        (0, "weather", ""),
        (0, None, '{"city":"Oslo"}'),
        (1, "clock", ""),
        (1, None, '{"zone":"Oslo"}'),
    ]
    assert deltas[0].extra_content == {"google": {"thought_signature": SIGNATURE}}
    assert deltas[2].extra_content is None
    whole = complete(base, body)
    assert [d.id for d in deltas if d.id] == [c["id"] for c in whole.message["tool_calls"]]
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["tool_calls"]
    assert chunks[-1].usage.completion_tokens > 0


def _clock() -> dict:
    params = {"type": "object", "properties": {"zone": {"type": "string"}}}
    return {"type": "function", "function": {"name": "clock", "parameters": params}}


def test_stream_grounding_annotations_on_finish_chunk(fake):
    _, base = fake
    chunks, _ = stream(base, {"messages": [user("Latest Mars news")], "web_search_options": {}})
    [finish] = [c for c in chunks if c.finish_reason]
    assert finish.annotations[0]["url_citation"]["end_index"] == len(
        "".join(c.content for c in chunks if c.content)
    )


def test_stream_error_event_mid_stream(fake):
    state, base = fake
    state.fail_next(Failure(stream_error_after=2))
    chunks, error = stream(base, {"messages": [user("one two three four five six")]})
    assert len([c for c in chunks if c.content]) == 2
    assert not any(c.usage for c in chunks)
    assert isinstance(error, ProviderUnavailable)
    assert error.provider == "google" and error.status == 503
    assert "overloaded" in error.message


def test_stream_error_event_with_status_name_and_retry_info(fake):
    state, base = fake
    retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2.5s"}
    error_body = {"error": {"status": "RESOURCE_EXHAUSTED", "message": "quota", "details": [retry]}}
    state.fail_next(Failure(stream_error_after=1, body=error_body))
    chunks, error = stream(base, {"messages": [user("one two three")]})
    assert len(chunks) == 1
    assert isinstance(error, ProviderRateLimited) and error.retry_after == 2.5
    assert "quota" in error.message


def test_stream_cut_before_a_finish_reason_is_an_error():
    state = StreamState()
    chunk = {"candidates": [{"content": {"parts": [{"text": "Hel"}]}}], "responseId": "r"}
    assert [c.content for c in state.feed(chunk)] == ["Hel"]
    with pytest.raises(ProviderServerError, match="before sending a finish reason"):
        state.finish({"messages": [user("hi")]})


def test_finish_reason_mapping():
    assert map_finish("STOP", False) == "stop"
    assert map_finish("STOP", True) == "tool_calls"
    assert map_finish("MAX_TOKENS", True) == "length"
    assert map_finish("RECITATION", False) == "content_filter"
    assert map_finish(None, False, blocked=True) == "content_filter"
    assert map_finish("MALFORMED_FUNCTION_CALL", False) == "stop"


def test_stream_rate_limit_raises_before_any_chunk(fake):
    state, base = fake
    state.fail_next(Failure(status=429))
    chunks, error = stream(base, {"messages": [user("hi")]})
    assert chunks == []
    assert isinstance(error, ProviderRateLimited) and error.retry_after == 12.0


def test_stream_malformed_event(fake):
    state, base = fake
    state.fail_next(Failure(malformed=True))
    chunks, error = stream(base, {"messages": [user("hi")]})
    assert chunks == []
    assert isinstance(error, ProviderServerError) and "google" in error.message


def test_stream_timeout(fake):
    state, base = fake
    state.fail_next(Failure(delay=1.0))
    _, error = stream(base, {"messages": [user("hi")]}, timeout=0.3)
    assert isinstance(error, ProviderTimeout) and error.status == 504


# --------------------------------------------------------------------------- errors


def _error_for(base: str, **kw: Any) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        complete(base, {"messages": [user("hi")]}, **kw)
    return info.value


def test_rate_limit_reads_retry_info(fake):
    state, base = fake
    state.fail_next(Failure(status=429))
    error = _error_for(base)
    assert isinstance(error, ProviderRateLimited)
    assert (error.status, error.code, error.provider) == (429, "provider_rate_limited", "google")
    assert error.retry_after == 12.0 and error.headers["retry-after"] == "12"
    assert "You exceeded your current quota" in error.message


def test_rate_limit_header_wins_over_body(fake):
    state, base = fake
    state.fail_next(Failure(status=429, headers={"retry-after": "3"}))
    assert _error_for(base).retry_after == 3.0


@pytest.mark.parametrize(
    ("status", "kind", "code"),
    [
        (400, ProviderBadRequest, 400),
        (500, ProviderServerError, 502),
        (503, ProviderUnavailable, 503),
        (403, ProviderAuthError, 502),
    ],
)
def test_http_errors_map(fake, status, kind, code):
    state, base = fake
    state.fail_next(Failure(status=status))
    error = _error_for(base)
    assert type(error) is kind
    assert error.status == code and error.provider == "google"
    assert error.upstream_status == status
    assert "google" in error.message


def test_bad_request_quotes_the_provider(fake):
    state, base = fake
    state.fail_next(
        Failure(status=400, body={"error": {"code": 400, "message": "Bad tool schema"}})
    )
    error = _error_for(base)
    assert error.message == "google returned HTTP 400: Bad tool schema"


def test_invalid_key_is_an_auth_error(fake):
    _, base = fake
    error = _error_for(base, credential=INVALID_KEY)
    assert isinstance(error, ProviderAuthError)
    assert error.status == 502 and error.code == "provider_auth_error"
    assert "API key not valid" in error.message
    assert "layers providers set google" in error.to_body()["error"]["message"]


def test_timeout_and_malformed_body(fake):
    state, base = fake
    state.fail_next(Failure(delay=1.0))
    assert isinstance(_error_for(base, timeout=0.3), ProviderTimeout)
    state.fail_next(Failure(malformed=True))
    error = _error_for(base)
    assert isinstance(error, ProviderServerError)
    assert "google returned a body that is not JSON" in error.message


def test_non_json_error_body_is_quoted(fake):
    state, base = fake
    state.fail_next(Failure(status=502, body="<html>Bad Gateway</html>"))
    error = _error_for(base)
    assert isinstance(error, ProviderServerError) and "Bad Gateway" in error.message


def test_retry_delay_parsing():
    assert parse_retry_delay("34.4s") == 34.4
    assert parse_retry_delay("12s") == 12.0
    assert parse_retry_delay("soon") is None


# --------------------------------------------------------------------------- images


def test_imagen_predict(fake):
    state, base = fake
    info = model("imagen-4.0-generate-001", "image", frozenset({"image-gen"}))
    body = {"prompt": "a hamster in a hat", "n": 2, "size": "1536x1024"}
    result = other(base, "images", body, info)
    sent = state.last
    assert sent["path"] == "/v1beta/models/imagen-4.0-generate-001:predict"
    assert sent["headers"]["x-goog-api-key"] == "test-key"
    assert sent["json"] == {
        "instances": [{"prompt": "a hamster in a hat"}],
        "parameters": {"sampleCount": 2, "aspectRatio": "4:3"},
    }
    assert len(result.images) == 2 and result.usage.images == 2
    assert all(img.startswith(b"\x89PNG\r\n\x1a\n") for img in result.images)
    assert result.mime_type == "image/png"


def test_imagen_filtered(fake):
    _, base = fake
    info = model("imagen-4.0-generate-001", "image", frozenset({"image-gen"}))
    with pytest.raises(ProviderBadRequest, match="filtered"):
        other(base, "images", {"prompt": "[filtered] x"}, info)


NANO = model("gemini-nano-banana-2.1", "image", frozenset({"image-gen", "vision"}))


def test_gemini_native_image_model(fake):
    state, base = fake
    body = {"prompt": "a red fox", "n": 2, "size": "1536x1024", "response_format": "b64_json"}
    result = other(base, "images", body, NANO)
    assert len(state.requests) == 2  # one generateContent per image
    sent = state.last
    assert sent["path"] == "/v1beta/models/gemini-nano-banana-2.1:generateContent"
    assert sent["json"] == {
        "contents": [{"role": "user", "parts": [{"text": "a red fox"}]}],
        "generationConfig": {
            "responseModalities": ["IMAGE"],
            "imageConfig": {"aspectRatio": "3:2"},
        },
    }
    assert len(result.images) == 2 and result.usage.images == 2
    assert all(img.startswith(b"\x89PNG\r\n\x1a\n") for img in result.images)
    assert result.usage.completion_tokens == 2 * 1290 and result.usage.prompt_tokens > 0
    assert result.mime_type == "image/png"


def test_gemini_native_image_filtered(fake):
    _, base = fake
    with pytest.raises(ProviderBadRequest, match="IMAGE_SAFETY") as info:
        other(base, "images", {"prompt": "[filtered] a fox"}, NANO)
    assert info.value.status == 400 and info.value.provider == "google"


def test_aspect_ratio_picks_the_closest_supported():
    assert aspect_ratio("1024x1024") == "1:1"
    assert aspect_ratio("1536x1024") == "4:3"
    assert aspect_ratio("1024x1536") == "3:4"
    assert aspect_ratio("1792x1024") == "16:9"
    assert aspect_ratio("1536x1024", NATIVE_ASPECTS) == "3:2"
    assert aspect_ratio("2560x1080", NATIVE_ASPECTS) == "21:9"
    assert aspect_ratio("auto") is None


# --------------------------------------------------------------------------- embeddings


def test_embeddings_batch(fake):
    state, base = fake
    info = model("gemini-embedding-001", "embedding", frozenset({"embed"}))
    result = other(base, "embed", {"input": ["hello", "world"], "dimensions": 8}, info)
    sent = state.last
    assert sent["path"] == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert sent["json"]["requests"][0] == {
        "model": "models/gemini-embedding-001",
        "content": {"parts": [{"text": "hello"}]},
        "outputDimensionality": 8,
    }
    assert [len(v) for v in result.vectors] == [8, 8]
    assert result.usage.estimated and result.usage.prompt_tokens == 4


def test_embeddings_split_into_batches_of_100(fake):
    state, base = fake
    info = model("gemini-embedding-001", "embedding", frozenset({"embed"}))
    result = other(base, "embed", {"input": [f"t{i}" for i in range(150)], "dimensions": 4}, info)
    assert len(result.vectors) == 150
    assert [len(r["json"]["requests"]) for r in state.requests] == [100, 50]
    with pytest.raises(CapabilityError):
        other(base, "embed", {"input": [[1, 2, 3]]}, info)
