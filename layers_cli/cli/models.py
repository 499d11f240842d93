"""`layers models`: the catalog, its list prices, and what a request would cost."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from ..pricing import format_credits, micro_to_credits
from . import render

if TYPE_CHECKING:
    from ..catalog.model import ModelInfo
    from ..pricing import Charge

JSON = typer.Option(False, "--json", help="Print JSON (stable keys) instead of a table.")


def _complete_capability(incomplete: str) -> list[str]:
    from ..catalog.model import CAPABILITIES

    return [c for c in CAPABILITIES if c.startswith(incomplete)]


def _complete_type(incomplete: str) -> list[str]:
    from ..catalog.model import MODEL_TYPES

    return [t for t in MODEL_TYPES if t.startswith(incomplete)]


app = typer.Typer(help="The model catalog: ids, capabilities and prices.", no_args_is_help=True)


def model_json(m: ModelInfo) -> dict[str, Any]:
    p = m.prices
    return {
        "id": m.id,
        "provider": m.provider,
        "upstream_id": m.upstream_id,
        "name": m.display_name,
        "type": m.type,
        "capabilities": sorted(m.capabilities),
        "context_window": m.context_window,
        "default_output_tokens": m.default_output_tokens,
        "max_output_tokens": m.max_output_tokens,
        "dimensions": m.dimensions,
        "prices": {
            "input_per_1m": p.input,
            "output_per_1m": p.output,
            "cache_read_per_1m": p.cache_read,
            "cache_write_per_1m": p.cache_write,
            "per_image": p.per_image,
        },
        "markup": m.markup,
        "lifecycle": m.lifecycle,
        "end_of_life": m.end_of_life,
        "replacement": m.replacement,
        "aliases": list(m.aliases),
    }


def lifecycle_text(m: ModelInfo) -> Any:
    if m.lifecycle == "active":
        return "active"
    text = m.lifecycle
    if m.end_of_life:
        text += f" {m.end_of_life}"
    if m.replacement:
        text += f" → {m.replacement}"
    return render.styled(text, "red" if m.lifecycle == "retired" else "yellow")


def _context(m: ModelInfo) -> str:
    n = m.context_window
    if not n:
        return ""
    return f"{n // 1000:,}K" if n % 1000 == 0 or n >= 10_000 else f"{n:,}"


@app.command("list")
def list_(
    ctx: typer.Context,
    provider: str | None = typer.Option(None, "--provider", help="Only this provider's models."),
    capability: str | None = typer.Option(
        None,
        "--capability",
        help="text, vision, tools, json, stream, cache, thinking, web, image-gen or embed.",
        autocompletion=_complete_capability,
    ),
    type_: str | None = typer.Option(
        None, "--type", help="language, image or embedding.", autocompletion=_complete_type
    ),
    json: bool = JSON,
) -> None:
    """List models with prices in USD per 1M tokens (per image for image models)."""
    svc = ctx.obj.service
    models = svc.list_models(
        provider=provider,
        capability=capability,
        type=type_,
    )
    if json:
        render.json_out([model_json(m) for m in models])
        return
    rows = []
    for m in models:
        p = m.prices
        image = m.type == "image"
        rows.append(
            [
                m.id,
                m.display_name,
                m.type,
                _context(m) if not image else "",
                render.price(p.input) if not image or p.input else "",
                render.price(p.output) if not image or p.output else "",
                render.price(p.cache_read) if p.cache_read is not None else "",
                render.price(p.per_image) if p.per_image is not None else "",
                lifecycle_text(m),
            ]
        )
    date = getattr(svc.catalog, "prices_date", None)
    caption = "USD per 1M tokens; per image for image models. Credits add the markup."
    if date:
        caption = f"List prices as of {date}. " + caption
    render.table(
        ["ID", "Name", "Type", "Context", "Input", "Output", "Cached", "Image", "Status"],
        rows,
        caption=caption,
        right=["Context", "Input", "Output", "Cached", "Image"],
        empty="No models match these filters. Try `layers models list` without them.",
    )


@app.command()
def show(
    ctx: typer.Context, model_id: str = typer.Argument(..., metavar="ID"), json: bool = JSON
) -> None:
    """Show one model: capabilities, limits, prices and lifecycle."""
    svc = ctx.obj.service
    m = svc.get_model(model_id)
    if json:
        render.json_out(model_json(m))
        return
    p = m.prices
    per_m = " / 1M tokens"
    pairs: list[tuple[str, Any]] = [
        ("ID", m.id),
        ("Name", m.display_name),
        ("Provider", f"{m.provider} (upstream id {m.upstream_id})"),
        ("Type", m.type),
        ("Capabilities", ", ".join(sorted(m.capabilities))),
    ]
    if m.type != "image":
        pairs += [
            ("Context window", render.integer(m.context_window) + " tokens"),
            ("Output tokens", f"{m.default_output_tokens:,} default, {m.max_output_tokens:,} max"),
            ("Input", render.price(p.input) + per_m),
            ("Output", render.price(p.output) + per_m),
        ]
        if p.cache_read is not None:
            pairs.append(("Cache read", render.price(p.cache_read) + per_m))
        if p.cache_write is not None:
            pairs.append(("Cache write", render.price(p.cache_write) + per_m))
    if p.per_image is not None:
        pairs.append(("Per image", render.price(p.per_image)))
    if m.dimensions:
        pairs.append(("Dimensions", m.dimensions))
    pairs += [
        ("Markup", render.percent(svc.markup(m))),
        ("Lifecycle", lifecycle_text(m)),
        ("Aliases", ", ".join(m.aliases)),
    ]
    if m.description:
        pairs.append(("About", m.description))
    render.fields(pairs, title=m.display_name)


def charge_json(c: Charge) -> dict[str, Any]:
    return {
        "lines": [
            {
                "label": line.label,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "per": line.per,
                "usd": line.usd,
            }
            for line in c.lines
        ],
        "base_usd": c.base_usd,
        "markup": c.markup,
        "usd": c.usd,
        "micro": c.micro,
        "credits": micro_to_credits(c.micro),
    }


def charge_rows(c: Charge) -> list[list[Any]]:
    """Each priced line, then base, markup, total USD and credits."""
    rows: list[list[Any]] = []
    for line in c.lines:
        unit = "tokens" if line.per == "1M tokens" else "images"
        rows.append(
            [
                line.label,
                f"{line.quantity:,} {unit} × {render.price(line.unit_price)} / {line.per}",
                render.usd(line.usd),
            ]
        )
    rows.append([render.styled("base", "bold"), "provider list price", render.usd(c.base_usd)])
    rows.append(["markup", f"× (1 + {render.percent(c.markup)})", render.usd(c.usd)])
    rows.append(
        [
            render.styled("credits", "bold"),
            f"{render.usd(c.usd)} / $0.01 per credit, rounded up",
            render.styled(f"{format_credits(c.micro)} credits", "bold"),
        ]
    )
    return rows


@app.command()
def price(
    ctx: typer.Context,
    model_id: str = typer.Argument(..., metavar="ID"),
    input: int = typer.Option(0, "--input", help="Input (prompt) tokens, uncached."),
    output: int = typer.Option(0, "--output", help="Output tokens (reasoning included)."),
    cached: int = typer.Option(0, "--cached", help="Input tokens read from the cache."),
    images: int = typer.Option(0, "--images", help="Images generated."),
    json: bool = JSON,
) -> None:
    """Price a request: each line tokens × price, base USD, markup, USD and credits."""
    m, c = ctx.obj.service.price(model_id, input=input, output=output, cached=cached, images=images)
    if json:
        render.json_out({"model": m.id, **charge_json(c)})
        return
    render.table(["", "", "USD"], charge_rows(c), title=f"{m.id}: price breakdown", right=["USD"])
