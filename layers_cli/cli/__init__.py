"""The `layers` command: a thin typer shell over the `Layers` service facade.

Each command parses its flags, calls one method of `layers_cli.service.Layers` and hands the
result to `render`. A `LayersError` from anywhere below becomes ``Error: message`` plus a hint
on stderr and the error's exit code: never a traceback. The service (and SQLite, rich) are
imported only when a command runs, so ``layers --help`` stays fast.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from ..errors import LayersError

if TYPE_CHECKING:
    from ..service import Layers

COMPLETE_VAR = "_LAYERS_COMPLETE"


class State:
    """Per-invocation state: the ``--home`` flag and the one service built from it."""

    def __init__(self, home: Path | None) -> None:
        self.home = home
        self._service: Layers | None = None

    @property
    def service(self) -> Layers:
        if self._service is None:
            from ..service import Layers
            from ..settings import load_settings

            self._service = Layers(load_settings(home=self.home))
        return self._service

    def close(self) -> None:
        if self._service is not None:
            self._service.close()
            self._service = None


class LayersGroup(TyperGroup):
    """The root group: turns a `LayersError` into a message and an exit code.

    typer builds it with every subcommand in place, so it is also where each parameter gets
    its pydantic-free coercion (see `coerce`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from .coerce import install

        install(self)

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LayersError as exc:
            from . import render

            render.error(exc)
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    name="layers",
    cls=LayersGroup,
    help="Layers: a local-first AI gateway. Projects, keys, credits, models and usage.",
    no_args_is_help=True,
    # click's own help and usage errors, not typer's rich panels: the panels import rich and
    # draw through it, ~40% of a `layers --help` (bench/README). Every group inherits this.
    rich_markup_mode=None,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"layers {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    home: Path | None = typer.Option(
        None,
        "--home",
        help="Data home (database and config.toml); overrides LAYERS_HOME.",
        file_okay=False,
    ),
    version: bool = typer.Option(
        False, "--version", help="Show the version and exit.", callback=_version, is_eager=True
    ),
) -> None:
    """Layers: a local-first AI gateway. Projects, keys, credits, models and usage."""
    state = State(home)
    ctx.obj = state
    ctx.call_on_close(state.close)


def _register() -> None:
    from . import admin, completion, credits, keys, models, projects, providers, usage

    admin.register(app)
    app.add_typer(projects.app, name="projects")
    app.add_typer(keys.app, name="keys")
    app.add_typer(credits.app, name="credits")
    app.add_typer(admin.ledger_app, name="ledger")
    app.add_typer(models.app, name="models")
    usage.register(app)
    app.add_typer(usage.requests_app, name="requests")
    app.add_typer(providers.app, name="providers")
    app.add_typer(completion.app, name="completion")
    try:
        from .serve import register as _register_serve
    except ImportError:  # `layers serve` arrives with the gateway
        pass
    else:
        _register_serve(app)


_register()


def main() -> None:
    """Console-script entry point: always called `layers`, whatever the launcher."""
    if os.environ.get(COMPLETE_VAR):
        from .completion import enable_runtime

        enable_runtime()
    app(prog_name="layers", complete_var=COMPLETE_VAR)


__all__ = ["app", "main"]
