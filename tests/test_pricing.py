"""The request path prices in integers (`charge_micro`); the breakdown users read prices in
Decimals (`charge`). They must agree to the micro-credit, for every price in the catalog and
for any usage and markup."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from layers_cli.catalog import load_catalog
from layers_cli.catalog.model import Prices
from layers_cli.pricing import charge, charge_micro, quote, quote_micro
from layers_cli.providers.base import Usage

CATALOG = load_catalog()
MODELS = CATALOG.list()

prices = st.decimals(min_value=0, max_value=500, places=4, allow_nan=False, allow_infinity=False)
markups = st.decimals(min_value=0, max_value=3, places=3, allow_nan=False, allow_infinity=False)


@st.composite
def usages(draw: st.DrawFn) -> Usage:
    prompt = draw(st.integers(0, 2_000_000))
    cached = draw(st.integers(0, prompt))
    written = draw(st.integers(0, prompt - cached))
    completion = draw(st.integers(0, 200_000))
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        cache_write_tokens=written,
        reasoning_tokens=draw(st.integers(0, completion)),
        images=draw(st.integers(0, 10)),
    )


@settings(max_examples=300)
@given(model=st.sampled_from(MODELS), usage=usages(), markup=markups)
def test_integer_charge_equals_the_decimal_breakdown_for_every_catalog_model(model, usage, markup):
    exact = charge(model, usage, markup)
    assert charge_micro(model, usage, markup) == (exact.base_micro, exact.micro)


@settings(max_examples=300)
@given(
    input_=prices,
    output=prices,
    cache_read=st.none() | prices,
    cache_write=st.none() | prices,
    per_image=st.none() | prices,
    usage=usages(),
    markup=markups,
)
def test_integer_charge_equals_the_decimal_breakdown_for_any_prices(
    input_, output, cache_read, cache_write, per_image, usage, markup
):
    model = replace(
        MODELS[0],
        prices=Prices(
            input=input_,
            output=output,
            cache_read=cache_read,
            cache_write=cache_write,
            per_image=per_image,
        ),
    )
    exact = charge(model, usage, markup)
    assert charge_micro(model, usage, markup) == (exact.base_micro, exact.micro)
    held = quote(model, usage.prompt_tokens, usage.completion_tokens, markup, usage.images)
    assert (
        quote_micro(model, usage.prompt_tokens, usage.completion_tokens, markup, usage.images)
        == held.micro
    )


def test_the_documented_example():
    # README: Sonnet 4.5, 2,000 in + 1,000 out = $0.021 base, x1.6 = 3.36 credits.
    model = CATALOG.resolve("anthropic/claude-sonnet-4.5")
    usage = Usage(prompt_tokens=2000, completion_tokens=1000)
    assert charge_micro(model, usage, Decimal("0.6")) == (2_100_000, 3_360_000)
