"""Running the `layers` CLI as a user types it, and a service on the same data home for
assertions (conftest's autouse `isolated_home` has already pointed both at a temp dir)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from layers_cli.cli import app
from layers_cli.service import Layers
from layers_cli.settings import load_settings

runner = CliRunner()


def run(*args: str, **kw: Any) -> Result:
    return runner.invoke(app, list(args), catch_exceptions=False, **kw)


@pytest.fixture
def svc() -> Iterator[Layers]:
    """A service for assertions; import it into a test module to use it as a fixture."""
    s = Layers(load_settings())
    yield s
    s.close()
