"""The openai SDK → POST /v1/images/generations on layers serve → fake Black Forest Labs
(submit, poll until Ready, download the signed sample) and fake Recraft servers on loopback:
real image bytes back as base64, billing per image, and the image providers' failure modes
(402 out of provider credits, moderation, never ready, rate limits, bad keys) with the ledger
untouched.

The fakes and the gateways start once per module; each test resets the fakes and compares
balances before and after. BFL's poll pacing is shortened for these tests (see `fast_polls`).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from PIL import Image

from layers_cli.providers import bfl as bfl_adapter
from layers_cli.providers.base import Usage
from tests.fakes import Failure, FakeState
from tests.fakes.bfl import READY_AFTER
from tests.fakes.bfl import create_app as fake_bfl
from tests.fakes.recraft import create_app as fake_recraft
from tests.support.e2e import (
    DEFAULT_POLICY,
    NO_RETRY_POLICY,
    Fakes,
    expect_refused,
    marked_up_micro,
    module_gateway,
    price,
    provider_config,
    reset,
    serve_fakes,
    settled,
)
from tests.support.gateway import GatewayHandle

FLUX = "bfl/flux-2-pro"
RECRAFT = "recraft/recraft-v3"
RECRAFT_VECTOR = "recraft/recraft-v3-vector"
KEYS = {"BFL_API_KEY": "bfl-e2e", "RECRAFT_API_KEY": "recraft-e2e"}
PROMPT = "a lighthouse at dusk"


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    with serve_fakes({"bfl": fake_bfl, "recraft": fake_recraft}) as started:
        yield started


def config(fakes: Fakes, head: str) -> str:
    return provider_config(head, {name: url for name, (_, url) in fakes.items()})


@pytest.fixture(scope="module")
def gw(fakes, tmp_path_factory) -> Iterator[GatewayHandle]:
    """The default policy: 2 retries (3 attempts), 1 s upstream timeout."""
    toml = config(fakes, DEFAULT_POLICY)
    yield from module_gateway(tmp_path_factory, "images-e2e", toml, KEYS)


@pytest.fixture(scope="module")
def gw_no_retry(fakes, tmp_path_factory) -> Iterator[GatewayHandle]:
    """No retries and a short timeout: terminal mappings without waiting."""
    toml = config(fakes, NO_RETRY_POLICY)
    yield from module_gateway(tmp_path_factory, "images-e2e-no-retry", toml, KEYS)


@pytest.fixture(autouse=True)
def fast_polls(fakes, monkeypatch):
    """The registered BFL adapter polls after 0.25 s, growing ×1.5 up to 1.5 s: with the
    fake's two Pending answers that is ~0.6 s per image. Tests poll every 10-20 ms."""
    monkeypatch.setattr(bfl_adapter.ADAPTER, "poll_initial", 0.01)
    monkeypatch.setattr(bfl_adapter.ADAPTER, "poll_max", 0.02)
    reset(*(state for state, _ in fakes.values()))


@pytest.fixture
def bfl(fakes) -> FakeState:
    return fakes["bfl"][0]


@pytest.fixture
def recraft(fakes) -> FakeState:
    return fakes["recraft"][0]


def generate(gw: GatewayHandle, model: str = FLUX, **kw: Any) -> Any:
    kw.setdefault("prompt", PROMPT)
    return gw.client().images.generate(model=model, **kw)


# ---------------------------------------------------------------- Black Forest Labs


def test_bfl_submit_poll_download_returns_png_bytes_and_bills_per_image(gw, bfl):
    before = gw.balance_micro()
    result = generate(gw, n=2, size="512x512", response_format="b64_json", quality="hd")
    submits = [r for r in bfl.requests if r["method"] == "POST"]
    polls = [r for r in bfl.requests if r["path"] == "/v1/get_result"]
    downloads = [r for r in bfl.requests if r["path"].startswith("/delivery/")]
    assert [s["path"] for s in submits] == ["/v1/flux-2-pro"] * 2  # one task per image
    assert submits[0]["json"] == {
        "prompt": PROMPT,
        "width": 512,
        "height": 512,
        "output_format": "png",
    }
    assert all(r["headers"]["x-key"] == "bfl-e2e" for r in submits + polls)
    assert len(polls) == 2 * (READY_AFTER + 1)
    assert len(downloads) == 2
    assert all("x-key" not in d["headers"] for d in downloads)  # signed URL, no key

    assert len(result.data) == 2
    for item in result.data:
        raw = base64.b64decode(item.b64_json)
        assert raw.startswith(b"\x89PNG\r\n\x1a\n")
        assert Image.open(io.BytesIO(raw)).size == (512, 512)
    info = result.model_extra["layers"]
    assert info["provider"] == "bfl" and info["simulated"] is False
    row = settled(gw, info["request_id"], before)
    assert row["images"] == 2 and row["provider"] == "bfl"
    assert row["credits_micro"] == price(
        gw, FLUX, Usage(prompt_tokens=row["prompt_tokens"], images=2)
    )
    assert row["credits_micro"] == marked_up_micro("0.03", 2)


def test_bfl_says_when_it_changed_the_size(gw, bfl):
    result = generate(gw, model="bfl/flux-pro-1.1", size="1000x1000")
    assert bfl.requests[0]["json"]["width"] == 992  # multiples of 32
    meta = result.model_extra["provider_metadata"]["bfl"]
    assert "992x992" in meta["size_note"]


def test_bfl_out_of_credits_is_the_operators_problem_not_the_users(gw, bfl):
    bfl.fail_next(Failure(status=402, body={"detail": "Insufficient credits"}))
    with expect_refused(
        gw,
        openai.InternalServerError,
        status=502,
        contains=("Black Forest Labs account", "Insufficient credits", "https://dashboard.bfl.ai"),
        excludes=("layers credits", "topup"),
    ) as err:
        generate(gw)
    body = err.value.body
    assert body["code"] == "provider_out_of_credits" and body["provider"] == "bfl"
    assert len(bfl.requests) == 1  # not retried


def test_bfl_moderation_is_400(gw, bfl):
    bfl.fail_next(Failure(body={"task_status": "Content Moderated", "details": "nsfw"}))
    with expect_refused(
        gw, openai.BadRequestError, contains=("Content Moderated", "Rephrase")
    ) as err:
        generate(gw)
    body = err.value.body
    assert body["code"] == "content_policy_violation" and body["param"] == "prompt"
    assert len([r for r in bfl.requests if r["method"] == "POST"]) == 1


def test_bfl_task_never_ready_is_504(gw_no_retry, bfl):
    bfl.fail_next(Failure(body={"task_status": "Pending"}))
    with expect_refused(
        gw_no_retry,
        openai.InternalServerError,
        status=504,
        code="provider_timeout",
        contains=("bfl did not answer within 0.5 s",),
    ):
        generate(gw_no_retry)
    assert len([r for r in bfl.requests if r["path"] == "/v1/get_result"]) > READY_AFTER + 1


def test_bfl_never_ready_once_is_retried_with_a_new_task(gw, bfl):
    bfl.fail_next(Failure(body={"task_status": "Pending"}))
    before = gw.balance_micro()
    result = generate(gw)
    assert len([r for r in bfl.requests if r["method"] == "POST"]) == 2
    assert base64.b64decode(result.data[0].b64_json).startswith(b"\x89PNG")
    settled(gw, result.model_extra["layers"]["request_id"], before)


def test_bfl_too_many_tasks_is_429_with_a_retry_delay(gw_no_retry, bfl):
    bfl.fail_next(Failure(status=429, body={"detail": "You have too many active tasks."}))
    with expect_refused(
        gw_no_retry, openai.RateLimitError, contains=("too many active tasks",)
    ) as err:
        generate(gw_no_retry)
    assert err.value.response.headers["retry-after"] == "2"  # BFL sends none: the default


def test_bfl_server_error_is_retried_invisibly(gw, bfl):
    bfl.fail_next(Failure(status=500, body={"detail": "Internal Server Error"}))
    before = gw.balance_micro()
    result = generate(gw)
    assert len([r for r in bfl.requests if r["method"] == "POST"]) == 2
    row = settled(gw, result.model_extra["layers"]["request_id"], before)
    assert row["credits_micro"] == marked_up_micro("0.03", 1)  # billed once


def test_bfl_rejected_key_tells_the_operator_what_to_run(gw, bfl):
    bfl.fail_next(Failure(status=403, body={"detail": "Not authenticated"}))
    with expect_refused(
        gw,
        openai.InternalServerError,
        status=502,
        code="provider_auth_error",
        contains=("layers providers set bfl",),
    ):
        generate(gw)


def test_bfl_malformed_answers_are_502(gw, bfl):
    bfl.fail_next(Failure(malformed=True), times=3)
    with expect_refused(
        gw, openai.InternalServerError, status=502, contains=("not a JSON object",)
    ):
        generate(gw)
    assert len(bfl.requests) == 3


# ---------------------------------------------------------------- Recraft


def test_recraft_returns_png_bytes_and_bills_per_image(gw, recraft):
    before = gw.balance_micro()
    result = generate(gw, model=RECRAFT, n=2, size="1024x1024", style="vivid")
    sent = recraft.last
    assert sent["path"] == "/v1/images/generations"
    assert sent["headers"]["authorization"] == "Bearer recraft-e2e"
    assert sent["json"] == {
        "prompt": PROMPT,
        "model": "recraftv3",
        "response_format": "b64_json",
        "size": "1024x1024",
        "n": 2,
    }  # DALL-E's "vivid" means nothing to Recraft and is dropped
    images = [base64.b64decode(item.b64_json) for item in result.data]
    assert len(images) == 2 and images[0] != images[1]
    assert all(Image.open(io.BytesIO(raw)).size == (1024, 1024) for raw in images)
    assert [item.revised_prompt for item in result.data] == [PROMPT, PROMPT]
    row = settled(gw, result.model_extra["layers"]["request_id"], before)
    assert row["images"] == 2 and row["provider"] == "recraft"
    assert row["credits_micro"] == marked_up_micro("0.04", 2)


def test_recraft_vector_model_returns_svg(gw, recraft):
    before = gw.balance_micro()
    result = generate(gw, model=RECRAFT_VECTOR, size="1024x1024")
    assert recraft.last["json"]["size"] == "1:1"  # vector models take aspect ratios
    svg = base64.b64decode(result.data[0].b64_json)
    assert svg.startswith(b"<svg")
    row = settled(gw, result.model_extra["layers"]["request_id"], before)
    assert row["credits_micro"] == marked_up_micro("0.08", 1)


def test_recraft_out_of_credits_is_502(gw, recraft):
    recraft.fail_next(Failure(status=402, body={"code": "not_enough_credits", "message": "x"}))
    with expect_refused(
        gw,
        openai.InternalServerError,
        status=502,
        code="provider_out_of_credits",
        contains=("Recraft account",),
        excludes=("layers credits", "topup"),
    ):
        generate(gw, model=RECRAFT)


def test_recraft_rejected_key_and_bad_request(gw, recraft):
    recraft.fail_next(Failure(status=401, body="request unauthorized"))
    with expect_refused(
        gw,
        openai.InternalServerError,
        code="provider_auth_error",
        contains=("layers providers set recraft", "request unauthorized"),
    ):
        generate(gw, model=RECRAFT)

    recraft.fail_next(
        Failure(status=400, body={"code": "invalid_prompt", "message": "prompt is too long"})
    )
    with expect_refused(
        gw, openai.BadRequestError, contains=("recraft returned HTTP 400: prompt is too long",)
    ):
        generate(gw, model=RECRAFT)
