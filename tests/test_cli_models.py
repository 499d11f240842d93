"""`layers models list|show|price`: the catalog and the documented pricing example."""

from __future__ import annotations

import json

from tests.support.cli import run

SONNET = "anthropic/claude-sonnet-4.5"
MODEL_KEYS = [
    "id", "provider", "upstream_id", "name", "type", "capabilities", "context_window",
    "default_output_tokens", "max_output_tokens", "dimensions", "prices", "markup", "lifecycle",
    "end_of_life", "replacement", "aliases",
]  # fmt: skip


def _models(*args: str) -> list[dict]:
    result = run("models", "list", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_list_table_has_prices_lifecycle_and_prices_date():
    result = run("models", "list")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "List prices as of 20" in out
    assert "USD per 1M tokens" in out
    [line] = [ln for ln in out.splitlines() if ln.split() and ln.split()[0] == SONNET]
    assert "$3.00" in line and "$15.00" in line
    models = _models()
    for m in models:
        if m["lifecycle"] != "active":
            [row] = [ln for ln in out.splitlines() if ln.split() and ln.split()[0] == m["id"]]
            assert m["lifecycle"] in row, row


def test_list_json_is_stable_and_complete():
    models = _models()
    assert len(models) >= 41
    assert len({m["provider"] for m in models}) >= 7
    assert all(list(m) == MODEL_KEYS for m in models)
    sonnet = next(m for m in models if m["id"] == SONNET)
    assert sonnet["prices"]["input_per_1m"] == 3
    assert sonnet["prices"]["output_per_1m"] == 15
    assert sonnet["lifecycle"] in ("active", "deprecated")


def test_list_filters():
    anthropic = _models("--provider", "anthropic")
    assert anthropic and all(m["provider"] == "anthropic" for m in anthropic)
    images = _models("--type", "image")
    assert images and all(m["type"] == "image" for m in images)
    assert all(m["prices"]["per_image"] is not None for m in images)
    embed = _models("--capability", "embed")
    assert "openai/text-embedding-3-small" in {m["id"] for m in embed}


def test_list_bad_filters_say_what_is_valid():
    result = run("models", "list", "--capability", "telepathy")
    assert result.exit_code == 2
    assert "Unknown capability 'telepathy'" in result.stderr and "vision" in result.stderr
    result = run("models", "list", "--type", "sound")
    assert result.exit_code == 2
    assert "language" in result.stderr


def test_show_known_model():
    result = run("models", "show", SONNET)
    assert result.exit_code == 0, result.output
    for text in ("Claude Sonnet 4.5", "anthropic", "$3.00 / 1M tokens", "$15.00 / 1M tokens",
                 "60%", "200,000 tokens"):  # fmt: skip
        assert text in result.stdout
    data = json.loads(run("models", "show", SONNET, "--json").stdout)
    assert list(data) == MODEL_KEYS and data["id"] == SONNET


def test_show_unknown_model_names_the_closest_ids():
    result = run("models", "show", "anthropic/claude-sonet-4.5")
    assert result.exit_code == 4
    assert "Error: Model 'anthropic/claude-sonet-4.5' does not exist." in result.stderr
    assert "Did you mean" in result.stderr and "anthropic/claude-sonnet" in result.stderr
    assert result.stdout == ""


def test_price_worked_example_from_the_readme():
    result = run("models", "price", SONNET, "--input", "2000", "--output", "1000")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "2,000 tokens × $3.00 / 1M tokens" in out and "$0.006" in out
    assert "1,000 tokens × $15.00 / 1M tokens" in out and "$0.015" in out
    assert "$0.021" in out and "× (1 + 60%)" in out and "$0.0336" in out
    assert "3.36 credits" in out

    data = json.loads(
        run("models", "price", SONNET, "--input", "2000", "--output", "1000", "--json").stdout
    )
    assert data["micro"] == 3_360_000 and data["credits"] == 3.36
    assert data["base_usd"] == 0.021 and data["markup"] == 0.6
    assert [(ln["label"], ln["quantity"]) for ln in data["lines"]] == [
        ("input", 2000),
        ("output", 1000),
    ]


def test_price_cached_tokens_and_images():
    data = json.loads(
        run("models", "price", SONNET, "--input", "1000", "--cached", "1000", "--json").stdout
    )
    assert ("cached input", 1000, 0.3) in [
        (ln["label"], ln["quantity"], ln["unit_price"]) for ln in data["lines"]
    ]
    image_model = _models("--type", "image")[0]
    result = run("models", "price", image_model["id"], "--images", "2")
    assert result.exit_code == 0, result.output
    assert "2 images ×" in result.stdout and "/ image" in result.stdout


def test_price_bad_input():
    result = run("models", "price", SONNET, "--input", "-5")
    assert result.exit_code == 2
    assert "--input cannot be negative" in result.stderr
    assert run("models", "price", SONNET, "--input", "lots").exit_code == 2
    assert run("models", "price", "nope/nothing", "--input", "1").exit_code == 4
