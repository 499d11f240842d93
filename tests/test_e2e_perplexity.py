"""The openai SDK → layers serve → a fake Perplexity Sonar API on loopback: citations and
search results reach the client (top level, ``provider_metadata`` and ``url_citation``
annotations), ``<think>`` becomes reasoning, reasoning tokens are billed as completion, and
failures map to OpenAI errors with the ledger untouched.

The fake and the gateways start once per module; each test resets the fake and compares
balances before and after.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from layers_cli.providers.base import Usage
from tests.fakes import Failure, FakeState
from tests.fakes.openai_common import prompt_tokens
from tests.fakes.perplexity import create_app
from tests.support.e2e import (
    DEFAULT_POLICY,
    NO_RETRY_POLICY,
    chat,
    expect_refused,
    module_gateway,
    price,
    provider_config,
    refused_mid_stream,
    reset,
    serve_fakes,
    settled,
)
from tests.support.gateway import GatewayHandle

SONAR = "perplexity/sonar"
REASONING = "perplexity/sonar-reasoning-pro"
KEY = "pplx-e2e"
ENV = {"PERPLEXITY_API_KEY": KEY}
QUESTION = "What is the tallest tower"
CITATIONS = [
    "https://example.com/what-is-the-tallest-tower/1",
    "https://example.com/what-is-the-tallest-tower/2",
]
ANSWER = f"Here is what I found about {QUESTION} [1][2]."


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeState, str]]:
    with serve_fakes({"perplexity": create_app}, suffix="") as started:
        yield started["perplexity"]


@pytest.fixture(scope="module")
def gw(fake, tmp_path_factory) -> Iterator[GatewayHandle]:
    toml = provider_config(DEFAULT_POLICY, {"perplexity": fake[1]})
    yield from module_gateway(tmp_path_factory, "perplexity-e2e", toml, ENV)


@pytest.fixture(scope="module")
def gw_no_retry(fake, tmp_path_factory) -> Iterator[GatewayHandle]:
    toml = provider_config(NO_RETRY_POLICY, {"perplexity": fake[1]})
    yield from module_gateway(tmp_path_factory, "perplexity-e2e-no-retry", toml, ENV)


@pytest.fixture
def state(fake) -> FakeState:
    reset(fake[0])
    return fake[0]


def usage_of(usage: Any) -> Usage:
    return Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        reasoning_tokens=usage.completion_tokens_details.reasoning_tokens or 0,
    )


def ask(gw: GatewayHandle, text: str = QUESTION, model: str = SONAR, **kw: Any) -> Any:
    return chat(gw, model, text, **kw)


def expected_annotations(content: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "url_citation",
            "url_citation": {
                "start_index": content.index(f"[{n}]"),
                "end_index": content.index(f"[{n}]") + 3,
                "url": url,
                "title": f"Source {n} on {QUESTION}",
            },
        }
        for n, url in enumerate(CITATIONS, start=1)
    ]


# ---------------------------------------------------------------- answers


def test_citations_reach_the_client_and_usage_is_billed(gw, state):
    before = gw.balance_micro()
    completion = ask(
        gw,
        extra_body={"search_domain_filter": ["example.com"], "search_recency_filter": "month"},
        web_search_options={"search_context_size": "high"},
    )
    sent = state.last
    assert sent["headers"]["authorization"] == f"Bearer {KEY}"
    wire = sent["json"]
    assert wire["model"] == "sonar" and wire["max_tokens"] == 50
    assert wire["search_domain_filter"] == ["example.com"]
    assert wire["search_recency_filter"] == "month"
    assert wire["web_search_options"] == {"search_context_size": "high"}
    assert "stream_options" not in wire

    message = completion.choices[0].message
    assert message.content == ANSWER
    assert completion.model_extra["citations"] == CITATIONS
    results = completion.model_extra["search_results"]
    assert [r["url"] for r in results] == CITATIONS
    assert results[0]["title"] == f"Source 1 on {QUESTION}"
    meta = completion.model_extra["provider_metadata"]["perplexity"]
    assert meta["citations"] == CITATIONS and meta["search_results"] == results
    assert meta["citation_tokens"] == 120 and meta["num_search_queries"] == 1
    assert meta["search_context_size"] == "high"
    annotations = [a.model_dump(exclude_none=True) for a in message.annotations]
    assert annotations == expected_annotations(ANSWER)

    usage = completion.usage
    assert usage.prompt_tokens == prompt_tokens(wire)
    assert usage.completion_tokens == len(ANSWER.split())
    info = completion.model_extra["layers"]
    assert info["provider"] == "perplexity" and info["simulated"] is False
    row = settled(gw, info["request_id"], before)
    assert row["credits_micro"] == price(gw, SONAR, usage_of(usage))


def test_streamed_answer_ends_with_citations(gw, state):
    before = gw.balance_micro()
    chunks = list(ask(gw, stream=True))
    assert state.last["json"]["stream"] is True
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWER
    notes = [  # not a typed field of a delta: the SDK keeps it as a plain extra
        note
        for c in chunks
        if c.choices
        for note in (c.choices[0].delta.model_extra or {}).get("annotations") or []
    ]
    assert notes == expected_annotations(ANSWER)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert [f for f in finishes if f] == ["stop"]

    last = chunks[-1]
    assert last.choices == []
    assert last.model_extra["citations"] == CITATIONS
    assert [r["url"] for r in last.model_extra["search_results"]] == CITATIONS
    assert last.model_extra["provider_metadata"]["perplexity"]["citations"] == CITATIONS
    assert last.usage.completion_tokens == len(ANSWER.split())
    row = settled(gw, last.model_extra["layers"]["request_id"], before)
    assert not row["estimated"]
    assert row["credits_micro"] == price(gw, SONAR, usage_of(last.usage))


def test_reasoning_model_thinks_apart_and_its_reasoning_is_billed(gw, state):
    thought = f"The user asks about {QUESTION}. Searching."
    before = gw.balance_micro()
    completion = ask(gw, model=REASONING)
    message = completion.choices[0].message
    assert message.content == ANSWER
    assert message.model_extra["reasoning_content"] == thought
    usage = completion.usage
    reasoning = 3 * len(thought.split())  # the fake's count, reported outside completion
    assert usage.completion_tokens_details.reasoning_tokens == reasoning
    assert usage.completion_tokens == len(ANSWER.split()) + reasoning
    row = settled(gw, completion.model_extra["layers"]["request_id"], before)
    assert row["reasoning_tokens"] == reasoning
    assert row["credits_micro"] == price(gw, REASONING, usage_of(usage))

    chunks = list(ask(gw, model=REASONING, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    thinking = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
        for c in chunks
        if c.choices
    )
    assert text == ANSWER and "<think>" not in text
    assert thinking.strip() == thought
    assert chunks[-1].usage.completion_tokens == usage.completion_tokens


def test_consecutive_user_turns_are_merged_for_perplexity(gw, state):
    completion = gw.client().chat.completions.create(
        model=SONAR,
        messages=[
            {"role": "system", "content": "Cite sources."},
            {"role": "user", "content": "Some context."},
            {"role": "user", "content": QUESTION},
        ],
        max_tokens=50,
    )
    roles = [m["role"] for m in state.last["json"]["messages"]]
    assert roles == ["system", "user"]
    assert completion.choices[0].message.content == ANSWER


# ---------------------------------------------------------------- failures


def test_server_error_is_retried_invisibly(gw, state):
    state.fail_next(Failure(status=503))
    before = gw.balance_micro()
    completion = ask(gw)
    assert completion.choices[0].message.content == ANSWER
    assert len(state.requests) == 2
    settled(gw, completion.model_extra["layers"]["request_id"], before)


def test_persistent_500_is_502(gw, state):
    state.fail_next(Failure(status=500), times=3)
    with expect_refused(
        gw,
        openai.InternalServerError,
        status=502,
        contains=("perplexity returned HTTP 500: Internal server error.",),
    ):
        ask(gw)
    assert len(state.requests) == 3


def test_rate_limit_is_passed_on_with_the_retry_delay(gw_no_retry, state):
    state.fail_next(Failure(status=429, headers={"retry-after": "5"}))
    with expect_refused(gw_no_retry, openai.RateLimitError, contains=("perplexity",)) as err:
        ask(gw_no_retry)
    assert err.value.response.headers["retry-after"] == "5"


def test_rejected_credential_tells_the_operator_what_to_run(gw, state):
    state.fail_next(Failure(status=401))
    with expect_refused(
        gw,
        openai.InternalServerError,
        status=502,
        code="provider_auth_error",
        contains=("layers providers set perplexity", "Invalid API key provided."),
    ):
        ask(gw)
    assert len(state.requests) == 1


def test_timeout_is_504(gw_no_retry, state):
    state.fail_next(Failure(delay=1.0))
    with expect_refused(gw_no_retry, openai.InternalServerError, status=504):
        ask(gw_no_retry)


def test_error_event_mid_stream_raises_and_charges_nothing(gw, state):
    state.fail_next(Failure(stream_error_after=2))
    received, error = refused_mid_stream(gw, lambda: ask(gw, stream=True))
    assert received
    assert "perplexity" in error.message
    assert len(state.requests) == 1


def test_malformed_json_is_502(gw, state):
    state.fail_next(Failure(malformed=True), times=3)
    with expect_refused(gw, openai.InternalServerError, status=502, contains=("not valid JSON",)):
        ask(gw)
