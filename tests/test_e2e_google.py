"""The openai SDK → layers serve → a fake Gemini API on loopback: translation, billing of the
provider-reported usage, retries, fallbacks and error mapping."""

from __future__ import annotations

import json

import openai
import pytest

from tests.fakes import Failure, FakeState
from tests.fakes.google import create_app as fake_google
from tests.support.e2e import JSON_SCHEMA_DRAFT_07, weather_tool
from tests.support.gateway import running_gateway, write_config
from tests.support.servers import serve_app

MODEL = "google/gemini-2.5-flash"


@pytest.fixture
def fake():
    state = FakeState()
    with serve_app(fake_google(state)) as url:
        yield state, url + "/v1beta"


@pytest.fixture
def gw(tmp_path, fake, monkeypatch):
    state, url = fake
    home = tmp_path / "home"
    write_config(
        home,
        f'[providers.google]\nbase_url = "{url}"\n\n'
        '[fallbacks]\n"google/gemini-2.5-pro" = ["openai/gpt-4o-mini"]\n',
    )
    monkeypatch.setenv("GEMINI_API_KEY", "test-gemini-key")
    with running_gateway(home, offline=False) as handle:
        yield handle


def test_chat_goes_to_gemini_and_bills_its_reported_usage(gw, fake):
    state, _ = fake
    before = gw.balance_micro()
    completion = gw.client().chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Say hello"},
        ],
        max_tokens=50,
    )
    sent = state.last
    assert sent["headers"]["x-goog-api-key"] == "test-gemini-key"
    assert sent["json"]["systemInstruction"]["parts"][0]["text"] == "Be terse."
    assert completion.model_extra["layers"]["simulated"] is False
    assert completion.usage.prompt_tokens > 0
    svc = gw.service()
    row = svc.get_request(completion.model_extra["layers"]["request_id"])
    assert row["provider"] == "google" and row["upstream_model"]
    assert row["prompt_tokens"] == completion.usage.prompt_tokens
    assert before - svc.balance()["balance_micro"] == row["credits_micro"] > 0
    svc.close()


def test_streamed_tool_call_through_the_gateway(gw):
    tool = weather_tool(**{"$schema": JSON_SCHEMA_DRAFT_07, "additionalProperties": False})
    chunks = list(
        gw.client().chat.completions.create(
            model=MODEL,
            stream=True,
            tools=[tool],
            messages=[{"role": "user", "content": "Weather in Paris?"}],
        )
    )
    deltas = [d for c in chunks if c.choices for d in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].function.name == "get_weather" and deltas[0].id
    args = "".join(d.function.arguments or "" for d in deltas)
    assert "city" in json.loads(args)
    assert [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ] == ["tool_calls"]
    assert chunks[-1].usage.prompt_tokens > 0


def test_overloaded_upstream_is_retried_invisibly(gw, fake):
    state, _ = fake
    state.fail_next(Failure(status=503))
    completion = gw.client().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=20
    )
    assert completion.choices[0].message.content
    assert len(state.requests) == 2


def test_rate_limit_is_passed_on_with_retry_delay_and_charges_nothing(gw, fake):
    state, _ = fake
    state.fail_next(Failure(status=429), times=3)
    before = gw.balance_micro()
    with pytest.raises(openai.RateLimitError) as err:
        gw.client().chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=20
        )
    assert "google" in err.value.body["message"]
    assert err.value.response.headers["retry-after"] == "12"
    assert gw.balance_micro() == before


def test_bad_credential_tells_the_operator_what_to_run(gw, fake):
    state, _ = fake
    state.fail_next(
        Failure(
            status=403,
            body={"error": {"code": 403, "message": "denied", "status": "PERMISSION_DENIED"}},
        )
    )
    with pytest.raises(openai.InternalServerError) as err:
        gw.client(max_retries=0).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=20
        )
    assert err.value.status_code == 502
    assert "layers providers set google" in err.value.body["message"]
    assert "topup" not in err.value.body["message"]


def test_fallback_model_serves_and_is_billed(gw, fake):
    state, _ = fake
    state.fail_next(Failure(status=500), times=3)
    completion = gw.client().chat.completions.create(
        model="google/gemini-2.5-pro", messages=[{"role": "user", "content": "hi"}], max_tokens=20
    )
    layers = completion.model_extra["layers"]
    assert layers["model"] == "openai/gpt-4o-mini"
    assert layers["fallback_from"] == "google/gemini-2.5-pro"
    svc = gw.service()
    assert svc.get_request(layers["request_id"])["model"] == "openai/gpt-4o-mini"
    svc.close()
