"""Gateway features beyond the basics: lifecycle, budgets, reasoning, vision, caching,
attribution — through the real openai SDK."""

from __future__ import annotations

import base64
import io
from decimal import Decimal

import openai
import pytest
from PIL import Image

from layers_cli.pricing import charge
from layers_cli.providers.base import Usage
from tests.support.gateway import running_gateway, write_config

HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    home = tmp_path_factory.mktemp("features")
    write_config(home, '[retired]\n"openai/gpt-3.5-turbo" = "openai/gpt-4o-mini"\n')
    with running_gateway(home, credits="1000") as handle:
        yield handle


def test_retired_model_is_410_with_date_and_replacement(gw):
    before = gw.balance_micro()
    with pytest.raises(openai.APIStatusError) as err:
        gw.client().chat.completions.create(model="anthropic/claude-3-opus", messages=HELLO)
    assert err.value.status_code == 410
    body = err.value.body
    assert body["code"] == "model_retired"
    assert body["end_of_life"] in body["message"] and body["replacement"] in body["message"]
    assert gw.balance_micro() == before


def test_config_maps_a_retired_id_to_another_model(gw):
    completion = gw.client().chat.completions.create(
        model="openai/gpt-3.5-turbo", messages=HELLO, max_tokens=20
    )
    assert completion.model_extra["layers"]["model"] == "openai/gpt-4o-mini"


def test_deprecated_model_works_with_a_warning_header(gw):
    raw = gw.client().chat.completions.with_raw_response.create(
        model="openai/gpt-4o", messages=HELLO, max_tokens=20
    )
    assert raw.parse().choices[0].message.content
    warning = raw.headers["x-layers-deprecation"]
    assert "deprecated" in warning and "end of life 20" in warning


def test_key_budget_once_spent_gives_402_naming_it(gw):
    svc = gw.service()
    key, secret = svc.create_key("playground", label="tight", budget="0.5")
    svc.close()
    client = gw.client(api_key=secret)
    client.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO, max_tokens=50)
    before = gw.balance_micro()
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(
            model="anthropic/claude-opus-4.5", messages=HELLO, max_tokens=4000
        )
    assert err.value.status_code == 402
    assert err.value.body["code"] == "budget_exceeded"
    assert err.value.body["budget"] == "key"
    assert "key budget" in err.value.body["message"]
    assert gw.balance_micro() == before


def test_project_budget(tmp_path):
    with running_gateway(tmp_path / "pb") as gw:
        # a request first: the gateway now remembers a key with no budget anywhere
        gw.client().chat.completions.create(model="openai/gpt-4o", messages=HELLO, max_tokens=5)
        svc = gw.service()
        svc.set_project_budget("playground", "0.01")
        svc.close()
        before = gw.balance_micro()
        with pytest.raises(openai.APIStatusError) as err:
            gw.client().chat.completions.create(
                model="openai/gpt-4o", messages=HELLO, max_tokens=1000
            )
        assert err.value.body["budget"] == "project"
        assert "playground" in err.value.body["message"]
        assert gw.balance_micro() == before


def test_reasoning_streams_before_text_and_is_counted(gw):
    chunks = list(
        gw.client().chat.completions.create(
            model="anthropic/claude-sonnet-4.5",
            stream=True,
            max_tokens=2000,
            messages=[{"role": "user", "content": "Is 221 a prime number?"}],
            extra_body={"thinking": {"type": "enabled", "budget_tokens": 1024}},
        )
    )
    kinds = []
    for c in chunks:
        if c.choices:
            delta = c.choices[0].delta
            if (delta.model_extra or {}).get("reasoning_content"):
                kinds.append("reasoning")
            if delta.content:
                kinds.append("text")
    assert kinds and kinds[0] == "reasoning" and "text" in kinds
    assert kinds.index("text") > max(i for i, k in enumerate(kinds) if k == "reasoning")
    usage = chunks[-1].usage
    assert usage.completion_tokens_details.reasoning_tokens > 0
    assert usage.completion_tokens >= usage.completion_tokens_details.reasoning_tokens


def _png_data_url(color: tuple[int, int, int], size: tuple[int, int]) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_vision_describes_what_is_really_in_the_image(gw):
    completion = gw.client().chat.completions.create(
        model="openai/gpt-4o",
        max_tokens=200,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this image?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": _png_data_url((0, 0, 255), (64, 48))},
                    },
                ],
            }
        ],
    )
    text = completion.choices[0].message.content
    assert "64×48" in text and "PNG" in text and "blue" in text


def test_repeated_long_prefix_is_a_cache_hit_billed_at_the_cache_price(gw):
    long_system = "You are a meticulous assistant. " * 300
    messages = [
        {
            "role": "system",
            "content": [
                {"type": "text", "text": long_system, "cache_control": {"type": "ephemeral"}}
            ],
        },
        {"role": "user", "content": "Summarise your instructions."},
    ]
    client = gw.client()
    first = client.chat.completions.create(
        model="anthropic/claude-sonnet-4.5", messages=messages, max_tokens=100
    )
    second = client.chat.completions.create(
        model="anthropic/claude-sonnet-4.5", messages=messages, max_tokens=100
    )
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached >= 1024
    svc = gw.service()
    model = svc.get_model("anthropic/claude-sonnet-4.5")
    row = svc.get_request(second.model_extra["layers"]["request_id"])
    expected = charge(
        model,
        Usage(
            prompt_tokens=row["prompt_tokens"],
            completion_tokens=row["completion_tokens"],
            cached_tokens=row["cached_tokens"],
            cache_write_tokens=row["cache_write_tokens"],
        ),
        Decimal("0.6"),
    )
    assert row["credits_micro"] == expected.micro
    assert (
        row["credits_micro"]
        < svc.get_request(first.model_extra["layers"]["request_id"])["credits_micro"]
    )
    svc.close()


def test_metadata_attributes_usage(gw):
    client = gw.client()
    for pattern in ("agents/basic", "agents/basic", "chat/stream"):
        client.chat.completions.create(
            model="openai/gpt-4o-mini",
            messages=HELLO,
            max_tokens=20,
            metadata={"pattern": pattern},
        )
    svc = gw.service()
    rows = svc.list_requests(limit=3)
    assert [r["metadata"]["pattern"] for r in rows] == [
        "chat/stream",
        "agents/basic",
        "agents/basic",
    ]
    usage = svc.usage(by="project")
    assert usage["groups"][0]["grp"] == "playground"
    svc.close()
