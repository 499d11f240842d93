"""`layers providers ...`: credentials go to the keyring and are never printed."""

from __future__ import annotations

import json
import socket

import keyring
from keyring.backends import fail

from tests.support.cli import run

SECRET = "sk-test-0123456789abcdefSECRET"


def _status() -> dict[str, dict]:
    result = run("providers", "list", "--json")
    assert result.exit_code == 0, result.output
    return {p["name"]: p for p in json.loads(result.stdout)}


def test_list_everything_simulated_on_a_fresh_machine():
    result = run("providers", "list")
    assert result.exit_code == 0, result.output
    assert "openai" in result.stdout and "simulated" in result.stdout
    status = _status()
    assert {"openai", "anthropic", "google", "perplexity", "bfl", "recraft"} <= set(status)
    assert all(list(p) == ["name", "status", "source", "base_url"] for p in status.values())
    assert {p["status"] for p in status.values()} == {"simulated"}


def test_list_shows_environment_credentials_without_the_secret(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    result = run("providers", "list")
    assert SECRET not in result.output
    assert "env:ANTHROPIC_API_KEY" in result.stdout
    assert _status()["anthropic"] == {
        "name": "anthropic",
        "status": "live",
        "source": "env:ANTHROPIC_API_KEY",
        "base_url": "https://api.anthropic.com/v1",
    }


def test_set_from_env_stores_in_keyring(memory_keyring, monkeypatch):
    monkeypatch.setenv("MY_OPENAI", SECRET)
    result = run("providers", "set", "openai", "--from-env", "MY_OPENAI")
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    assert memory_keyring.store == {("layers", "openai"): SECRET}
    assert _status()["openai"]["status"] == "live"
    assert _status()["openai"]["source"] == "keyring"


def test_set_with_hidden_prompt(memory_keyring):
    result = run("providers", "set", "perplexity", input=SECRET + "\n")
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    assert memory_keyring.store == {("layers", "perplexity"): SECRET}


def test_set_refuses_unknown_provider_and_missing_env(memory_keyring):
    result = run("providers", "set", "acme", input=SECRET + "\n")
    assert result.exit_code == 4
    assert "Unknown provider 'acme'" in result.stderr and "openai" in result.stderr
    result = run("providers", "set", "openai", "--from-env", "NOT_SET_ANYWHERE")
    assert result.exit_code == 2
    assert "NOT_SET_ANYWHERE is not set" in result.stderr
    assert memory_keyring.store == {}


def test_set_without_a_keyring_backend_points_at_the_environment():
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        result = run("providers", "set", "google", input=SECRET + "\n")
    finally:
        keyring.set_keyring(previous)
    assert result.exit_code == 9
    assert "No OS keyring backend" in result.stderr
    assert "GEMINI_API_KEY" in result.stderr
    assert "Traceback" not in result.output


def test_remove(memory_keyring, monkeypatch):
    memory_keyring.store[("layers", "openai")] = SECRET
    result = run("providers", "remove", "openai")
    assert result.exit_code == 0, result.output
    assert memory_keyring.store == {}
    again = run("providers", "remove", "openai")
    assert again.exit_code == 4
    assert "No openai credential is stored" in again.stderr

    memory_keyring.store[("layers", "openai")] = SECRET
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    result = run("providers", "remove", "openai")
    assert result.exit_code == 0
    assert "OPENAI_API_KEY is set in the environment" in result.stderr


def test_test_a_simulated_provider_says_it_has_no_credential():
    result = run("providers", "test", "openai")
    assert result.exit_code == 1
    assert "openai test failed" in result.stderr
    assert "layers providers set openai" in result.stderr
    data = json.loads(run("providers", "test", "openai", "--json").stdout)
    assert list(data) == ["provider", "ok", "latency_ms", "message"]
    assert data["ok"] is False


def test_test_an_unreachable_provider(isolated_home, monkeypatch):
    with socket.socket() as sock:  # a loopback port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    isolated_home.mkdir(parents=True, exist_ok=True)
    (isolated_home / "config.toml").write_text(
        f'[providers.openai]\nbase_url = "http://127.0.0.1:{port}/v1"\n'
    )
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    result = run("providers", "test", "openai")
    assert result.exit_code == 1
    assert "openai test failed" in result.stderr
    assert SECRET not in result.output


def test_test_unknown_provider():
    result = run("providers", "test", "acme")
    assert result.exit_code == 4
    assert "Unknown provider 'acme'" in result.stderr
