"""Credentials end to end: `layers providers set NAME --from-env VAR` stores the key in the
keyring (conftest's in-memory backend), `layers providers list --json` shows the provider live
from the keyring without the secret, and `layers serve` then sends that key to the provider
(a fake on loopback) — while a ``lyr_test_`` key is still served by the simulator and the
provider hears nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from layers_cli.cli import app
from tests.fakes import FakeState
from tests.fakes.anthropic import create_app as fake_anthropic
from tests.fakes.openai import create_app as fake_openai
from tests.support.gateway import running_gateway, write_config
from tests.support.servers import serve_app

SECRET = "sk-from-the-keyring-0123456789SECRET"
PROVIDERS = {  # name → (fake factory, how the fake sees the credential)
    "openai": (fake_openai, lambda headers: headers.get("authorization")),
    "anthropic": (fake_anthropic, lambda headers: headers.get("x-api-key")),
}
MODELS = {"openai": "openai/gpt-6.1-terra", "anthropic": "anthropic/claude-haiku-4.5"}
EXPECTED = {"openai": f"Bearer {SECRET}", "anthropic": SECRET}

runner = CliRunner()


def cli(*args: str) -> Any:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    return result


def status(name: str) -> dict[str, Any]:
    providers = json.loads(cli("providers", "list", "--json").stdout)
    return next(p for p in providers if p["name"] == name)


@pytest.fixture(params=sorted(PROVIDERS))
def provider(request, isolated_home: Path) -> Iterator[tuple[str, FakeState]]:
    """A fake provider whose base URL config.toml points at, in the CLI's data home."""
    name = request.param
    factory, _ = PROVIDERS[name]
    state = FakeState()
    with serve_app(factory(state)) as url:
        write_config(isolated_home, f'[providers.{name}]\nbase_url = "{url}/v1"\n')
        yield name, state


def store_from_env(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_PROVIDER_KEY", SECRET)
    cli("providers", "set", name, "--from-env", "MY_PROVIDER_KEY")
    monkeypatch.delenv("MY_PROVIDER_KEY")  # from now on only the keyring has it


def test_keyring_credential_makes_the_provider_live(
    provider, isolated_home, memory_keyring, monkeypatch
):
    name, state = provider
    assert status(name)["status"] == "simulated"
    store_from_env(name, monkeypatch)
    assert memory_keyring.store == {("layers", name): SECRET}
    shown = status(name)
    assert shown["status"] == "live" and shown["source"] == "keyring"
    assert shown["base_url"].startswith("http://127.0.0.1:")

    with running_gateway(isolated_home, offline=False) as gw:
        completion = gw.client().chat.completions.create(
            model=MODELS[name], messages=[{"role": "user", "content": "hi"}], max_tokens=20
        )
        assert completion.choices[0].message.content == "Echo: hi"
        assert completion.model_extra["layers"]["simulated"] is False
        _, seen = PROVIDERS[name]
        assert seen(state.last["headers"]) == EXPECTED[name]
        svc = gw.service()
        row = svc.get_request(completion.model_extra["layers"]["request_id"])
        assert row["provider"] == name and not row["simulated"]
        svc.close()
    # the secret is in the keyring only: never in the database (nor its WAL)
    for path in isolated_home.glob("layers.db*"):
        assert SECRET.encode() not in path.read_bytes()


def test_test_keys_are_simulated_even_when_the_provider_is_live(
    provider, isolated_home, monkeypatch
):
    name, state = provider
    store_from_env(name, monkeypatch)
    with running_gateway(isolated_home, offline=False) as gw:
        created = json.loads(
            cli("keys", "create", "--project", "playground", "--test", "--json").stdout
        )
        secret = created["secret"]
        assert secret.startswith("lyr_test_")
        client = gw.client(api_key=secret)
        completion = client.chat.completions.create(
            model=MODELS[name], messages=[{"role": "user", "content": "hi"}], max_tokens=20
        )
        assert completion.model_extra["layers"]["simulated"] is True
        chunks = list(
            client.chat.completions.create(
                model=MODELS[name],
                messages=[{"role": "user", "content": "hi"}],
                max_tokens=20,
                stream=True,
            )
        )
        assert chunks[-1].model_extra["layers"]["simulated"] is True
        assert state.requests == []  # the live provider heard nothing

        live = gw.client().chat.completions.create(
            model=MODELS[name], messages=[{"role": "user", "content": "hi"}], max_tokens=20
        )
        assert live.model_extra["layers"]["simulated"] is False
        assert len(state.requests) == 1


def test_removing_the_credential_sends_models_back_to_the_simulator(
    provider, isolated_home, memory_keyring, monkeypatch
):
    name, state = provider
    store_from_env(name, monkeypatch)
    cli("providers", "remove", name)
    assert memory_keyring.store == {}
    assert status(name)["status"] == "simulated"
    with running_gateway(isolated_home, offline=False) as gw:
        completion = gw.client().chat.completions.create(
            model=MODELS[name], messages=[{"role": "user", "content": "hi"}], max_tokens=20
        )
        assert completion.model_extra["layers"]["simulated"] is True
    assert state.requests == []
