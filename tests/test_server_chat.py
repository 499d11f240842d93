"""The gateway end to end: the real `openai` SDK → uvicorn on loopback → simulator → ledger."""

from __future__ import annotations

import base64
import json
import struct

import httpx
import jsonschema
import openai
import pytest

from tests.support.gateway import running_gateway

MODEL = "anthropic/claude-sonnet-4.5"


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    with running_gateway(tmp_path_factory.mktemp("home"), credits="1000") as handle:
        yield handle


def test_chat_whole_response_is_billed_and_logged(gw):
    client = gw.client()
    before = gw.balance_micro()
    raw = client.chat.completions.with_raw_response.create(
        model="openai/gpt-4o",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        metadata={"pattern": "chat/basic"},
    )
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    layers = completion.model_extra["layers"]
    assert layers["simulated"] is True
    assert raw.headers["x-request-id"] == layers["request_id"]
    spent = before - gw.balance_micro()
    assert spent == round(layers["credits_used"] * 1_000_000)
    assert float(raw.headers["x-layers-credits-used"]) == layers["credits_used"]
    svc = gw.service()
    row = svc.get_request(layers["request_id"])
    assert row["status"] == "ok" and row["metadata"] == {"pattern": "chat/basic"}
    assert row["credits_micro"] == spent
    assert row["prompt_tokens"] == usage.prompt_tokens
    assert svc.balance()["open_holds"] == 0
    svc.close()


def test_stream_reassembles_to_the_whole_response_with_usage_last(gw):
    client = gw.client()
    messages = [{"role": "user", "content": "Explain why the sky is blue in two sentences."}]
    whole = client.chat.completions.create(model=MODEL, messages=messages)
    stream = client.chat.completions.create(model=MODEL, messages=messages, stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["stop"]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None  # sent without include_usage
    assert last.usage.completion_tokens == whole.usage.completion_tokens
    assert last.model_extra["layers"]["credits_used"] > 0
    assert all(c.id == chunks[0].id for c in chunks)


def test_raw_sse_frames_are_well_formed(gw):
    body = {
        "model": MODEL,
        "stream": True,
        "messages": [{"role": "user", "content": "hello there"}],
    }
    with httpx.stream(
        "POST",
        gw.base_url + "/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {gw.secret}"},
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    for line in lines[:-1]:
        assert line.startswith("data: {")
        assert "choices" in json.loads(line[6:])


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather for a city",
        "parameters": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}


def test_tool_round_trip(gw):
    client = gw.client()
    messages = [{"role": "user", "content": "What's the weather in Paris in celsius?"}]
    first = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    args = json.loads(call.function.arguments)
    jsonschema.validate(args, WEATHER_TOOL["function"]["parameters"])
    assert args["unit"] == "celsius"
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"tempC": 21}'},
    ]
    final = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])
    assert final.choices[0].finish_reason == "stop"
    assert "21" in final.choices[0].message.content


def test_streamed_tool_call_deltas_carry_index_id_and_name(gw):
    client = gw.client()
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            stream=True,
            tools=[WEATHER_TOOL],
            messages=[{"role": "user", "content": "Weather in Rome, celsius please"}],
        )
    )
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].id and deltas[0].function.name == "get_weather"
    assert all(d.index is not None and d.function is not None for d in deltas)
    args = "".join(d.function.arguments or "" for d in deltas if d.index == 0)
    jsonschema.validate(json.loads(args), WEATHER_TOOL["function"]["parameters"])


def test_json_schema_output_is_valid(gw):
    schema = {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "year": {"type": "integer", "minimum": 1900, "maximum": 2100},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        },
        "required": ["title", "year", "tags"],
        "additionalProperties": False,
    }
    completion = gw.client().chat.completions.create(
        model="openai/gpt-4o",
        messages=[{"role": "user", "content": "Recommend a film from 1999."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "film", "strict": True, "schema": schema},
        },
    )
    jsonschema.validate(json.loads(completion.choices[0].message.content), schema)


def test_images_return_png_with_usage_and_billing(gw):
    before = gw.balance_micro()
    result = gw.client().images.generate(
        model="bfl/flux-2-pro", prompt="a red fox", size="256x256", response_format="b64_json"
    )
    png = base64.b64decode(result.data[0].b64_json)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert struct.unpack(">II", png[16:24]) == (256, 256)
    layers = result.model_extra["layers"]
    assert result.model_dump()["usage"]["images"] == 1
    assert before - gw.balance_micro() == round(layers["credits_used"] * 1_000_000)


def test_embeddings_float_and_base64(gw):
    client = gw.client()
    default = client.embeddings.create(
        model="openai/text-embedding-3-small", input=["a cat", "a dog"]
    )  # SDK asks for base64
    assert len(default.data) == 2 and len(default.data[0].embedding) == 1536
    floats = client.embeddings.create(
        model="openai/text-embedding-3-small",
        input="a cat",
        encoding_format="float",
        dimensions=256,
    )
    assert len(floats.data[0].embedding) == 256
    assert sum(x * x for x in floats.data[0].embedding) == pytest.approx(1.0, abs=1e-6)
    assert default.usage.prompt_tokens > 0


def test_models_list_and_get(gw):
    client = gw.client()
    ids = [m.id for m in client.models.list()]
    assert MODEL in ids and "bfl/flux-2-pro" in ids and len(ids) >= 41
    model = client.models.retrieve("openai/gpt-4o")
    assert (
        model.model_extra["pricing"]["input_per_million"] == "2.50"
        or float(model.model_extra["pricing"]["input_per_million"]) == 2.5
    )
    assert "tools" in model.model_extra["capabilities"]


def test_account_endpoints(gw):
    headers = {"authorization": f"Bearer {gw.secret}"}
    credits = httpx.get(gw.base_url + "/credits", headers=headers).json()
    assert credits["balance"] > 0 and credits["open_holds"] == 0
    key = httpx.get(gw.base_url + "/key", headers=headers).json()
    assert key["project"] == "playground" and key["usage"]["today"]["requests"] >= 0
    completion = gw.client().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}]
    )
    rid = completion.model_extra["layers"]["request_id"]
    gen = httpx.get(gw.base_url + "/generation", params={"id": rid}, headers=headers).json()
    assert gen["id"] == rid and gen["model"] == MODEL and gen["streamed"] is False
    assert gen["credits"] == completion.model_extra["layers"]["credits_used"]
    usage = httpx.get(gw.base_url + "/usage", params={"by": "model"}, headers=headers).json()
    assert usage["total"]["requests"] >= 1 and usage["groups"]
    assert httpx.get(gw.base_url.removesuffix("/v1") + "/health").json()["status"] == "ok"


def test_a_keys_last_use_is_its_newest_request(tmp_path):
    with running_gateway(tmp_path / "home") as gw:
        svc = gw.service()
        try:
            unused, _ = svc.create_key("playground", label="never used")
            assert {k["id"]: k["last_used_at"] for k in svc.list_keys()}[gw.key["id"]] is None
            client = gw.client()
            client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "Hi"}]
            )
            with pytest.raises(openai.NotFoundError):  # a failed request is a use too
                client.chat.completions.create(model="nobody/nothing", messages=[])
            newest = svc.list_requests(limit=1)[0]
            used = {k["id"]: k["last_used_at"] for k in svc.list_keys()}
            assert used == {gw.key["id"]: newest["created_at"], unused["id"]: None}
        finally:
            svc.close()
