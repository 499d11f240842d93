"""The model catalog: the shipped data is complete and consistent, ids resolve, errors help.

Config overrides are exercised through a real config.toml read by `load_settings`.
"""

from __future__ import annotations

import tomllib
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

import layers_cli.catalog as catalog_module
from layers_cli.catalog import (
    CAPABILITIES,
    LIFECYCLES,
    MODEL_TYPES,
    Catalog,
    ModelInfo,
    Prices,
    load_catalog,
)
from layers_cli.errors import ConfigError, InvalidRequest, ModelNotFound, ModelRetired
from layers_cli.providers import BUILTIN as PROVIDER_MODULES
from layers_cli.settings import Settings, load_settings

DATA_FILE = Path(catalog_module.__file__).with_name("models.toml")

REQUIRED = {
    "anthropic/claude-sonnet-4.5",
    "anthropic/claude-haiku-4.5",
    "anthropic/claude-opus-4.5",
    "openai/gpt-4o",
    "openai/gpt-4o-mini",
    "google/gemini-2.5-flash",
    "google/gemini-2.5-pro",
    "perplexity/sonar",
    "perplexity/sonar-pro",
    "bfl/flux-2-pro",
    "google/imagen-4.0-generate-001",
    "recraft/recraft-v3",
    "openai/text-embedding-3-small",
}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def settings_from(tmp_path: Path, config: str) -> Settings:
    (tmp_path / "config.toml").write_text(config, encoding="utf-8")
    return load_settings(home=tmp_path)


# ── the shipped data ─────────────────────────────────────────────────────────────────────────


def test_catalog_is_large_and_dated(catalog: Catalog) -> None:
    assert len(catalog.ids()) >= 41
    assert len(catalog.providers()) >= 7
    assert catalog.ids() == sorted(catalog.ids())
    assert date.fromisoformat(catalog.prices_date) <= date(2026, 12, 1)
    assert catalog.schema_version == 1


def test_required_models_are_present(catalog: Catalog) -> None:
    assert REQUIRED - set(catalog.ids()) == set()


@pytest.mark.parametrize(
    ("model_id", "input_price", "output_price"),
    [
        ("anthropic/claude-sonnet-4.5", "3", "15"),
        ("openai/gpt-4o", "2.50", "10"),
        ("google/gemini-2.5-flash", "0.30", "2.50"),
        ("openai/gpt-4o-mini", "0.15", "0.60"),
        ("perplexity/sonar", "1", "1"),
        ("perplexity/sonar-pro", "3", "15"),
        ("anthropic/claude-haiku-4.5", "1", "5"),
        ("anthropic/claude-opus-4.5", "5", "25"),
    ],
)
def test_known_list_prices(
    catalog: Catalog, model_id: str, input_price: str, output_price: str
) -> None:
    prices = catalog.get(model_id).prices
    assert prices.input == Decimal(input_price)
    assert prices.output == Decimal(output_price)


def test_known_image_and_embedding_prices(catalog: Catalog) -> None:
    assert catalog.get("recraft/recraft-v3").prices.per_image == Decimal("0.04")
    assert catalog.get("google/imagen-4.0-generate-001").prices.per_image == Decimal("0.04")
    assert catalog.get("bfl/flux-2-pro").prices.per_image == Decimal("0.03")
    small = catalog.get("openai/text-embedding-3-small")
    assert (small.prices.input, small.dimensions) == (Decimal("0.02"), 1536)


def test_every_entry_is_valid(catalog: Catalog) -> None:
    for m in catalog.list():
        assert isinstance(m, ModelInfo)
        assert m.id == m.id.lower() and m.id.startswith(f"{m.provider}/"), m.id
        assert m.provider in PROVIDER_MODULES, m.id
        assert m.upstream_id and m.display_name, m.id
        assert m.type in MODEL_TYPES, m.id
        assert m.capabilities and m.capabilities <= set(CAPABILITIES), m.id
        assert m.lifecycle in LIFECYCLES, m.id
        for name in ("input", "output", "cache_read", "cache_write", "per_image"):
            value = getattr(m.prices, name)
            assert value is None or (isinstance(value, Decimal) and value >= 0), (m.id, name)
        assert m.context_window > 0, m.id
        if m.type == "language":
            assert m.prices.input > 0 and m.prices.output > 0, m.id
            assert 0 < m.default_output_tokens <= m.max_output_tokens, m.id
            assert "text" in m.capabilities, m.id
        if m.type == "image":
            assert m.prices.per_image is not None and m.prices.per_image > 0, m.id
            assert "image-gen" in m.capabilities, m.id
        if m.type == "embedding":
            assert m.dimensions and m.dimensions > 0, m.id
            assert m.prices.input > 0 and "embed" in m.capabilities, m.id
        # "cache" promises a cache-read price to bill with
        assert ("cache" in m.capabilities) == (m.prices.cache_read is not None), m.id


def test_lifecycle_entries_name_a_date_and_a_live_replacement(catalog: Catalog) -> None:
    ended = [m for m in catalog.list() if m.lifecycle != "active"]
    assert any(m.lifecycle == "retired" for m in ended)
    for m in ended:
        assert m.end_of_life and date.fromisoformat(m.end_of_life), m.id
        assert m.replacement in catalog.ids(), m.id
        assert catalog.get(m.replacement).lifecycle == "active", m.id
    for m in catalog.list():
        if m.lifecycle == "active":
            assert m.end_of_life is None and m.replacement is None, m.id


def test_anthropic_cache_prices_follow_the_published_multipliers(catalog: Catalog) -> None:
    # Retired Claude 3 models kept their rounded historical rates ($0.30 / $0.03 for Haiku 3).
    for m in (m for m in catalog.list(provider="anthropic") if m.lifecycle != "retired"):
        assert m.prices.cache_write == m.prices.input * Decimal("1.25"), m.id
        assert m.prices.cache_read <= m.prices.input * Decimal("0.1") + Decimal("0.005"), m.id


def test_data_file_spells_prices_as_strings() -> None:
    data = tomllib.loads(DATA_FILE.read_text(encoding="utf-8"))
    assert data["schema_version"] == 1 and isinstance(data["prices_date"], str)
    for model_id, raw in data["models"].items():
        for name, value in raw["prices"].items():
            assert isinstance(value, str), (model_id, name, value)
            Decimal(value)


def test_sonnet_45_keeps_working_after_anthropic_retired_it(catalog: Catalog) -> None:
    info = catalog.resolve("anthropic/claude-sonnet-4.5")
    assert info.id == "anthropic/claude-sonnet-4.5"
    assert info.lifecycle == "deprecated" and info.end_of_life == "2026-11-30"
    assert info.replacement == "anthropic/claude-sonnet-5.5"
    assert info.upstream_id == "claude-sonnet-4-6"  # the retired upstream id would fail
    assert catalog.get(info.replacement).upstream_id == "claude-sonnet-5-5"
    opus = catalog.resolve("claude-opus-4-5")
    assert (opus.lifecycle, opus.end_of_life) == ("deprecated", "2027-01-22")


# ── resolving ids ────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("anthropic/claude-sonnet-4.5", "anthropic/claude-sonnet-4.5"),
        ("claude-sonnet-4-5", "anthropic/claude-sonnet-4.5"),
        ("anthropic/claude-sonnet-4-5", "anthropic/claude-sonnet-4.5"),
        ("claude-sonnet-4-5-20250929", "anthropic/claude-sonnet-4.5"),
        ("claude-sonnet-4.5", "anthropic/claude-sonnet-4.5"),
        ("gpt-4o", "openai/gpt-4o"),
        ("GPT-4o", "openai/gpt-4o"),
        ("  openai/GPT-4O-MINI ", "openai/gpt-4o-mini"),
        ("sonar-pro", "perplexity/sonar-pro"),
        ("recraftv3", "recraft/recraft-v3"),
        ("deepseek-chat", "deepseek/deepseek-flash"),
        ("gemini-2.5-flash", "google/gemini-2.5-flash"),
        ("gemini-3.5-flash-lite", "google/gemini-3.5-flash-lite"),
        ("claude-sonnet-4-6", "anthropic/claude-sonnet-4.6"),
        ("text-embedding-3-small", "openai/text-embedding-3-small"),
    ],
)
def test_ids_and_aliases_resolve(catalog: Catalog, sent: str, expected: str) -> None:
    assert catalog.get(sent).id == expected
    assert sent in catalog


def test_every_listed_alias_resolves_to_its_model(catalog: Catalog) -> None:
    for m in catalog.list():
        for alias in m.aliases:
            assert catalog.get(alias).id == m.id, (alias, m.id)


def test_unknown_model_suggests_close_ids(catalog: Catalog) -> None:
    with pytest.raises(ModelNotFound) as caught:
        catalog.get("openai/gpt-4oo")
    err = caught.value
    assert err.status == 404 and err.param == "model"
    assert err.extra["closest"][0] == "openai/gpt-4o"
    assert 1 <= len(err.extra["closest"]) <= 3
    assert err.extra["supported_models"] == catalog.ids()
    assert err.message == (
        f"Model 'openai/gpt-4oo' does not exist. Did you mean: {', '.join(err.extra['closest'])}?"
    )
    assert "layers models list" in (err.hint or "")
    body = err.to_body()["error"]
    assert body["code"] == "model_not_found" and body["closest"] == err.extra["closest"]


def test_closest_maps_aliases_to_canonical_ids(catalog: Catalog) -> None:
    assert catalog.closest("claude-sonet-4.5")[0] == "anthropic/claude-sonnet-4.5"
    assert catalog.closest("claude-sonnet-4-5-2025")[0] == "anthropic/claude-sonnet-4.5"
    assert catalog.closest("flux-2") == ["bfl/flux-2-pro"] + catalog.closest("flux-2")[1:]
    assert catalog.closest("qqqqqqqq") == []
    suggestions = catalog.closest("sonnet", n=5)
    assert len(suggestions) == len(set(suggestions)) <= 5
    assert all(s in catalog.ids() for s in suggestions)


def test_nothing_like_it_still_answers_404(catalog: Catalog) -> None:
    with pytest.raises(ModelNotFound) as caught:
        catalog.resolve("qqqqqqqq")
    assert caught.value.message == "Model 'qqqqqqqq' does not exist."
    assert catalog.find("qqqqqqqq") is None


@pytest.mark.parametrize("sent", ["", "   ", None])
def test_missing_model_is_a_bad_request(catalog: Catalog, sent: object) -> None:
    with pytest.raises(InvalidRequest):
        catalog.get(sent)  # type: ignore[arg-type]


def test_retired_model_answers_410_with_date_and_replacement(catalog: Catalog) -> None:
    with pytest.raises(ModelRetired) as caught:
        catalog.resolve("claude-3-opus-20240229")
    err = caught.value
    assert err.status == 410
    assert err.extra == {"end_of_life": "2026-01-05", "replacement": "anthropic/claude-opus-5.5"}
    assert "2026-01-05" in err.message and "anthropic/claude-opus-5.5" in err.message
    assert catalog.get("claude-3-opus-20240229").lifecycle == "retired"  # get() still finds it


def test_deprecated_and_active_models_are_served_as_they_are(catalog: Catalog) -> None:
    assert catalog.resolve("gpt-4o") is catalog.get("gpt-4o")
    assert catalog.resolve("openai/gpt-6.2-sol").lifecycle == "active"


def test_list_filters_and_rejects_unknown_values(catalog: Catalog) -> None:
    images = catalog.list(type="image")
    assert images and all(m.type == "image" for m in images)
    assert [m.id for m in images] == sorted(m.id for m in images)
    web = catalog.list(capability="web")
    assert {m.provider for m in web} == {"perplexity"}
    anthropic_vision = catalog.list(provider="Anthropic", capability="vision")
    assert anthropic_vision and all(m.provider == "anthropic" for m in anthropic_vision)
    assert len(catalog.list()) == len(catalog.ids())
    for kwargs, valid in (
        ({"capability": "telepathy"}, "image-gen"),
        ({"type": "video"}, "embedding"),
        ({"provider": "nope"}, "anthropic"),
    ):
        with pytest.raises(InvalidRequest) as caught:
            catalog.list(**kwargs)
        assert valid in caught.value.message and caught.value.status == 400


# ── config.toml overrides ────────────────────────────────────────────────────────────────────


def test_price_and_markup_overrides(tmp_path: Path, catalog: Catalog) -> None:
    settings = settings_from(
        tmp_path,
        """
[models."openai/gpt-4o"]
input = "2.00"
prices = { cache_read = "0.50" }
markup = "0.25"

[models."claude-haiku-4-5"]
output = 4.5
lifecycle = "deprecated"
end_of_life = 2027-03-01
replacement = "claude-haiku-5-5"
""",
    )
    custom = load_catalog(settings)
    gpt = custom.get("gpt-4o")
    assert gpt.prices == Prices(Decimal("2.00"), Decimal("10"), Decimal("0.50"), None, None)
    assert gpt.markup == Decimal("0.25")
    haiku = custom.get("anthropic/claude-haiku-4.5")
    assert haiku.prices.output == Decimal("4.5") and haiku.prices.input == Decimal("1")
    assert (haiku.lifecycle, haiku.end_of_life) == ("deprecated", "2027-03-01")
    assert haiku.replacement == "anthropic/claude-haiku-5.5"
    # the shipped catalog is untouched
    assert catalog.get("gpt-4o").prices.input == Decimal("2.50")
    assert load_catalog().get("gpt-4o").markup is None


def test_new_model_gets_sensible_defaults(tmp_path: Path) -> None:
    settings = settings_from(
        tmp_path,
        """
[models."openai/my-fine-tune"]
provider = "openai"
upstream_id = "ft:gpt-6-luna:acme:1"
prices = { input = "0.30", output = "1.20" }

[models."house-embedder"]
provider = "mistral"
type = "embedding"
dimensions = 256
""",
    )
    custom = load_catalog(settings)
    tuned = custom.get("my-fine-tune")
    assert tuned.id == "openai/my-fine-tune" and tuned.upstream_id == "ft:gpt-6-luna:acme:1"
    assert tuned.type == "language" and tuned.capabilities == {"text", "stream"}
    assert (tuned.context_window, tuned.default_output_tokens) == (128000, 4096)
    assert tuned.prices.output == Decimal("1.20")
    embedder = custom.get("mistral/house-embedder")
    assert embedder.dimensions == 256 and embedder.capabilities == {"embed"}
    assert embedder.prices.input == Decimal(0)


def test_new_model_without_provider_is_a_typo_until_proven_otherwise(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, '[models."openai/gpt-4oo"]\ninput = "1"\n')
    with pytest.raises(ConfigError) as caught:
        load_catalog(settings)
    assert "openai/gpt-4oo" in caught.value.message and "provider" in caught.value.message
    assert "openai/gpt-4o" in (caught.value.hint or "")


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ('[models."gpt-4o"]\nprise = "1"\n', "prise"),
        ('[models."gpt-4o"]\nprices = { inputs = "1" }\n', "inputs"),
        ('[models."gpt-4o"]\ninput = "cheap"\n', "input"),
        ('[models."gpt-4o"]\ninput = "-1"\n', "input"),
        ('[models."gpt-4o"]\ncapabilities = ["text", "telepathy"]\n', "telepathy"),
        ('[models."gpt-4o"]\nlifecycle = "zombie"\n', "lifecycle"),
        ('[models."gpt-4o"]\nreplacement = "openai/gpt-9"\n', "gpt-9"),
        ('[aliases]\nfast = "openai/gpt-9"\n', "gpt-9"),
        ('[aliases]\n"openai/gpt-4o" = "openai/gpt-6-luna"\n', "already a model id"),
        ('[retired]\n"openai/o4-mini" = "openai/gpt-9"\n', "gpt-9"),
        ('[retired]\n"openai/o4-mini" = "openai/o3"\n"openai/o3" = "o4-mini"\n', "itself"),
        ('[upstreams.local]\nbase_url = "http://x"\nmodels = "llama"\n', "list"),
    ],
)
def test_bad_config_names_what_is_wrong(tmp_path: Path, config: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_catalog(settings_from(tmp_path, config))
    assert fragment in f"{caught.value.message} {caught.value.hint}"


def test_config_aliases_resolve(tmp_path: Path) -> None:
    settings = settings_from(
        tmp_path,
        '[aliases]\nfast = "gpt-6-luna"\n"Smart" = "anthropic/claude-opus-5.5"\n'
        'claude-sonnet = "claude-sonnet-4-6"\n',
    )
    custom = load_catalog(settings)
    assert custom.get("fast").id == "openai/gpt-6-luna"
    assert custom.get("smart").id == "anthropic/claude-opus-5.5"
    assert "fast" in custom.get("openai/gpt-6-luna").aliases
    # a config alias wins over a shipped one and moves with it
    assert custom.get("claude-sonnet").id == "anthropic/claude-sonnet-4.6"
    assert "claude-sonnet" not in custom.get("anthropic/claude-sonnet-5.5").aliases


def test_retired_map_serves_a_retired_model_with_another(tmp_path: Path) -> None:
    settings = settings_from(
        tmp_path,
        """
[retired]
"claude-3-opus-20240229" = "claude-opus-5-5"
"openai/gpt-3.5-turbo" = "openai/gpt-6-luna"
"openai/o4-mini" = "openai/o3"
"openai/o3" = "openai/gpt-6.1-sol"
""",
    )
    custom = load_catalog(settings)
    assert custom.resolve("anthropic/claude-3-opus").id == "anthropic/claude-opus-5.5"
    assert custom.resolve("claude-3-opus-latest").id == "anthropic/claude-opus-5.5"
    assert custom.resolve("openai/GPT-3.5-turbo").id == "openai/gpt-6-luna"  # unknown to us
    assert custom.resolve("o4-mini").id == "openai/gpt-6.1-sol"  # chains are followed
    with pytest.raises(ModelNotFound):
        custom.get("openai/gpt-3.5-turbo")
    with pytest.raises(ModelRetired):  # unmapped retired models still answer 410
        custom.resolve("openai/dall-e-3")


def test_retiring_a_model_by_config(tmp_path: Path) -> None:
    settings = settings_from(
        tmp_path,
        '[models."anthropic/claude-sonnet-4.5"]\nlifecycle = "retired"\n',
    )
    with pytest.raises(ModelRetired) as caught:
        load_catalog(settings).resolve("claude-sonnet-4-5")
    assert caught.value.extra["replacement"] == "anthropic/claude-sonnet-5.5"
    assert caught.value.extra["end_of_life"] == "2026-11-30"


def test_upstream_models(tmp_path: Path) -> None:
    settings = settings_from(
        tmp_path,
        """
[upstreams.ollama]
base_url = "http://127.0.0.1:11434/v1"
models = ["llama3.2", { id = "ollama/qwen3", prices = { input = "0.01", output = "0.02" } }]

[upstreams.azure]
base_url = "https://example.openai.azure.com/openai/v1"
api_key_env = "AZURE_OPENAI_API_KEY"
models = ["gpt-6.2-sol"]

[models."ollama/llama3.2"]
context_window = 131072
""",
    )
    custom = load_catalog(settings)
    llama = custom.get("llama3.2")
    assert (llama.id, llama.provider, llama.upstream_id) == (
        "ollama/llama3.2",
        "ollama",
        "llama3.2",
    )
    assert llama.prices.input == 0 and llama.context_window == 131072
    qwen = custom.get("qwen3")
    assert qwen.upstream_id == "qwen3" and qwen.prices.output == Decimal("0.02")
    sol = custom.get("openai/gpt-6.2-sol")
    assert sol.provider == "azure" and sol.upstream_id == "gpt-6.2-sol"
    assert sol.prices.input == Decimal("2")
    assert {"ollama", "azure"} <= set(custom.providers())
    assert [m.id for m in custom.list(provider="ollama")] == ["ollama/llama3.2", "ollama/qwen3"]


def test_settings_without_overrides_share_the_parsed_catalog(tmp_path: Path) -> None:
    assert load_catalog(load_settings(home=tmp_path)) is load_catalog()


# ── the parse cache ──────────────────────────────────────────────────────────────────────────


def test_parse_cache_round_trips_and_survives_corruption(tmp_path, monkeypatch) -> None:
    (tmp_path / "models.toml").write_bytes(DATA_FILE.read_bytes())
    monkeypatch.setattr(catalog_module, "__file__", str(tmp_path / "__init__.py"))
    monkeypatch.setattr(catalog_module.sys, "dont_write_bytecode", False)
    expected = tomllib.loads(DATA_FILE.read_text(encoding="utf-8"))
    assert catalog_module._read_data() == expected
    (cached,) = (tmp_path / "__pycache__").glob("models.*.json")
    assert catalog_module._read_data() == expected  # now from the cache
    cached.write_text("{not json", encoding="utf-8")
    assert catalog_module._read_data() == expected  # a broken cache is just a miss
    (tmp_path / "models.toml").write_text('schema_version = 1\nprices_date = "x"\n')
    assert catalog_module._read_data() == {"schema_version": 1, "prices_date": "x"}
    assert len(list((tmp_path / "__pycache__").glob("models.*.json"))) == 1
