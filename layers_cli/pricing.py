"""Pure money math. 1 credit = $0.01; the database counts integer micro-credits.

    credits = base USD × (1 + markup) / $0.01

so one micro-credit is $0.00000001 and ``MICRO_PER_USD`` is 10⁸. Prices are Decimals from the
catalog; every result is rounded *up* to a whole micro-credit once, at the end, so the math is
exact and never a float.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING

from .errors import InvalidRequest

if TYPE_CHECKING:
    from .catalog import ModelInfo
    from .catalog.model import Prices
    from .providers.base import Usage

MICRO_PER_CREDIT = 1_000_000
MICRO_PER_USD = 100 * MICRO_PER_CREDIT
MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class Line:
    """One priced component: ``quantity`` units at ``unit_price`` USD (per 1M tokens or image)."""

    label: str
    quantity: int
    unit_price: Decimal
    per: str  # "1M tokens" or "image"
    usd: Decimal


@dataclass(frozen=True)
class Charge:
    """The priced breakdown of a request: base USD, markup, and the credits it costs."""

    lines: list[Line] = field(default_factory=list)
    markup: Decimal = Decimal(0)

    @cached_property
    def base_usd(self) -> Decimal:
        return sum((line.usd for line in self.lines), Decimal(0))

    @cached_property
    def usd(self) -> Decimal:
        """What the user pays in USD (base with markup), exact."""
        return self.base_usd * (1 + self.markup)

    @cached_property
    def micro(self) -> int:
        """Credits charged, in micro-credits, rounded up once."""
        return int((self.usd * MICRO_PER_USD).to_integral_value(rounding=ROUND_CEILING))

    @cached_property
    def base_micro(self) -> int:
        return int((self.base_usd * MICRO_PER_USD).to_integral_value(rounding=ROUND_CEILING))


def markup_for(model: ModelInfo, default: Decimal) -> Decimal:
    return model.markup if model.markup is not None else default


def _token_line(label: str, tokens: int, price: Decimal) -> Line:
    return Line(label, tokens, price, "1M tokens", Decimal(tokens) * price / MILLION)


def charge(model: ModelInfo, usage: Usage, markup: Decimal) -> Charge:
    """The actual cost of a request from its usage (OpenAI semantics).

    Uncached input at the input price, cache reads at the cache-read price, cache writes at
    the cache-write price, completion (reasoning included) at the output price, images per
    image. A model without a cache price bills those tokens as plain input.
    """
    p = model.prices
    cache_read_price = p.cache_read if p.cache_read is not None else p.input
    cache_write_price = p.cache_write if p.cache_write is not None else p.input
    uncached = max(0, usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens)
    lines: list[Line] = []
    if usage.prompt_tokens or model.type != "image":
        lines.append(_token_line("input", uncached, p.input))
    if usage.cached_tokens:
        lines.append(_token_line("cached input", usage.cached_tokens, cache_read_price))
    if usage.cache_write_tokens:
        lines.append(_token_line("cache write", usage.cache_write_tokens, cache_write_price))
    if model.type == "language" or usage.completion_tokens:
        lines.append(_token_line("output", usage.completion_tokens, p.output))
    if usage.images:
        per_image = p.per_image or Decimal(0)
        lines.append(Line("images", usage.images, per_image, "image", usage.images * per_image))
    return Charge(lines=lines, markup=markup)


@lru_cache(maxsize=1024)
def _integer_prices(prices: Prices, markup: Decimal) -> tuple[int, ...]:
    """The prices over one common denominator, and the markup as a ratio, so that a charge
    is integer arithmetic: exactly what `Charge` computes in Decimals, without Decimals
    on the request path (they cost ~20 µs per request)."""
    cache_read = prices.cache_read if prices.cache_read is not None else prices.input
    cache_write = prices.cache_write if prices.cache_write is not None else prices.input
    ratios = [
        Decimal(p).as_integer_ratio()
        for p in (prices.input, cache_read, cache_write, prices.output, prices.per_image or 0)
    ]
    denominator = math.lcm(*(d for _, d in ratios))
    numerators = [n * (denominator // d) for n, d in ratios]
    markup_n, markup_d = Decimal(markup).as_integer_ratio()
    return (*numerators, denominator, markup_n + markup_d, markup_d)


def charge_micro(model: ModelInfo, usage: Usage, markup: Decimal) -> tuple[int, int]:
    """``(base_micro, micro)`` of `charge` (same rules, same rounding), in integers."""
    return _micro(
        model,
        markup,
        uncached=max(0, usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens),
        cached=usage.cached_tokens,
        written=usage.cache_write_tokens,
        output=usage.completion_tokens,
        images=usage.images,
    )


def quote_micro(
    model: ModelInfo, prompt_tokens: int, max_output_tokens: int, markup: Decimal, images: int = 0
) -> int:
    """The credits `quote` would hold, in integers (every request pays it: no `Usage`)."""
    return _micro(model, markup, uncached=prompt_tokens, output=max_output_tokens, images=images)[1]


def _micro(
    model: ModelInfo,
    markup: Decimal,
    *,
    uncached: int,
    output: int,
    images: int,
    cached: int = 0,
    written: int = 0,
) -> tuple[int, int]:
    p_in, p_read, p_write, p_out, p_image, denominator, up_n, up_d = _integer_prices(
        model.prices, markup
    )
    # micro-credits = USD × 10^8; token prices are per 10^6 tokens → × 100
    scaled = (
        100 * (uncached * p_in + cached * p_read + written * p_write + output * p_out)
        + MICRO_PER_USD * images * p_image
    )
    return -(-scaled // denominator), -(-scaled * up_n // (denominator * up_d))


def quote(
    model: ModelInfo, prompt_tokens: int, max_output_tokens: int, markup: Decimal, images: int = 0
) -> Charge:
    """The worst case of a request, held before the provider is called: every prompt token
    uncached and the full output allowance used."""
    from .providers.base import Usage

    return charge(
        model,
        Usage(prompt_tokens=prompt_tokens, completion_tokens=max_output_tokens, images=images),
        markup,
    )


_AMOUNT = re.compile(
    r"^\s*(\$)?\s*([0-9][0-9_,]*(?:\.[0-9]+)?|\.[0-9]+)\s*(credits?|usd)?\s*$", re.I
)


def parse_credits(text: str | int) -> int:
    """``"500"`` → 500 credits; ``"$5"`` or ``"5usd"`` → 500 credits; returned as micro-credits.

    Zero, negative and non-numeric amounts are refused with a message that shows the forms.
    """
    raw = str(text)
    if raw.strip().lstrip("$").strip().startswith("-"):
        raise InvalidRequest(f"The amount must be positive, got '{raw}'.", param="amount")
    match = _AMOUNT.match(raw)
    if not match:
        raise InvalidRequest(
            f"'{raw}' is not an amount.",
            hint="Give credits (`500`) or dollars (`$5`); 1 credit = $0.01.",
            param="amount",
        )
    dollars = bool(match.group(1)) or (match.group(3) or "").lower() == "usd"
    try:
        value = Decimal(match.group(2).replace(",", "").replace("_", ""))
    except InvalidOperation as exc:  # pragma: no cover - the regex already checked
        raise InvalidRequest(f"'{raw}' is not an amount.", param="amount") from exc
    micro = value * (MICRO_PER_USD if dollars else MICRO_PER_CREDIT)
    if micro != micro.to_integral_value():
        raise InvalidRequest(f"'{raw}' is finer than one micro-credit.", param="amount")
    if micro <= 0:
        raise InvalidRequest(f"The amount must be positive, got '{raw}'.", param="amount")
    return int(micro)


def format_credits(micro: int) -> str:
    """Micro-credits as credits for people, exact: ``3360000`` → ``"3.36"``,
    ``1000001`` → ``"1.000001"`` (at least two decimals, never rounded)."""
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), MICRO_PER_CREDIT)
    digits = f"{frac:06d}".rstrip("0").ljust(2, "0")
    return f"{sign}{whole:,}.{digits}"


def format_usd(micro: int) -> str:
    value = Decimal(micro) / MICRO_PER_USD
    if micro and abs(value) < Decimal("0.01"):
        return f"${value.normalize():f}"
    return f"${value:,.2f}" if abs(value) >= 1 else f"${value:.4f}".rstrip("0").rstrip(".")


def micro_to_credits(micro: int) -> float:
    """For JSON output only: a float view of an exact integer (never stored, never summed)."""
    return micro / MICRO_PER_CREDIT


def micro_to_usd(micro: int) -> float:
    return micro / MICRO_PER_USD
