"""`layers providers`: upstream credentials (keyring first, environment second).

Secrets are read with hidden input or from a named environment variable and go straight to
the keyring; nothing here prints them.
"""

from __future__ import annotations

import os

import typer

from ..errors import InvalidRequest
from . import render

JSON = typer.Option(False, "--json", help="Print JSON (stable keys) instead of a table.")

app = typer.Typer(
    help="Provider credentials: live providers versus the offline simulator.", no_args_is_help=True
)


def _complete_provider(incomplete: str) -> list[str]:
    from ..providers import CREDENTIAL_ENV

    return [name for name in CREDENTIAL_ENV if name.startswith(incomplete)]


@app.command("list")
def list_(ctx: typer.Context, json: bool = JSON) -> None:
    """Show each provider as live or simulated, and where its credential comes from."""
    providers = ctx.obj.service.provider_status()
    if json:
        render.json_out(
            [{k: p.get(k) for k in ("name", "status", "source", "base_url")} for p in providers]
        )
        return
    render.table(
        ["Provider", "Status", "Credential", "Base URL"],
        [
            [
                p["name"],
                render.styled(p["status"], "green" if p["status"] == "live" else "yellow"),
                p["source"] if p["source"] != "none" else "none",
                p["base_url"],
            ]
            for p in providers
        ],
        caption="Simulated providers are served by the offline simulator.",
    )


@app.command("set")
def set_(
    ctx: typer.Context,
    name: str = typer.Argument(
        ...,
        metavar="NAME",
        help="Provider name (see `layers providers list`).",
        autocompletion=_complete_provider,
    ),
    from_env: str | None = typer.Option(
        None, "--from-env", metavar="VAR", help="Read the key from this environment variable."
    ),
) -> None:
    """Store a provider's API key in the OS keyring (asked with hidden input)."""
    svc = ctx.obj.service
    svc._known_provider(name)
    if from_env:
        secret = os.environ.get(from_env, "")
        if not secret.strip():
            raise InvalidRequest(
                f"The environment variable {from_env} is not set or empty; nothing was stored.",
                hint=f"Export it first, or run `layers providers set {name}` to type the key.",
            )
    else:
        secret = typer.prompt(f"{name} API key", hide_input=True)
    svc.set_provider_credential(name, secret)
    render.line(
        f"Stored the {name} credential in the keyring; {name} models are live from the next "
        "`layers serve` start."
    )
    render.note(f"Check it with `layers providers test {name}`.")


@app.command()
def remove(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", autocompletion=_complete_provider),
) -> None:
    """Delete a provider's key from the keyring."""
    still = ctx.obj.service.remove_provider_credential(name)
    render.line(f"Removed the {name} credential from the keyring.")
    if still:
        render.warn(f"{still[0]} is set in the environment, so {name} stays live.")


@app.command()
def test(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", autocompletion=_complete_provider),
    json: bool = JSON,
) -> None:
    """Make one cheap call to a provider and print the latency and the outcome."""
    result = ctx.obj.service.test_provider(name)
    if json:
        render.json_out(
            {"provider": name, **{k: result.get(k) for k in ("ok", "latency_ms", "message")}}
        )
    elif result["ok"]:
        render.line(
            f"{name}: OK in {round(result['latency_ms']):,} ms. {result.get('message') or ''}"
        )
    if not result["ok"]:
        if not json:
            message = (result.get("message") or "the call failed").rstrip(".")
            took = result.get("latency_ms")
            after = f" (after {round(took):,} ms)" if took is not None else ""
            render.error(f"{name} test failed{after}: {message}.")
        raise typer.Exit(1)
