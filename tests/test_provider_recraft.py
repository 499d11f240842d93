"""The recraft adapter against a fake Recraft server on loopback."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
from PIL import Image

from layers_cli.catalog.model import ModelInfo
from layers_cli.errors import (
    CapabilityError,
    InvalidRequest,
    LayersError,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
    ProviderUnavailable,
)
from layers_cli.providers import get_adapter
from layers_cli.providers.base import ImageResult, UpstreamCall
from layers_cli.providers.http import HTTPClient
from layers_cli.providers.recraft import ADAPTER, fit_size
from layers_cli.tokens import estimate_text_tokens
from tests.fakes import Failure, FakeState
from tests.fakes.recraft import create_app
from tests.support.adapters import failure_of as raised_by
from tests.support.adapters import fresh, image_model
from tests.support.servers import serve_app

PROMPT = "a flat fox icon"


def model_info(upstream: str = "recraftv3") -> ModelInfo:
    return image_model("recraft", upstream, "0.04", display_name="Recraft V3")


@pytest.fixture(scope="module")
def servers():
    state = FakeState()
    with serve_app(create_app(state)) as url, serve_app(create_app(state, always_url=True)) as u2:
        yield state, url + "/v1", u2 + "/v1"


@pytest.fixture
def fake(servers):
    state, base, _ = servers
    return fresh(state), base


def generate(base: str, body: dict[str, Any], **kw: Any) -> ImageResult:
    upstream = kw.get("upstream", "recraftv3")

    async def go() -> ImageResult:
        async with HTTPClient() as http:
            call = UpstreamCall(
                body={"model": f"recraft/{upstream}", "prompt": PROMPT, **body},
                model=model_info(upstream),
                upstream_model=upstream,
                http=http,
                credential=kw.get("credential", "test-key"),
                base_url=base,
                timeout=kw.get("timeout", 5.0),
            )
            return await ADAPTER.images(call)

    return asyncio.run(go())


def failure_of(base: str, body: dict[str, Any], **kw: Any) -> LayersError:
    return raised_by(generate, base, body, **kw)


def posts(state: FakeState) -> list[dict[str, Any]]:
    return [r for r in state.requests if r["method"] == "POST"]


def test_b64_images_and_the_translated_request(fake):
    state, base = fake
    body = {
        "n": 2,
        "size": "1024x1024",
        "response_format": "url",  # the gateway's concern: the adapter always returns bytes
        "quality": "hd",
        "user": "u-1",
        "style": "digital_illustration",
        "negative_prompt": "text",
        "controls": {"colors": [{"rgb": [255, 142, 60]}]},
    }
    result = generate(base, body)

    (request,) = posts(state)
    assert request["path"] == "/v1/images/generations"
    assert request["headers"]["authorization"] == "Bearer test-key"
    assert request["json"] == {
        "prompt": PROMPT,
        "model": "recraftv3",
        "response_format": "b64_json",
        "size": "1024x1024",
        "n": 2,
        "style": "digital_illustration",
        "negative_prompt": "text",
        "controls": {"colors": [{"rgb": [255, 142, 60]}]},
    }
    assert len(result.images) == 2
    assert result.mime_type == "image/png"
    for image in result.images:
        with Image.open(io.BytesIO(image)) as img:
            assert img.format == "PNG" and img.size == (1024, 1024)
    assert result.revised_prompts == [PROMPT, PROMPT]
    assert result.usage.images == 2
    assert result.usage.prompt_tokens == estimate_text_tokens(PROMPT)
    assert result.usage.estimated is True
    meta = result.provider_metadata["recraft"]
    assert len(meta["image_ids"]) == 2 and all(meta["image_ids"])
    assert meta["credits"] == 80
    assert meta["size"] == "1024x1024"


def test_url_answers_are_downloaded_without_the_key(servers):
    state, _, url_base = servers
    state.requests.clear()
    result = generate(url_base, {"size": "1536x1024"})
    downloads = [r for r in state.requests if r["method"] == "GET"]
    assert len(downloads) == 1 and downloads[0]["path"].startswith("/files/")
    assert "authorization" not in downloads[0]["headers"]
    with Image.open(io.BytesIO(result.images[0])) as img:
        assert img.size == (1536, 1024)


def test_vector_styles_return_svg(fake):
    _, base = fake
    result = generate(base, {"style": "vector_illustration"})
    assert result.mime_type == "image/svg+xml"
    assert result.images[0].startswith(b"<svg")


def test_openai_only_values_are_dropped(fake):
    state, base = fake
    generate(base, {"style": "vivid", "size": "auto", "output_format": "webp", "seed": 3})
    (request,) = posts(state)
    assert request["json"] == {
        "prompt": PROMPT,
        "model": "recraftv3",
        "response_format": "b64_json",
        "n": 1,
    }


def test_more_than_six_images_are_split_into_calls(fake):
    state, base = fake
    result = generate(base, {"n": 8})
    assert sorted(r["json"]["n"] for r in posts(state)) == [2, 6]
    assert len(result.images) == 8
    meta = result.provider_metadata["recraft"]
    assert meta["credits"] == 320
    assert len(set(meta["image_ids"])) == 8


def test_unsupported_sizes_go_as_the_nearest_aspect_ratio_and_say_so(fake):
    state, base = fake
    result = generate(base, {"size": "1792x1024"})
    (request,) = posts(state)
    assert request["json"]["size"] == "16:9"
    with Image.open(io.BytesIO(result.images[0])) as img:
        assert img.size == (1820, 1024)
    note = result.provider_metadata["recraft"]["size_note"]
    assert "1792x1024" in note and "16:9 (1820x1024)" in note


def test_v4_models_have_their_own_sizes(fake):
    state, base = fake
    result = generate(base, {"size": "1344x768"}, upstream="recraftv4_1")
    assert posts(state)[0]["json"]["size"] == "1344x768"
    assert "size_note" not in result.provider_metadata["recraft"]
    result = generate(base, {"size": "1820x1024"}, upstream="recraftv4_1_pro")
    assert posts(state)[1]["json"]["size"] == "16:9"
    with Image.open(io.BytesIO(result.images[0])) as img:
        assert img.size == (2688, 1536)


def test_vector_models_take_aspect_ratios_and_return_svg(fake):
    state, base = fake
    result = generate(base, {"size": "1024x1024"}, upstream="recraftv3_vector")
    assert posts(state)[0]["json"]["size"] == "1:1"
    assert "size_note" not in result.provider_metadata["recraft"]
    assert result.mime_type == "image/svg+xml"


@pytest.mark.parametrize(
    ("model", "size", "expected"),
    [
        ("recraftv3", None, (None, False)),
        ("recraftv3", "1024x1707", ("1024x1707", False)),
        ("recraftv3", "512x512", ("1:1", True)),
        ("recraftv3", "1024x1792", ("9:16", True)),
        ("recraftv3", "4000x1000", ("2:1", True)),
        ("recraftv4", "1216x896", ("1216x896", False)),
        ("recraftv4", "1365x1024", ("4:3", True)),
        ("recraftv4_pro", "2048x2048", ("2048x2048", False)),
        ("recraftv4_1_vector", "1536x1024", ("3:2", False)),
        ("recraftv4_1_vector", "1000x1024", ("1:1", True)),
    ],
)
def test_fit_size(model, size, expected):
    fitted, note = fit_size(model, size)
    assert (fitted, note is not None) == expected


def test_bad_size_is_the_clients_error(fake):
    state, base = fake
    error = failure_of(base, {"size": "square"})
    assert isinstance(error, InvalidRequest) and error.param == "size"
    assert state.requests == []


def test_a_missing_token_is_an_auth_error(fake):
    _, base = fake
    error = failure_of(base, {}, credential=None)
    assert isinstance(error, ProviderAuthError)
    assert error.status == 502 and error.upstream_status == 401
    assert "request unauthorized" in error.message
    assert "layers providers set recraft" in (error.hint or "")


def test_recraft_rejections_are_bad_requests_quoting_recraft(fake):
    _, base = fake
    error = failure_of(base, {"style": "watercolour"})
    assert isinstance(error, ProviderBadRequest)
    assert error.status == 400 and error.provider == "recraft"
    assert "recraft returned HTTP 400: unknown style: watercolour" in error.message


def test_out_of_api_units_is_the_operators_problem(fake):
    state, base = fake
    state.fail_next(Failure(status=402, body={"code": "not_enough_units", "message": "no units"}))
    error = failure_of(base, {})
    assert type(error) is ProviderError
    assert error.status == 502 and error.code == "provider_out_of_credits"
    assert "gateway's Recraft account has run out of credits" in error.message
    assert "no units" in error.message and "app.recraft.ai" in (error.hint or "")
    assert "not about your Layers credits" in (error.hint or "")


def test_rate_limit_carries_the_delay(fake):
    state, base = fake
    state.fail_next(Failure(status=429, body="slow down", headers={"retry-after-ms": "1500"}))
    error = failure_of(base, {})
    assert isinstance(error, ProviderRateLimited)
    assert error.status == 429 and error.retry_after == 1.5
    assert "slow down" in error.message


@pytest.mark.parametrize(
    ("status", "kind", "layers_status"),
    [(500, ProviderServerError, 502), (503, ProviderUnavailable, 503)],
)
def test_server_errors(fake, status, kind, layers_status):
    state, base = fake
    state.fail_next(Failure(status=status, body={"code": "internal", "message": "boom"}))
    error = failure_of(base, {})
    assert isinstance(error, kind) and error.status == layers_status
    assert "boom" in error.message and error.retryable


def test_a_slow_answer_times_out(fake):
    state, base = fake
    state.fail_next(Failure(delay=0.8))
    error = failure_of(base, {}, timeout=0.3)
    assert isinstance(error, ProviderTimeout)
    assert error.status == 504 and error.provider == "recraft"


def test_malformed_json_is_a_server_error(fake):
    state, base = fake
    state.fail_next(Failure(malformed=True))
    error = failure_of(base, {})
    assert isinstance(error, ProviderServerError)
    assert "recraft" in error.message and "not a JSON object" in error.message


def test_chat_stream_and_embed_are_capability_errors():
    adapter = get_adapter("recraft")
    call = UpstreamCall(body={}, model=model_info(), upstream_model="recraftv3")

    async def consume() -> None:
        async for _ in adapter.stream(call):
            pass

    for attempt in (adapter.complete(call), consume(), adapter.embed(call)):
        with pytest.raises(CapabilityError) as info:
            asyncio.run(attempt)
        assert info.value.param == "model"
        assert "recraft models generate images" in info.value.message
