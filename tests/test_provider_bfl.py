"""The bfl adapter against a fake BFL server on loopback: submit, poll, download, errors."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import httpx
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
from layers_cli.providers.bfl import BFLAdapter, fit_dimensions
from layers_cli.providers.http import HTTPClient
from layers_cli.tokens import estimate_text_tokens
from tests.fakes import Failure, FakeState
from tests.fakes.bfl import READY_AFTER, create_app
from tests.support.adapters import failure_of as raised_by
from tests.support.adapters import fake_server, fresh, image_model, with_http

FAST = BFLAdapter(poll_initial=0.005, poll_max=0.02)
PROMPT = "a red fox in the snow"


def model_info(upstream: str) -> ModelInfo:
    return image_model("bfl", upstream, "0.03")


@pytest.fixture(scope="module")
def server():
    yield from fake_server(create_app, "/v1")


@pytest.fixture
def fake(server):
    state, base = server
    return fresh(state), base


def call_for(base: str, body: dict[str, Any], http: HTTPClient, **kw: Any) -> UpstreamCall:
    upstream = kw.pop("upstream", "flux-2-pro")
    return UpstreamCall(
        body={"model": f"bfl/{upstream}", "prompt": PROMPT, **body},
        model=model_info(upstream),
        upstream_model=upstream,
        http=http,
        credential=kw.pop("credential", "test-key"),
        base_url=base,
        timeout=kw.pop("timeout", 5.0),
        **kw,
    )


def generate(base: str, body: dict[str, Any], **kw: Any) -> ImageResult:
    return with_http(lambda http: FAST.images(call_for(base, body, http, **kw)))


def failure_of(base: str, body: dict[str, Any], **kw: Any) -> LayersError:
    return raised_by(generate, base, body, **kw)


def by_method(state: FakeState, method: str, prefix: str) -> list[dict[str, Any]]:
    return [r for r in state.requests if r["method"] == method and r["path"].startswith(prefix)]


def test_one_image_submit_poll_and_download(fake):
    state, base = fake
    body = {"n": 1, "size": "1024x768", "response_format": "b64_json", "quality": "hd"}
    result = generate(base, body)

    (submit,) = by_method(state, "POST", "/v1/")
    assert submit["path"] == "/v1/flux-2-pro"
    assert submit["headers"]["x-key"] == "test-key"
    assert "authorization" not in submit["headers"]
    assert submit["json"] == {
        "prompt": PROMPT,
        "width": 1024,
        "height": 768,
        "output_format": "png",
    }
    polls = by_method(state, "GET", "/v1/get_result")
    assert len(polls) == READY_AFTER + 1
    assert all(p["headers"]["x-key"] == "test-key" for p in polls)
    (delivery,) = by_method(state, "GET", "/delivery/")
    assert "x-key" not in delivery["headers"]  # the signed URL must not see the key

    assert len(result.images) == 1
    assert result.mime_type == "image/png"
    with Image.open(io.BytesIO(result.images[0])) as img:
        assert img.format == "PNG"
        assert img.size == (1024, 768)
    assert result.usage.images == 1
    assert result.usage.prompt_tokens == estimate_text_tokens(PROMPT)
    assert result.usage.completion_tokens == 0
    assert result.usage.estimated is True
    assert result.revised_prompts == [PROMPT]
    meta = result.provider_metadata["bfl"]
    assert len(meta["ids"]) == 1
    assert meta["cost"] == 3.0
    assert isinstance(meta["seeds"][0], int)
    assert (meta["width"], meta["height"]) == (1024, 768)
    assert "size_note" not in meta


def test_n_images_run_as_concurrent_tasks_with_consecutive_seeds(fake):
    state, base = fake
    result = generate(base, {"n": 3, "size": "512x512", "seed": 41})
    submits = by_method(state, "POST", "/v1/")
    assert sorted(s["json"]["seed"] for s in submits) == [41, 42, 43]
    assert len(result.images) == 3
    assert len(set(result.images)) == 3  # a different seed, a different image
    meta = result.provider_metadata["bfl"]
    assert meta["seeds"] == [41, 42, 43]
    assert len(set(meta["ids"])) == 3
    assert meta["cost"] == 9.0
    assert result.usage.images == 3


def test_passthrough_options_jpeg_and_revised_prompt(fake):
    state, base = fake
    body = {
        "output_format": "jpeg",
        "safety_tolerance": 4,
        "prompt_upsampling": True,
        "style": "vivid",
        "user": "u-1",
    }
    result = generate(base, body)
    (submit,) = by_method(state, "POST", "/v1/")
    assert submit["json"] == {
        "prompt": PROMPT,
        "width": 1024,
        "height": 1024,
        "output_format": "jpeg",
        "safety_tolerance": 4,
        "prompt_upsampling": True,
    }
    assert result.mime_type == "image/jpeg"
    assert result.images[0].startswith(b"\xff\xd8\xff")
    assert result.revised_prompts == [PROMPT + ", highly detailed"]


def test_size_is_rounded_to_multiples_of_16_and_says_so(fake):
    state, base = fake
    result = generate(base, {"size": "1000x1000"})
    (submit,) = by_method(state, "POST", "/v1/")
    assert (submit["json"]["width"], submit["json"]["height"]) == (1008, 1008)
    note = result.provider_metadata["bfl"]["size_note"]
    assert "1000x1000" in note and "1008x1008" in note and "16" in note


def test_ultra_models_get_an_aspect_ratio(fake):
    state, base = fake
    result = generate(base, {"size": "1792x1024"}, upstream="flux-pro-1.1-ultra")
    (submit,) = by_method(state, "POST", "/v1/")
    assert submit["path"] == "/v1/flux-pro-1.1-ultra"
    assert submit["json"] == {"prompt": PROMPT, "aspect_ratio": "7:4", "output_format": "png"}
    assert result.provider_metadata["bfl"]["aspect_ratio"] == "7:4"


@pytest.mark.parametrize(
    ("model", "size", "expected", "noted"),
    [
        ("flux-2-pro", None, {"width": 1024, "height": 1024}, False),
        ("flux-2-pro", "1536x1024", {"width": 1536, "height": 1024}, False),
        ("flux-2-max", "4096x4096", {"width": 2048, "height": 2048}, True),
        ("flux-2-pro", "30x30", {"width": 64, "height": 64}, True),
        ("flux-2-pro", "2040x2056", {"width": 2048, "height": 2048}, True),
        ("flux-pro-1.1", "1792x1024", {"width": 1440, "height": 800}, True),
        ("flux-pro-1.1", "1000x1000", {"width": 992, "height": 992}, True),
        ("flux-kontext-pro", "1024x1024", {"aspect_ratio": "1:1"}, False),
        ("flux-kontext-pro", "3000x1000", {"aspect_ratio": "7:3"}, True),
        ("flux-pro-1.1-ultra", "1000x4000", {"aspect_ratio": "9:21"}, True),
        ("flux-pro-1.1-ultra", "auto", {}, False),
    ],
)
def test_fit_dimensions(model, size, expected, noted):
    dims, note = fit_dimensions(model, size)
    assert dims == expected
    assert (note is not None) is noted
    if "width" in dims and model.startswith("flux-2"):
        assert dims["width"] % 16 == 0 and dims["width"] * dims["height"] <= 2048 * 2048


def test_bad_size_is_the_clients_error(fake):
    state, base = fake
    error = failure_of(base, {"size": "huge"})
    assert isinstance(error, InvalidRequest)
    assert error.status == 400 and error.param == "size"
    assert state.requests == []


def test_out_of_bfl_credits_is_the_operators_problem(fake):
    state, base = fake
    state.fail_next(Failure(status=402, body={"detail": "Insufficient credits"}))
    error = failure_of(base, {})
    assert type(error) is ProviderError
    assert error.status == 502 and error.code == "provider_out_of_credits"
    assert error.provider == "bfl" and error.upstream_status == 402
    text = error.to_body()["error"]["message"]
    assert "Insufficient credits" in text
    assert "Black Forest Labs account has run out of credits" in text
    assert "operator must top it up at https://dashboard.bfl.ai" in text
    assert "not about your Layers credits" in text
    assert not error.retryable


def test_too_many_active_tasks_is_retryable_with_a_delay(fake):
    state, base = fake
    state.fail_next(
        Failure(status=429, body={"detail": "Too many active tasks"}, headers={"retry-after": "3"})
    )
    error = failure_of(base, {})
    assert isinstance(error, ProviderRateLimited)
    assert error.status == 429 and error.retry_after == 3.0 and error.retryable
    assert "Too many active tasks" in error.message
    assert error.headers["retry-after"] == "3"

    state.fail_next(Failure(status=429, body={"detail": "Too many active tasks"}))
    error = failure_of(base, {})
    assert isinstance(error, ProviderRateLimited)
    assert error.retry_after == 2.0  # BFL sends no delay; a slot frees within seconds


def test_validation_error_quotes_bfls_fields(fake):
    state, base = fake
    detail = [{"loc": ["body", "width"], "msg": "must be a multiple of 16", "type": "value_error"}]
    state.fail_next(Failure(status=422, body={"detail": detail}))
    error = failure_of(base, {})
    assert isinstance(error, ProviderBadRequest)
    assert error.status == 400 and error.upstream_status == 422
    assert "bfl returned HTTP 422: width: must be a multiple of 16" in error.message


def test_the_fake_rejects_what_bfl_would(fake):
    # The adapter never sends these; the fake still answers like BFL when a client does.
    state, base = fake

    async def go() -> httpx.Response:
        async with httpx.AsyncClient() as http:
            return await http.post(
                f"{base}/flux-2-pro",
                json={"prompt": "x", "width": 1000, "model": "m"},
                headers={"x-key": "k"},
            )

    response = asyncio.run(go())
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "model"]


@pytest.mark.parametrize(
    ("status", "kind", "layers_status"),
    [
        (500, ProviderServerError, 502),
        (503, ProviderUnavailable, 503),
        (400, ProviderBadRequest, 400),
    ],
)
def test_http_errors_map_to_layers_errors(fake, status, kind, layers_status):
    state, base = fake
    state.fail_next(Failure(status=status, body={"message": f"upstream says {status}"}))
    error = failure_of(base, {})
    assert isinstance(error, kind)
    assert error.status == layers_status and error.provider == "bfl"
    assert f"upstream says {status}" in error.message


def test_a_missing_key_is_an_auth_error(fake):
    state, base = fake
    error = failure_of(base, {}, credential=None)
    assert isinstance(error, ProviderAuthError)
    assert error.status == 502 and error.upstream_status == 403
    assert "Not authenticated" in error.message
    assert "layers providers set bfl" in (error.hint or "")


@pytest.mark.parametrize("status", ["Content Moderated", "Request Moderated"])
def test_moderated_tasks_are_bad_requests(fake, status):
    state, base = fake
    details = {"Moderation Reasons": ["Derivative Works Filter"]}
    state.fail_next(Failure(body={"task_status": status, "details": details}))
    error = failure_of(base, {})
    assert isinstance(error, ProviderBadRequest)
    assert error.status == 400 and error.code == "content_policy_violation"
    assert status in error.message and "Derivative Works Filter" in error.message
    assert not by_method(state, "GET", "/delivery/")


@pytest.mark.parametrize("status", ["Error", "Failed", "Task not found"])
def test_failed_tasks_are_retryable_server_errors(fake, status):
    state, base = fake
    state.fail_next(Failure(body={"task_status": status}))
    error = failure_of(base, {})
    assert isinstance(error, ProviderServerError)
    assert error.status == 502 and error.retryable
    assert repr(status) in error.message


def test_one_failed_task_fails_the_whole_request(fake):
    state, base = fake
    state.fail_next(Failure(body={"task_status": "Pending"}))  # the first task never finishes
    state.fail_next(Failure(body={"task_status": "Error"}))
    error = failure_of(base, {"n": 2}, timeout=3.0)
    assert isinstance(error, ProviderServerError)  # not a timeout: the sibling was cancelled


def test_a_task_that_never_finishes_times_out(fake):
    state, base = fake
    state.fail_next(Failure(body={"task_status": "Pending"}))
    error = failure_of(base, {}, timeout=0.3)
    assert isinstance(error, ProviderTimeout)
    assert error.status == 504 and error.provider == "bfl"
    assert by_method(state, "GET", "/v1/get_result")  # it was polling when time ran out


def test_a_slow_submit_times_out(fake):
    state, base = fake
    state.fail_next(Failure(delay=0.8))
    error = failure_of(base, {}, timeout=0.3)
    assert isinstance(error, ProviderTimeout)
    assert "0.3 s" in error.message


def test_malformed_json_is_a_server_error(fake):
    state, base = fake
    state.fail_next(Failure(malformed=True))
    error = failure_of(base, {})
    assert isinstance(error, ProviderServerError)
    assert "bfl" in error.message and "not a JSON object" in error.message

    state.fail_next(Failure(body={"task_status": "malformed"}))
    error = failure_of(base, {})
    assert isinstance(error, ProviderServerError)
    assert "not a JSON object" in error.message


def test_an_expired_delivery_url_is_a_server_error(fake):
    state, base = fake
    state.fail_next(Failure(body={"delivery_status": 403}))
    error = failure_of(base, {})
    assert isinstance(error, ProviderServerError)
    assert "download failed" in error.message and "403" in error.message


def test_polling_url_without_id_gets_one():
    from layers_cli.providers.bfl import _with_id

    assert _with_id("https://h/v1/get_result", "abc") == "https://h/v1/get_result?id=abc"
    assert _with_id("https://h/v1/get_result?id=x", "abc") == "https://h/v1/get_result?id=x"


def test_chat_stream_and_embed_are_capability_errors():
    adapter = get_adapter("bfl")
    call = UpstreamCall(body={}, model=model_info("flux-2-pro"), upstream_model="flux-2-pro")

    async def consume() -> None:
        async for _ in adapter.stream(call):
            pass

    for attempt in (adapter.complete(call), consume(), adapter.embed(call)):
        with pytest.raises(CapabilityError) as info:
            asyncio.run(attempt)
        assert info.value.param == "model" and info.value.status == 400
        assert "/v1/images/generations" in info.value.message
