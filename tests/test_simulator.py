"""The offline simulator behaves like the model it stands in for, deterministically."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
from typing import Any

import jsonschema
import pytest
from PIL import Image

from layers_cli.catalog.model import ModelInfo, Prices
from layers_cli.errors import (
    InvalidRequest,
    ProviderBadRequest,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
    ProviderUnavailable,
)
from layers_cli.providers.base import Chunk, Completion, UpstreamCall
from layers_cli.providers.simulator import (
    ADAPTER,
    SimulatorAdapter,
    parse_simulate_header,
    reset_prompt_cache,
)
from layers_cli.providers.simulator.caching import TTL_SECONDS, PromptCache
from layers_cli.tokens import estimate_messages_tokens


def make_model(*caps: str, **overrides: Any) -> ModelInfo:
    fields: dict[str, Any] = {
        "id": "acme/sim-large",
        "provider": "anthropic",
        "upstream_id": "sim-large-1",
        "display_name": "Sim Large",
        "type": "language",
        "capabilities": frozenset({"text", "stream", *caps}),
        "context_window": 200_000,
        "default_output_tokens": 4096,
        "max_output_tokens": 64_000,
        "prices": Prices(),
    }
    fields.update(overrides)
    return ModelInfo(**fields)


CHAT = make_model("tools", "json")
THINKER = make_model("tools", "json", "thinking", id="acme/thinker", display_name="Thinker")
SEARCHER = make_model(
    "web", id="perplexity/sonar-pro", provider="perplexity", display_name="Sonar Pro"
)
SEER = make_model("vision", id="acme/seer", display_name="Seer")
CACHER = make_model("cache", "tools", id="anthropic/claude", display_name="Claude")
PAINTER = make_model("image-gen", id="openai/gpt-image-1", type="image", display_name="Painter")
EMBEDDER = make_model(
    "embed", id="openai/embed-3", type="embedding", dimensions=256, display_name="Embed 3"
)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {
                "city": {"type": "string", "minLength": 1},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
CALCULATOR = {
    "type": "function",
    "function": {
        "name": "calculate",
        "description": "Evaluate a math expression",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string"}},
            "required": ["expression"],
        },
    },
}
ADD = {
    "type": "function",
    "function": {
        "name": "add_numbers",
        "description": "Add two numbers",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
            "required": ["a", "b"],
            "additionalProperties": False,
        },
    },
}


def user(text: str, **body: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], **body}


def call(body: dict[str, Any], model: ModelInfo = CHAT, **simulate: str) -> UpstreamCall:
    return UpstreamCall(
        body=body, model=model, upstream_model=model.upstream_id, simulate=dict(simulate)
    )


def complete(body: dict[str, Any], model: ModelInfo = CHAT, **simulate: str) -> Completion:
    return asyncio.run(ADAPTER.complete(call(body, model, **simulate)))


def stream(body: dict[str, Any], model: ModelInfo = CHAT, **simulate: str) -> list[Chunk]:
    async def collect() -> list[Chunk]:
        return [chunk async for chunk in ADAPTER.stream(call(body, model, **simulate))]

    return asyncio.run(collect())


def reassemble(chunks: list[Chunk]) -> dict[str, Any]:
    """What a client rebuilds from a stream, in the shape of a whole response."""
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for delta in chunk.tool_calls:
            entry = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += delta.id or ""
            entry["name"] += delta.name or ""
            entry["arguments"] += delta.arguments
    content = "".join(c.content for c in chunks if c.content)
    reasoning = "".join(c.reasoning for c in chunks if c.reasoning)
    return {
        "content": content or None,
        "reasoning": reasoning or None,
        "tool_calls": [calls[i] for i in sorted(calls)],
        "finish_reason": next(c.finish_reason for c in chunks if c.finish_reason),
        "usage": next(c.usage for c in chunks if c.usage),
        "annotations": next((c.annotations for c in chunks if c.annotations), None),
        "extra": next((c.extra for c in chunks if c.extra), None),
    }


def whole(result: Completion) -> dict[str, Any]:
    message = result.message
    return {
        "content": message["content"] or None,
        "reasoning": message.get("reasoning_content"),
        "tool_calls": [
            {"id": c["id"], "name": c["function"]["name"], "arguments": c["function"]["arguments"]}
            for c in message.get("tool_calls") or []
        ],
        "finish_reason": result.finish_reason,
        "usage": result.usage,
        "annotations": message.get("annotations"),
        "extra": result.extra or None,
    }


def png_data_url(colour: str, size: tuple[int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(autouse=True)
def fresh_cache():
    reset_prompt_cache()
    yield
    reset_prompt_cache()


# ------------------------------------------------------------------------- text


def test_adapter_implements_the_provider_protocol() -> None:
    assert ADAPTER.name == "simulator"
    for method in ("complete", "stream", "images", "embed"):
        assert callable(getattr(ADAPTER, method))


def test_same_request_same_answer() -> None:
    body = user("How do tides work on the Atlantic coast?")
    first, second = complete(body), complete(body)
    assert first.message == second.message
    assert first.usage == second.usage
    assert first.upstream_id == second.upstream_id


def test_different_prompts_get_different_answers() -> None:
    a = complete(user("Tell me about volcanoes")).message["content"]
    b = complete(user("Tell me about glaciers")).message["content"]
    assert a != b


def test_reply_is_topical_and_names_the_model_once() -> None:
    result = complete(user("Explain photosynthesis in tropical rainforests"))
    content = result.message["content"]
    assert "photosynthesis" in content.lower()
    assert content.count("Sim Large") == 1
    assert "lorem" not in content.lower()
    assert result.finish_reason == "stop"
    assert content.count(".") >= 3  # a few sentences


def test_usage_is_the_simulators_own_count() -> None:
    body = user("Why is the sky blue?")
    result = complete(body)
    assert result.usage.prompt_tokens == estimate_messages_tokens(body["messages"], None)
    assert result.usage.completion_tokens > 0
    assert result.usage.estimated is False


def test_greeting_and_echo() -> None:
    assert "Sim Large" in complete(user("Hello!")).message["content"]
    assert complete(user('Say "pong" and nothing else')).message["content"] == "pong"


def test_max_tokens_truncates_with_length() -> None:
    full = complete(user("Describe the history of the Roman Empire")).message["content"]
    result = complete(user("Describe the history of the Roman Empire", max_tokens=8))
    assert result.finish_reason == "length"
    assert full.startswith(result.message["content"])
    assert result.usage.completion_tokens <= 8
    short = complete(user("Describe the history of Rome", max_completion_tokens=5))
    assert short.finish_reason == "length"


def test_stop_sequence_cuts_the_answer() -> None:
    full = complete(user("Tell me about Lisbon")).message["content"]
    cut = complete(user("Tell me about Lisbon", stop=["Lisbon", "zzz"]))
    assert cut.finish_reason == "stop"
    assert cut.message["content"] == full[: full.index("Lisbon")]


# ------------------------------------------------------------------------- streaming

STREAM_CASES = {
    "text": (user("What makes sourdough bread rise?"), CHAT),
    "length": (user("What makes sourdough bread rise?", max_tokens=12), CHAT),
    "stop": (user("Tell me about Lisbon", stop="Lisbon"), CHAT),
    "tools": (user("What's the weather in Paris and Rome?", tools=[WEATHER]), CHAT),
    "reasoning": (user("Plan a week in Japan", reasoning_effort="high"), THINKER),
    "reasoning-tools": (
        user("What is 12 * 7?", tools=[WEATHER, CALCULATOR], reasoning_effort="low"),
        THINKER,
    ),
    "json": (
        user(
            "List two cities",
            response_format={
                "type": "json_schema",
                "json_schema": {
                    "name": "r",
                    "schema": {
                        "type": "object",
                        "properties": {"cities": {"type": "array", "items": {"type": "string"}}},
                        "required": ["cities"],
                    },
                },
            },
        ),
        CHAT,
    ),
    "search": (user("Latest research on solid-state batteries"), SEARCHER),
}


@pytest.mark.parametrize("case", sorted(STREAM_CASES))
def test_stream_reassembles_to_the_whole_response(case: str) -> None:
    body, model = STREAM_CASES[case]
    assert reassemble(stream(body, model)) == whole(complete(body, model))


@pytest.mark.parametrize("case", sorted(STREAM_CASES))
def test_stream_ends_with_one_usage_chunk(case: str) -> None:
    body, model = STREAM_CASES[case]
    chunks = stream(body, model)
    with_usage = [i for i, c in enumerate(chunks) if c.usage is not None]
    assert with_usage == [len(chunks) - 1]
    finishes = [i for i, c in enumerate(chunks) if c.finish_reason]
    assert finishes == [len(chunks) - 2]


def test_text_streams_in_several_chunks() -> None:
    chunks = stream(user("What makes sourdough bread rise?"))
    assert len([c for c in chunks if c.content]) >= 5


def test_reasoning_streams_before_content() -> None:
    chunks = stream(user("Plan a week in Japan", reasoning_effort="medium"), THINKER)
    kinds = ["r" if c.reasoning else "c" for c in chunks if c.reasoning or c.content]
    assert kinds[0] == "r" and "c" in kinds
    assert kinds == sorted(kinds, key=lambda k: k != "r")


def test_tool_call_stream_follows_the_wire_rules() -> None:
    chunks = stream(user("What's the weather in Paris and Rome?", tools=[WEATHER]))
    deltas = [d for c in chunks for d in c.tool_calls]
    for index in (0, 1):
        mine = [d for d in deltas if d.index == index]
        assert mine[0].id and mine[0].id.startswith("call_")
        assert mine[0].name == "get_weather" and mine[0].arguments == ""
        assert all(d.id is None and d.name is None for d in mine[1:])
        assert len(mine[1:]) >= 2
    assert not any(c.content for c in chunks)


def test_latency_directives_do_not_change_the_answer() -> None:
    body = user("What makes sourdough bread rise?")
    paced = stream(body, **{"ttft-ms": "30", "tps": "100000"})
    assert reassemble(paced) == reassemble(stream(body))


# ------------------------------------------------------------------------- tools


def arguments(result: Completion) -> list[dict[str, Any]]:
    return [json.loads(c["function"]["arguments"]) for c in result.message["tool_calls"]]


def test_tool_call_arguments_validate_and_use_the_prompt() -> None:
    result = complete(user("What's the weather in Oslo in fahrenheit?", tools=[WEATHER]))
    assert result.finish_reason == "tool_calls"
    assert result.message["content"] is None
    [args] = arguments(result)
    jsonschema.validate(args, WEATHER["function"]["parameters"])
    assert args["city"] == "Oslo" and args["unit"] == "fahrenheit"
    [tool_call] = result.message["tool_calls"]
    assert tool_call["type"] == "function" and tool_call["id"].startswith("call_")
    assert isinstance(tool_call["function"]["arguments"], str)


def test_parallel_calls_one_per_listed_value() -> None:
    result = complete(user("What's the weather in Paris, Rome and Tokyo?", tools=[WEATHER]))
    cities = [a["city"] for a in arguments(result)]
    assert cities == ["Paris", "Rome", "Tokyo"]
    ids = [c["id"] for c in result.message["tool_calls"]]
    assert len(set(ids)) == 3
    single = complete(
        user("What's the weather in Paris and Rome?", tools=[WEATHER], parallel_tool_calls=False)
    )
    assert [a["city"] for a in arguments(single)] == ["Paris"]


def test_tool_choice_variants() -> None:
    tools = [WEATHER, CALCULATOR, ADD]
    auto = complete(user("What is 12 * 7 + 3?", tools=tools, tool_choice="auto"))
    assert auto.message["tool_calls"][0]["function"]["name"] == "calculate"
    assert arguments(auto) == [{"expression": "12 * 7 + 3"}]
    required = complete(user("Weather in Berlin?", tools=tools, tool_choice="required"))
    assert required.message["tool_calls"][0]["function"]["name"] == "get_weather"
    named = complete(
        user(
            "Weather in Berlin?",
            tools=tools,
            tool_choice={"type": "function", "function": {"name": "add_numbers"}},
        )
    )
    assert named.message["tool_calls"][0]["function"]["name"] == "add_numbers"
    jsonschema.validate(arguments(named)[0], ADD["function"]["parameters"])
    none = complete(user("Weather in Berlin?", tools=tools, tool_choice="none"))
    assert none.finish_reason == "stop" and "tool_calls" not in none.message
    with pytest.raises(InvalidRequest) as info:
        complete(
            user("Hi", tools=tools, tool_choice={"type": "function", "function": {"name": "x"}})
        )
    assert info.value.param == "tool_choice"


def test_numbers_in_the_prompt_become_number_arguments() -> None:
    result = complete(user("Add 3 and 4.5", tools=[ADD]))
    assert arguments(result) == [{"a": 3, "b": 4.5}]


def test_answer_after_tool_results_quotes_them() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"city":"Paris","tempC":20}'},
        ],
        "tools": [WEATHER],
        "tool_choice": "auto",
    }
    result = complete(body)
    assert result.finish_reason == "stop"
    content = result.message["content"]
    assert '{"city":"Paris","tempC":20}' in content
    assert "get_weather" in content and "tempC is 20" in content
    assert reassemble(stream(body)) == whole(result)


def test_a_new_question_after_tool_results_calls_again() -> None:
    messages = STREAM_CASES["tools"][0]["messages"] + [
        {"role": "assistant", "content": "It is sunny."},
        {"role": "user", "content": "And in Madrid?"},
    ]
    result = complete({"messages": messages, "tools": [WEATHER]})
    assert arguments(result) == [{"city": "Madrid"}]


# ------------------------------------------------------------------------- JSON


def test_json_object_mode_returns_an_object() -> None:
    result = complete(user("Describe a person", response_format={"type": "json_object"}))
    assert isinstance(json.loads(result.message["content"]), dict)
    keyed = complete(
        user(
            "Describe a person as JSON with keys name, age and hobbies",
            response_format={"type": "json_object"},
        )
    )
    document = json.loads(keyed.message["content"])
    assert set(document) == {"name", "age", "hobbies"}
    assert isinstance(document["age"], int | float) and isinstance(document["hobbies"], list)


def test_json_schema_mode_validates() -> None:
    schema = {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "servings": {"type": "integer", "minimum": 1, "maximum": 12},
            "ingredients": {
                "type": "array",
                "minItems": 2,
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "grams": {"type": "number"}},
                    "required": ["name", "grams"],
                    "additionalProperties": False,
                },
            },
            "vegetarian": {"type": "boolean"},
            "note": {"type": ["string", "null"]},
        },
        "required": ["title", "servings", "ingredients", "vegetarian", "note"],
        "additionalProperties": False,
    }
    body = user(
        "A lasagna recipe for 4 people",
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "recipe", "strict": True, "schema": schema},
        },
    )
    result = complete(body)
    document = json.loads(result.message["content"])
    jsonschema.validate(document, schema)
    assert document["servings"] == 4


def test_json_schema_written_in_the_prompt_is_followed() -> None:
    schema = {"type": "object", "properties": {"score": {"type": "integer"}}, "required": ["score"]}
    body = {
        "messages": [
            {"role": "system", "content": f"JSON schema:\n{json.dumps(schema)}\nAnswer in JSON."},
            {"role": "user", "content": "Rate this essay"},
        ],
        "response_format": {"type": "json_object"},
    }
    jsonschema.validate(json.loads(complete(body).message["content"]), schema)


# ------------------------------------------------------------------------- reasoning


def test_thinking_models_reason_when_asked() -> None:
    low = complete(user("Plan a week in Japan", reasoning_effort="low"), THINKER)
    high = complete(user("Plan a week in Japan", reasoning_effort="high"), THINKER)
    assert low.message["reasoning_content"] and "Japan" in low.message["reasoning_content"]
    assert len(high.message["reasoning_content"]) > len(low.message["reasoning_content"])
    usage = high.usage
    assert 0 < usage.reasoning_tokens < usage.completion_tokens


def test_no_reasoning_unless_asked_and_able() -> None:
    assert "reasoning_content" not in complete(user("Plan a trip"), THINKER).message
    none = complete(user("Plan a trip", reasoning_effort="none"), THINKER)
    assert "reasoning_content" not in none.message
    assert "reasoning_content" not in complete(user("Plan a trip", reasoning_effort="high")).message


def test_thinking_budget_sets_the_length() -> None:
    def reasoning(budget: int) -> str:
        body = user("Plan a trip", thinking={"type": "enabled", "budget_tokens": budget})
        return complete(body, THINKER).message["reasoning_content"]

    assert len(reasoning(16_000)) > len(reasoning(1024))
    adaptive = complete(user("Plan a trip", thinking={"type": "adaptive"}), THINKER)
    assert adaptive.message["reasoning_content"]


# ------------------------------------------------------------------------- search


def test_search_models_cite_sources() -> None:
    result = complete(user("Latest research on solid-state batteries"), SEARCHER)
    content = result.message["content"]
    citations = result.extra["citations"]
    assert "[1]" in content and "[2]" in content
    assert all(url.startswith("https://") and "example." in url for url in citations)
    assert any("batteries" in url for url in citations)
    assert {"title", "url", "date", "snippet"} <= set(result.extra["search_results"][0])
    assert result.provider_metadata == {"perplexity": {"citations": citations}}
    for note in result.message["annotations"]:
        cite = note["url_citation"]
        assert note["type"] == "url_citation" and cite["url"] in citations
        assert content[cite["end_index"] - 3 : cite["end_index"]].startswith("[")
        assert 0 <= cite["start_index"] < cite["end_index"] <= len(content)


# ------------------------------------------------------------------------- vision


def vision_body(url: str) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": "What is in this image?"}]
    parts.append({"type": "image_url", "image_url": {"url": url}})
    return {"messages": [{"role": "user", "content": parts}]}


def test_vision_describes_the_real_image() -> None:
    content = complete(vision_body(png_data_url("red", (40, 30))), SEER).message["content"]
    assert "40×30" in content and "PNG" in content and "red" in content
    blue = complete(vision_body(png_data_url("blue", (64, 64))), SEER).message["content"]
    assert "blue" in blue and "64×64" in blue


def test_vision_rejects_undecodable_images() -> None:
    with pytest.raises(InvalidRequest):
        complete(vision_body("data:image/png;base64,bm90IGFuIGltYWdl"), SEER)


def test_remote_images_are_not_fetched() -> None:
    content = complete(vision_body("https://example.com/cat.png"), SEER).message["content"]
    assert "https://example.com/cat.png" in content


# ------------------------------------------------------------------------- caching

LONG_SYSTEM = "You are a meticulous assistant for the ACME handbook. " * 80  # > 1024 tokens


def cached_body(question: str, *, marker: bool = True) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": LONG_SYSTEM}
    if marker:
        block["cache_control"] = {"type": "ephemeral"}
    return {
        "messages": [
            {"role": "system", "content": [block]},
            {"role": "user", "content": question},
        ]
    }


def test_cache_write_then_read() -> None:
    first = complete(cached_body("What is the refund policy?"), CACHER).usage
    prefix = estimate_messages_tokens([cached_body("")["messages"][0]])
    assert prefix >= 1024
    assert first.cache_write_tokens == prefix and first.cached_tokens == 0
    second = complete(cached_body("And the warranty?"), CACHER).usage
    assert second.cached_tokens == prefix and second.cache_write_tokens == 0
    assert second.prompt_tokens >= second.cached_tokens


def test_no_cache_without_marker_capability_or_size() -> None:
    assert complete(cached_body("Q?", marker=False), CACHER).usage.cache_write_tokens == 0
    complete(cached_body("Q?"), CHAT)
    assert complete(cached_body("Q?"), CHAT).usage.cached_tokens == 0
    small = {
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "Be brief.",
                                            "cache_control": {"type": "ephemeral"}}]},
            {"role": "user", "content": "Hi"},
        ]
    }  # fmt: skip
    assert complete(small, CACHER).usage.cache_write_tokens == 0


def test_hosted_cache_flag_caches_all_but_the_last_message() -> None:
    body = {**cached_body("First question?", marker=False), "cache": True}
    assert complete(body, CACHER).usage.cache_write_tokens > 0
    again = {**cached_body("Another question?", marker=False), "cache": True}
    assert complete(again, CACHER).usage.cached_tokens > 0


def test_moving_the_marker_reads_the_old_prefix_and_writes_the_rest() -> None:
    first = cached_body("What is the refund policy?")
    written = complete(first, CACHER).usage.cache_write_tokens
    follow = cached_body("What is the refund policy?")
    follow["messages"][0]["content"][0].pop("cache_control")
    follow["messages"] += [
        {"role": "assistant", "content": "Thirty days. " * 20},
        {"role": "user", "content": [{"type": "text", "text": "And for sale items?",
                                      "cache_control": {"type": "ephemeral"}}]},
    ]  # fmt: skip
    usage = complete(follow, CACHER).usage
    assert usage.cached_tokens == written
    assert usage.cache_write_tokens > 0


def test_reset_and_expiry() -> None:
    complete(cached_body("Q?"), CACHER)
    reset_prompt_cache()
    assert complete(cached_body("Q?"), CACHER).usage.cache_write_tokens > 0

    now = [1000.0]
    adapter = SimulatorAdapter(PromptCache(clock=lambda: now[0]))
    run = lambda: asyncio.run(adapter.complete(call(cached_body("Q?"), CACHER))).usage  # noqa: E731
    assert run().cache_write_tokens > 0
    now[0] += TTL_SECONDS - 1
    assert run().cached_tokens > 0  # a hit refreshes the five minutes
    now[0] += TTL_SECONDS + 1
    assert run().cache_write_tokens > 0


# ------------------------------------------------------------------------- images, embeddings


def test_images_are_pngs_of_the_requested_size() -> None:
    body = {"prompt": "a red fox in snow", "n": 2, "size": "256x128"}
    result = asyncio.run(ADAPTER.images(call(body, PAINTER)))
    assert len(result.images) == 2 and result.images[0] != result.images[1]
    for raw in result.images:
        with Image.open(io.BytesIO(raw)) as picture:
            assert picture.format == "PNG" and picture.size == (256, 128)
    assert result.usage.images == 2 and result.usage.prompt_tokens > 0
    assert len(result.revised_prompts) == 2 and "red fox" in result.revised_prompts[0]
    again = asyncio.run(ADAPTER.images(call(body, PAINTER)))
    assert again.images == result.images
    default = asyncio.run(ADAPTER.images(call({"prompt": "a cat"}, PAINTER)))
    assert len(default.images) == 1


@pytest.mark.parametrize("body", [{"prompt": "x", "n": 11}, {"prompt": "x", "n": 0}, {"n": 1}])
def test_bad_image_requests(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest):
        asyncio.run(ADAPTER.images(call(body, PAINTER)))


def test_embeddings_have_the_right_size_and_norm() -> None:
    body = {"input": ["the cat sat", "a dog ran", "the cat sat"]}
    result = asyncio.run(ADAPTER.embed(call(body, EMBEDDER)))
    assert [len(v) for v in result.vectors] == [256, 256, 256]
    assert all(math.isclose(math.fsum(x * x for x in v), 1.0) for v in result.vectors)
    assert result.vectors[0] == result.vectors[2] != result.vectors[1]
    assert result.usage.prompt_tokens > 0
    smaller = asyncio.run(ADAPTER.embed(call({**body, "dimensions": 64}, EMBEDDER)))
    assert len(smaller.vectors[0]) == 64
    with pytest.raises(InvalidRequest) as info:
        asyncio.run(ADAPTER.embed(call({**body, "dimensions": 512}, EMBEDDER)))
    assert info.value.param == "dimensions"


# ------------------------------------------------------------------------- failures


@pytest.mark.parametrize(
    ("status", "error", "retry_after"),
    [
        ("529", ProviderUnavailable, 2.0),
        ("503", ProviderUnavailable, 2.0),
        ("429", ProviderRateLimited, 2.0),
        ("500", ProviderServerError, None),
        ("400", ProviderBadRequest, None),
    ],
)
def test_error_directive(status: str, error: type, retry_after: float | None) -> None:
    with pytest.raises(error) as info:
        complete(user("Hi"), error=status)
    assert "(simulated)" in info.value.message and "anthropic" in info.value.message
    assert info.value.upstream_status == int(status)
    assert info.value.retry_after == retry_after
    with pytest.raises(error):
        stream(user("Hi"), error=status)
    with pytest.raises(error):
        asyncio.run(ADAPTER.embed(call({"input": ["x"]}, EMBEDDER, error=status)))


def test_overloaded_message_is_anthropics() -> None:
    with pytest.raises(ProviderUnavailable) as info:
        complete(user("Hi"), error="529")
    assert "Overloaded (simulated)" in info.value.message


def test_timeout_directive_raises_at_once() -> None:
    with pytest.raises(ProviderTimeout):
        complete(user("Hi"), timeout="")
    with pytest.raises(ProviderTimeout):
        stream(user("Hi"), timeout="")


def test_disconnect_after_n_chunks() -> None:
    async def collect() -> tuple[list[Chunk], Exception | None]:
        got: list[Chunk] = []
        try:
            async for chunk in ADAPTER.stream(
                call(user("What makes sourdough rise?"), **{"disconnect-after": "3"})
            ):
                got.append(chunk)
        except ProviderServerError as exc:
            return got, exc
        return got, None

    chunks, error = asyncio.run(collect())
    assert len(chunks) == 3 and all(c.content for c in chunks)
    assert error is not None and "upstream closed the stream (simulated)" in error.message
    with pytest.raises(ProviderServerError):
        complete(user("Hi"), **{"disconnect-after": "3"})


def test_unknown_or_bad_directives_are_rejected() -> None:
    with pytest.raises(InvalidRequest) as info:
        complete(user("Hi"), explode="1")
    assert "disconnect-after" in info.value.to_body()["error"]["message"]
    with pytest.raises(InvalidRequest):
        complete(user("Hi"), error="banana")
    with pytest.raises(InvalidRequest):
        complete(user("Hi"), error="200")


def test_parse_simulate_header() -> None:
    assert parse_simulate_header("error=529") == {"error": "529"}
    assert parse_simulate_header("timeout") == {"timeout": ""}
    assert parse_simulate_header("disconnect-after=5; ttft-ms=200, tps=50") == {
        "disconnect-after": "5",
        "ttft-ms": "200",
        "tps": "50",
    }
    assert parse_simulate_header(" Error = 429 ;") == {"error": "429"}
    assert parse_simulate_header("") == {}
    with pytest.raises(InvalidRequest):
        parse_simulate_header("explode")
