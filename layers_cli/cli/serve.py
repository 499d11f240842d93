"""`layers serve`: settings → service → bootstrap → uvicorn running `create_app(service)`."""

from __future__ import annotations

import typer

from ..settings import DEFAULT_PORT


def _say(text: str = "") -> None:
    typer.echo(text, err=False)


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        ctx: typer.Context,
        host: str = typer.Option(None, help="Interface to bind (default 127.0.0.1)."),
        port: int = typer.Option(None, help=f"Port to listen on (default {DEFAULT_PORT})."),
        offline: bool = typer.Option(
            False, "--offline", help="Serve every model from the offline simulator."
        ),
    ) -> None:
        """Run the OpenAI-compatible gateway on this machine."""
        import uvicorn

        from ..db import stop_sqlite_memory_statistics
        from ..errors import LayersError
        from ..server.app import create_app
        from ..server.protocol import UVICORN_OPTIONS
        from ..service import Layers
        from ..settings import load_settings

        stop_sqlite_memory_statistics()  # first: no database is open yet
        root = ctx.find_root()
        home = root.params.get("home") if root.params else None
        try:
            settings = load_settings(
                home=home, host=host, port=port, offline=True if offline else None
            )
            layers = Layers(settings)
            boot = layers.bootstrap()
            released = layers.recover_holds()
            gateway = layers.gateway()
        except LayersError as exc:
            typer.echo(f"Error: {exc.message}" + (f"\n{exc.hint}" if exc.hint else ""), err=True)
            raise typer.Exit(exc.exit_code) from exc

        base = f"http://{settings.host}:{settings.port}/v1"
        _say(f"Layers gateway  {base}")
        _say(f"Data home       {settings.home}")
        if released:
            _say(f"Released {len(released)} hold(s) left by a crashed process.")
        if boot["granted_micro"]:
            _say(
                f"Granted {boot['granted_micro'] // 1_000_000} starter credits "
                f"(${boot['granted_micro'] / 100_000_000:.2f})."
            )
        if boot["secret"]:
            _say("")
            _say("Created project 'default' and an API key (shown once, store it now):")
            _say(f"  {boot['secret']}")
            _say("")
        _say("Providers:")
        for route in gateway.routes.values():
            info = route.describe()
            source = "" if info["status"] == "simulated" else f" ({info['source']})"
            _say(f"  {info['name']:<11} {info['status']}{source}")
        if settings.host not in ("127.0.0.1", "localhost", "::1"):
            _say(f"Warning: listening on {settings.host}, reachable from other machines.")
        _say("Press Ctrl-C to stop (in-flight requests are drained).")
        config = uvicorn.Config(
            create_app(layers, gateway),
            host=settings.host,
            port=settings.port,
            log_level="warning",
            timeout_graceful_shutdown=30,
            access_log=False,
            **UVICORN_OPTIONS,
        )
        _tune_garbage_collector()
        uvicorn.Server(config).run()


def _tune_garbage_collector() -> None:
    """Set for a daemon that serves many small requests at once (issue 5, bench/README).

    Everything built so far lives as long as the daemon: frozen, a full collection never
    walks it again (~47k objects: each full pass took ~25 ms, a pause every request waiting
    then shares). And the youngest objects are collected after 7,000 net allocations instead
    of 700: at 16 requests in flight their live objects crossed 700 every ~40 requests, and
    each pass (~0.2 ms) found them all still in use. Measured over ~11k requests at 16
    connections: 137 ms of collections by default, not one pass with this. Cyclic garbage waits a
    little longer for its pass; the daemon makes almost none.
    """
    import gc

    gc.freeze()
    gc.set_threshold(7_000, 10, 10)
