"""The model catalog: which models exist, what they can do, what they cost, how ids resolve.

The data ships as ``models.toml`` beside this module and is parsed once per process; the
``[models]``, ``[aliases]``, ``[retired]`` and ``[upstreams]`` sections of config.toml are laid
over it by `load_catalog`, which is cheap, so every `Settings` gets its own `Catalog`.

Lookups are case-insensitive. An id resolves, in this order of precedence, as: a Layers id
(``anthropic/claude-sonnet-4.5``); a config alias; a listed alias (``claude-sonnet-4-5``); a bare
id without its provider prefix (``gpt-4o``); a listed alias with the provider prefix
(``anthropic/claude-sonnet-4-5``); a provider's own upstream id. Derived keys that would name two
models are dropped rather than guessed, so a request never silently lands on the wrong model.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import json
import os
import sys
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, InvalidRequest, ModelNotFound, ModelRetired
from .model import CAPABILITIES, LIFECYCLES, MODEL_TYPES, ModelInfo, Prices

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["Catalog", "ModelInfo", "Prices", "load_catalog", "SCHEMA_VERSION"]
__all__ += ["CAPABILITIES", "LIFECYCLES", "MODEL_TYPES"]

SCHEMA_VERSION = 1
DATA_FILE = "models.toml"
PRICE_KEYS = ("input", "output", "cache_read", "cache_write", "per_image")
_INT_FIELDS = ("context_window", "default_output_tokens", "max_output_tokens", "dimensions")
_STR_FIELDS = ("provider", "upstream_id", "display_name", "description", "replacement")
_OTHER_FIELDS = ("name", "type", "capabilities", "prices", "lifecycle", "end_of_life")
FIELDS = frozenset(
    (*_INT_FIELDS, *_STR_FIELDS, *PRICE_KEYS, *_OTHER_FIELDS, "aliases", "markup", "extra")
)
# Fields every entry of the shipped data file must spell out (config entries get defaults).
_REQUIRED_BUILTIN = ("provider", "upstream_id", "display_name", "type", "capabilities", "prices")
_DEFAULT_CAPABILITIES = {"language": ("text", "stream"), "image": ("image-gen",)}
_DEFAULT_CONTEXT = {"language": 128_000, "image": 4_096, "embedding": 8_192}
_DEFAULT_OUTPUT = 4_096
_DEFAULT_MAX_OUTPUT = 16_384
_NOT_FOUND_HINT = "Run `layers models list` to see every model."
_RESOLVED_MAX = 1024


def _key(model_id: str) -> str:
    return model_id.strip().lower()


# ── value coercion: one place that knows how TOML values become catalog values ──────────────


def _decimal(value: Any, where: str, field: str, *, strict: bool) -> Decimal:
    """Prices are exact: strings or integers; config.toml may also use plain floats."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(f"{where}: {field} must be a number in quotes, got {value!r}.")
    if isinstance(value, float) and strict:
        raise ConfigError(f'{where}: {field} must be a string ("{value}"), never a float.')
    try:
        result = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise ConfigError(f"{where}: {field} must be a number, got {value!r}.") from exc
    if not result.is_finite() or result < 0:
        raise ConfigError(f"{where}: {field} must be a number of dollars >= 0, got {value!r}.")
    return result


def _int(value: Any, where: str, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{where}: {field} must be a whole number >= 0, got {value!r}.")
    return value


def _str(value: Any, where: str, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {field} must be a non-empty string, got {value!r}.")
    return value.strip()


def _date(value: Any, where: str) -> str:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value.isoformat()
    try:
        return dt.date.fromisoformat(_str(value, where, "end_of_life")).isoformat()
    except ValueError as exc:
        raise ConfigError(f"{where}: end_of_life must be a date like 2026-11-30.") from exc


def _str_list(value: Any, where: str, field: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where}: {field} must be a list of strings, got {value!r}.")
    return tuple(_str(item, where, field) for item in value)


def _prices(base: Prices | None, raw: Mapping[str, Any], where: str, strict: bool) -> Prices:
    """Merge ``prices = {...}`` and top-level price shorthands over the base prices."""
    table = raw.get("prices", {})
    if not isinstance(table, Mapping):
        raise ConfigError(f'{where}: prices must be a table like {{ input = "1.00" }}.')
    unknown = sorted(set(table) - set(PRICE_KEYS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown price {', '.join(unknown)}. Valid: {', '.join(PRICE_KEYS)}."
        )
    changes = {k: raw[k] for k in PRICE_KEYS if k in raw} | dict(table)
    values = {k: getattr(base, k) for k in PRICE_KEYS} if base else {}
    for name, value in changes.items():
        values[name] = _decimal(value, where, f"prices.{name}", strict=strict)
    values.setdefault("input", Decimal(0))
    values.setdefault("output", Decimal(0))
    return Prices(**values)


def _entry(
    model_id: str,
    raw: Mapping[str, Any],
    where: str,
    *,
    base: ModelInfo | None = None,
    strict: bool = False,
    defaults: Mapping[str, Any] | None = None,
) -> ModelInfo:
    """Build (or, given ``base``, override) one entry from a TOML table, then validate it."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a table of fields.")
    unknown = sorted(set(raw) - FIELDS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown field {', '.join(unknown)}.",
            hint=f"Valid fields: {', '.join(sorted(FIELDS))}.",
        )
    if strict:
        missing = [f for f in _REQUIRED_BUILTIN if f not in raw]
        if missing:
            raise ConfigError(f"{where}: missing {', '.join(missing)}.")
    raw = {**(defaults or {}), **raw}
    if "name" in raw and "display_name" not in raw:
        raw["display_name"] = raw["name"]
    values: dict[str, Any] = {}
    for field in _STR_FIELDS:
        if field in raw:
            values[field] = _str(raw[field], where, field)
    for field in _INT_FIELDS:
        if field in raw:
            values[field] = _int(raw[field], where, field)
    if "type" in raw:
        values["type"] = _str(raw["type"], where, "type").lower()
    if "capabilities" in raw:
        values["capabilities"] = frozenset(
            c.lower() for c in _str_list(raw["capabilities"], where, "capabilities")
        )
    if "lifecycle" in raw:
        values["lifecycle"] = _str(raw["lifecycle"], where, "lifecycle").lower()
    if "end_of_life" in raw:
        values["end_of_life"] = _date(raw["end_of_life"], where)
    if "markup" in raw:
        values["markup"] = _decimal(raw["markup"], where, "markup", strict=strict)
    if "extra" in raw:
        if not isinstance(raw["extra"], Mapping):
            raise ConfigError(f"{where}: extra must be a table.")
        values["extra"] = {**(base.extra if base else {}), **raw["extra"]}
    if "aliases" in raw:
        added = _str_list(raw["aliases"], where, "aliases")
        values["aliases"] = tuple(dict.fromkeys((*(base.aliases if base else ()), *added)))
    values["prices"] = _prices(base.prices if base else None, raw, where, strict)

    if base is not None:
        info = replace(base, **values)
    else:
        if "provider" not in values:
            raise ConfigError(f"{where}: a new model needs a provider.")
        kind = values.setdefault("type", "language")
        default_out = _DEFAULT_OUTPUT if kind == "language" else 0
        values.setdefault("upstream_id", model_id.split("/", 1)[-1])
        values.setdefault("display_name", values["upstream_id"])
        values.setdefault("capabilities", frozenset(_DEFAULT_CAPABILITIES.get(kind, ("embed",))))
        values.setdefault("context_window", _DEFAULT_CONTEXT.get(kind, 128_000))
        values.setdefault("default_output_tokens", default_out)
        values.setdefault(
            "max_output_tokens",
            max(values["default_output_tokens"], _DEFAULT_MAX_OUTPUT if default_out else 0),
        )
        if kind == "image" and values["prices"].per_image is None:
            values["prices"] = replace(values["prices"], per_image=Decimal(0))
        info = ModelInfo(id=model_id, **values)
    _validate(info, where)
    return info


def _validate(info: ModelInfo, where: str) -> None:
    """The invariants every other module relies on; broken ones name the offending field."""
    if info.type not in MODEL_TYPES:
        raise ConfigError(f"{where}: type must be one of {', '.join(MODEL_TYPES)}.")
    bad = sorted(info.capabilities - set(CAPABILITIES))
    if bad:
        raise ConfigError(
            f"{where}: unknown capability {', '.join(bad)}.",
            hint=f"Valid capabilities: {', '.join(CAPABILITIES)}.",
        )
    if info.lifecycle not in LIFECYCLES:
        raise ConfigError(f"{where}: lifecycle must be one of {', '.join(LIFECYCLES)}.")
    if info.type == "language" and info.default_output_tokens > info.max_output_tokens:
        raise ConfigError(f"{where}: default_output_tokens exceeds max_output_tokens.")
    if info.type == "image" and info.prices.per_image is None:
        raise ConfigError(f"{where}: image models need prices.per_image.")
    if info.type == "embedding" and not info.dimensions:
        raise ConfigError(f"{where}: embedding models need dimensions (the vector size).")


# ── the catalog ────────────────────────────────────────────────────────────────────────────


def _build_index(models: Mapping[str, ModelInfo], config_aliases: Mapping[str, str]) -> dict:
    """Lower-cased id or alias -> canonical id, tier by tier (see the module docstring)."""
    keys: dict[str, str] = {}
    blocked: set[str] = set()
    for model_id in models:
        if _key(model_id) in keys:
            raise ConfigError(f"Two models share the id '{model_id}' (ids ignore case).")
        keys[_key(model_id)] = model_id
    for alias, target in config_aliases.items():
        keys.setdefault(_key(alias), target)

    def tier(pairs: Iterable[tuple[str, str]], *, strict: bool) -> None:
        found: dict[str, set[str]] = {}
        for key, target in pairs:
            found.setdefault(_key(key), set()).add(target)
        for key, targets in found.items():
            if key in keys or key in blocked:
                continue
            if len(targets) == 1:
                keys[key] = targets.pop()
            elif strict:
                names = " and ".join(sorted(targets))
                raise ConfigError(f"The alias '{key}' is listed for both {names}.")
            else:
                blocked.add(key)

    tier(((a, m.id) for m in models.values() for a in m.aliases), strict=True)
    tier(((m.id.split("/", 1)[1], m.id) for m in models.values() if "/" in m.id), strict=False)
    tier(
        ((f"{m.provider}/{a}", m.id) for m in models.values() for a in m.aliases if "/" not in a),
        strict=False,
    )
    upstream = ((m.upstream_id, f"{m.provider}/{m.upstream_id}", m.id) for m in models.values())
    tier(((k, model_id) for *ks, model_id in upstream for k in ks), strict=False)
    return keys


class Catalog:
    """Every model Layers can serve, after config.toml; immutable once built."""

    def __init__(
        self,
        models: Mapping[str, ModelInfo],
        *,
        prices_date: str,
        schema_version: int = SCHEMA_VERSION,
        aliases: Mapping[str, str] | None = None,
        retired: Mapping[str, str] | None = None,
    ) -> None:
        self.prices_date = prices_date
        self.schema_version = schema_version
        config_aliases = {_key(a): t for a, t in (aliases or {}).items()}
        self._index = _build_index(models, config_aliases)
        self._retired = {_key(k): v for k, v in (retired or {}).items()}
        self._resolved: dict[str, ModelInfo] = {}  # see `resolve`
        # Each model lists exactly the aliases that resolve to it; replacements are canonical.
        owned: dict[str, list[str]] = {}
        for model in models.values():
            for alias in (*model.aliases, *(a for a, t in config_aliases.items() if t == model.id)):
                if self._index.get(_key(alias)) == model.id:
                    owned.setdefault(model.id, []).append(alias)
        self._models: dict[str, ModelInfo] = {}
        for model_id in sorted(models):
            model = models[model_id]
            replacement = model.replacement
            if replacement is not None:
                target = self._index.get(_key(replacement))
                if target is None:
                    raise ConfigError(
                        f"Model '{model_id}' names the replacement '{replacement}', "
                        "which is not in the catalog."
                    )
                replacement = target
            aliases_ = tuple(dict.fromkeys(owned.get(model_id, ())))
            self._models[model_id] = replace(model, aliases=aliases_, replacement=replacement)

    # lookups ------------------------------------------------------------------------------

    def find(self, model_id: str) -> ModelInfo | None:
        """The model an id or alias names, or None; never raises."""
        if not isinstance(model_id, str):
            return None
        canonical = self._index.get(_key(model_id))
        return self._models.get(canonical) if canonical else None

    def get(self, model_id: str) -> ModelInfo:
        """The model an id or alias names, whatever its lifecycle; `ModelNotFound` otherwise."""
        if not isinstance(model_id, str) or not model_id.strip():
            message = "The request must name a model, e.g. 'openai/gpt-6-luna'."
            raise InvalidRequest(message, hint=_NOT_FOUND_HINT, param="model")
        info = self.find(model_id)
        if info is None:
            raise self._not_found(model_id.strip())
        return info

    def resolve(self, model_id: str) -> ModelInfo:
        """The model that will serve a request for ``model_id``.

        A ``[retired]`` mapping in config.toml always wins ("serve X with Y"), also for ids the
        catalog does not know. Otherwise retired models raise `ModelRetired` (410) naming the
        end-of-life date and the replacement; deprecated and active models are served as is.

        Every request resolves its id, and an app sends the same few: each id as sent is
        answered from memory after its first lookup (the catalog never changes; failures are
        not kept, and neither are more than `_RESOLVED_MAX` ids).
        """
        known = self._resolved.get(model_id) if isinstance(model_id, str) else None
        if known is not None:
            return known
        info = self._resolve(model_id)
        if len(self._resolved) >= _RESOLVED_MAX:
            self._resolved.clear()
        self._resolved[model_id] = info
        return info

    def _resolve(self, model_id: str) -> ModelInfo:
        mapped = self._retired.get(_key(model_id)) if isinstance(model_id, str) else None
        info = self.get(mapped or model_id)
        for _ in range(len(self._retired) + 1):  # a chain can be no longer than the map
            mapped = self._retired.get(_key(info.id))
            if mapped is None:
                if info.lifecycle == "retired":
                    raise self._retired_error(info)
                return info
            info = self.get(mapped)
        raise ConfigError(f"config.toml [retired] maps '{model_id}' in a circle.")

    def closest(self, model_id: str, n: int = 3) -> list[str]:
        """Up to ``n`` canonical ids whose id or alias looks like ``model_id``."""
        query = _key(model_id) if isinstance(model_id, str) else ""
        if not query or n <= 0:
            return []
        result: list[str] = []

        def add(keys: Iterable[str]) -> None:
            for key in keys:
                canonical = self._index[key]
                if canonical not in result and len(result) < n:
                    result.append(canonical)

        keys = list(self._index)
        add(difflib.get_close_matches(query, keys, n=n * 4, cutoff=0.6))
        tail = query.rsplit("/", 1)[-1]
        add(difflib.get_close_matches(tail, keys, n=n * 4, cutoff=0.6))
        if len(tail) >= 3:
            add(sorted(k for k in keys if tail in k))
        return result

    def ids(self) -> list[str]:
        return list(self._models)

    def providers(self) -> list[str]:
        return sorted({m.provider for m in self._models.values()})

    def __len__(self) -> int:
        return len(self._models)

    def __iter__(self) -> Iterator[ModelInfo]:
        return iter(self._models.values())

    def __contains__(self, model_id: object) -> bool:
        return isinstance(model_id, str) and self.find(model_id) is not None

    # errors -------------------------------------------------------------------------------

    def _not_found(self, model_id: str) -> ModelNotFound:
        closest = self.closest(model_id)
        message = f"Model '{model_id}' does not exist."
        if closest:
            message = f"Model '{model_id}' does not exist. Did you mean: {', '.join(closest)}?"
        return ModelNotFound(
            message,
            hint=_NOT_FOUND_HINT,
            param="model",
            closest=closest,
            supported_models=self.ids(),
        )

    def _retired_error(self, info: ModelInfo) -> ModelRetired:
        when = f" on {info.end_of_life}" if info.end_of_life else ""
        message = f"Model '{info.id}' was retired{when} and is no longer served."
        hint = f'To serve it with another model, add to config.toml: [retired] "{info.id}" = "…".'
        if info.replacement:
            message = f"Model '{info.id}' was retired{when}. Use '{info.replacement}' instead."
            hint = (
                f'Or keep the old id working with config.toml: [retired] "{info.id}" = '
                f'"{info.replacement}".'
            )
        return ModelRetired(
            message,
            hint=hint,
            param="model",
            end_of_life=info.end_of_life,
            replacement=info.replacement,
        )

    # the name shadows the builtin inside the class body, so it comes last
    def list(
        self,
        *,
        provider: str | None = None,
        capability: str | None = None,
        type: str | None = None,
    ) -> list[ModelInfo]:
        """Models sorted by id, optionally filtered; unknown filter values are a 400."""
        provider = _check_choice("provider", provider, self.providers())
        capability = _check_choice("capability", capability, CAPABILITIES)
        type = _check_choice("type", type, MODEL_TYPES)
        return [
            m
            for m in self._models.values()
            if (provider is None or m.provider == provider)
            and (capability is None or capability in m.capabilities)
            and (type is None or m.type == type)
        ]


def _check_choice(name: str, value: str | None, valid: Iterable[str]) -> str | None:
    if value is None:
        return None
    valid = list(valid)
    lowered = value.strip().lower()
    if lowered not in valid:
        raise InvalidRequest(
            f"Unknown {name} '{value}'. Valid values: {', '.join(valid)}.",
            param=name,
        )
    return lowered


# ── loading ────────────────────────────────────────────────────────────────────────────────


def _read_data() -> dict[str, Any]:
    """The parsed data file. tomllib needs ~13 ms for it, so, like a .pyc, the result is kept as
    JSON in ``__pycache__`` keyed by the file's hash; any I/O problem only means parsing again."""
    source = Path(__file__).with_name(DATA_FILE)
    raw = source.read_bytes()
    digest = f"{zlib.crc32(raw):08x}{len(raw):x}"  # detects edits; no need for a crypto hash
    cached = source.parent / "__pycache__" / f"{source.stem}.{digest}.json"
    with contextlib.suppress(OSError, ValueError):
        return json.loads(cached.read_bytes())  # type: ignore[no-any-return]
    import tomllib  # only on a cache miss: importing it costs as much as reading the cache

    data = tomllib.loads(raw.decode("utf-8"))
    if not sys.dont_write_bytecode:
        with contextlib.suppress(OSError, TypeError, ValueError):
            cached.parent.mkdir(exist_ok=True)
            for stale in cached.parent.glob(f"{source.stem}.*.json"):
                stale.unlink(missing_ok=True)
            tmp = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, default=str), encoding="utf-8")
            os.replace(tmp, cached)
    return data


@cache
def _builtin() -> Catalog:
    """Parse and validate the shipped data file once per process."""
    data = _read_data()
    where = f"layers_cli/catalog/{DATA_FILE}"
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ConfigError(f"{where}: schema_version must be {SCHEMA_VERSION}.")
    models = {
        model_id: _entry(model_id, raw, f'{where} [models."{model_id}"]', strict=True)
        for model_id, raw in data.get("models", {}).items()
    }
    return Catalog(models, prices_date=str(data["prices_date"]), schema_version=SCHEMA_VERSION)


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"config.toml {where} must be a table.")
    return dict(value)


def _upstream_models(name: str, spec: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``models`` is a list of ids or of ``{ id = "...", prices = {...} }`` tables."""
    where = f"config.toml [upstreams.{name}]"
    listed = spec.get("models", [])
    if isinstance(listed, str) or not isinstance(listed, list):
        raise ConfigError(f"{where}: models must be a list of model ids.")
    for item in listed:
        if isinstance(item, str):
            yield item, {}
        elif isinstance(item, Mapping) and isinstance(item.get("id"), str):
            yield item["id"], {k: v for k, v in item.items() if k != "id"}
        else:
            raise ConfigError(f"{where}: each model is an id or a table with an id, got {item!r}.")


def load_catalog(settings: Settings | None = None) -> Catalog:
    """The shipped catalog with config.toml's models, upstreams, aliases and retired maps on top.

    Order: upstreams (route ids to a configured upstream, creating unknown ones), then
    ``[models]`` (override fields or add models), then ``[aliases]`` and ``[retired]``.
    """
    builtin = _builtin()
    if settings is None or not (
        settings.models or settings.upstreams or settings.aliases or settings.retired
    ):
        return builtin
    models = {m.id: m for m in builtin}

    def lookup(model_id: str, current: Catalog) -> str | None:
        if model_id in models:
            return model_id
        found = current.find(model_id)
        return found.id if found else None

    for name, spec in _table(settings.upstreams, "[upstreams]").items():
        spec = _table(spec, f"[upstreams.{name}]")
        for model_id, fields in _upstream_models(name, spec):
            where = f'config.toml [upstreams.{name}] model "{model_id}"'
            existing = lookup(model_id, builtin)
            if existing:
                fields = {**fields, "provider": name}
                models[existing] = _entry(existing, fields, where, base=models[existing])
                continue
            upstream_id = model_id.removeprefix(f"{name}/")
            new_id = f"{name}/{upstream_id}"
            base = models.get(new_id)
            defaults = {} if base else {"provider": name, "upstream_id": upstream_id}
            models[new_id] = _entry(new_id, fields, where, base=base, defaults=defaults)

    current = Catalog(models, prices_date=builtin.prices_date) if settings.upstreams else builtin
    for model_id, fields in _table(settings.models, "[models]").items():
        where = f'config.toml [models."{model_id}"]'
        fields = _table(fields, f'[models."{model_id}"]')
        existing = lookup(model_id, current)
        if existing:
            models[existing] = _entry(existing, fields, where, base=models[existing])
            continue
        if "provider" not in fields:  # most likely a typo of an existing id
            raise ConfigError(
                f"{where}: '{model_id}' is not a known model; to add it, set provider.",
                hint=_suggest(current, model_id),
            )
        provider = fields["provider"]
        prefix = f"{provider}/" if isinstance(provider, str) and "/" not in model_id else ""
        models[prefix + model_id] = _entry(prefix + model_id, fields, where)

    current = Catalog(models, prices_date=builtin.prices_date)
    aliases: dict[str, str] = {}
    for alias, target in _table(settings.aliases, "[aliases]").items():
        resolved = current.find(target) if isinstance(target, str) else None
        if resolved is None:
            raise ConfigError(
                f"config.toml [aliases]: '{alias}' points to unknown model {target!r}.",
                hint=_suggest(current, target),
            )
        if _key(alias) in {_key(m) for m in models}:
            raise ConfigError(
                f"config.toml [aliases]: '{alias}' is already a model id; an alias cannot hide it.",
                hint=f'To serve it with another model use [retired] "{alias}" = "{target}".',
            )
        aliases[alias] = resolved.id

    with_aliases = Catalog(models, prices_date=builtin.prices_date, aliases=aliases)
    retired: dict[str, str] = {}
    for old, target in _table(settings.retired, "[retired]").items():
        resolved = with_aliases.find(target) if isinstance(target, str) else None
        if resolved is None:
            raise ConfigError(
                f"config.toml [retired]: '{old}' maps to unknown model {target!r}.",
                hint=_suggest(with_aliases, target),
            )
        known = with_aliases.find(old)
        retired[known.id if known else old] = resolved.id
    _check_cycles(retired)
    return Catalog(models, prices_date=builtin.prices_date, aliases=aliases, retired=retired)


def _suggest(catalog: Catalog, target: Any) -> str:
    closest = catalog.closest(target) if isinstance(target, str) else []
    return f"Did you mean: {', '.join(closest)}?" if closest else _NOT_FOUND_HINT


def _check_cycles(retired: Mapping[str, str]) -> None:
    """A [retired] chain must end at a model, never loop back."""
    mapping = {_key(k): _key(v) for k, v in retired.items()}
    for start in mapping:
        seen = {start}
        current = mapping[start]
        while current in mapping:
            if current in seen:
                raise ConfigError(f"config.toml [retired]: '{start}' maps back to itself.")
            seen.add(current)
            current = mapping[current]
