"""Fill a JSON Schema with a valid, prompt-flavoured instance.

Tool arguments and ``json_schema`` answers both come from here. A value the prompt offers
(a number, a quoted string, a place name, an enum word it mentions) is used when it fits the
schema; otherwise a plausible value is made up. Each candidate is checked against its
sub-schema before it is used, so the result validates (see the tests against ``jsonschema``).
"""

from __future__ import annotations

import datetime as dt
import math
import random
import re
import uuid
from typing import Any

from .prompt import Hints
from .regex_gen import string_for_pattern
from .schema_check import SchemaError, conforms, format_ok, json_equal, resolve_ref
from .values import NameKind, name_kind, name_words, number_for_name, string_candidates

SOFT_DEPTH = 6  # beyond this, only required properties and minimal arrays
HARD_DEPTH = 40  # a schema that still recurses here cannot be satisfied

_MERGE_MIN = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_MERGE_MAX = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")


def fill_schema(
    schema: Any,
    hints: Hints,
    rng: random.Random,
    *,
    forced: dict[str, Any] | None = None,
    optional: str = "all",
) -> Any:
    """An instance of ``schema``; ``forced`` pins top-level properties (parallel tool calls).

    ``optional`` is ``"all"`` (documents: fill every property) or ``"mentioned"`` (tool
    arguments: an optional property only when the prompt speaks of it, as models do).
    """
    return Filler(schema, hints, rng, forced=forced, optional=optional).fill()


class Filler:
    def __init__(
        self,
        root: Any,
        hints: Hints,
        rng: random.Random,
        *,
        forced: dict[str, Any] | None = None,
        optional: str = "all",
    ) -> None:
        self.root = root
        self.hints = hints
        self.rng = rng
        self.forced = forced or {}
        self.optional = optional
        self.used: dict[str, set[int]] = {}

    def fill(self) -> Any:
        return self.gen(self.root, "", 0)

    # hint pools: each value is used once per document, in reading order
    def take(self, pool: str, values: list[Any], fits: Any) -> Any:
        used = self.used.setdefault(pool, set())
        for i, value in enumerate(values):
            if i not in used and fits(value):
                used.add(i)
                return value
        return None

    def gen(self, schema: Any, name: str, depth: int, variant: int = 0) -> Any:
        if depth > HARD_DEPTH:
            raise SchemaError("schema recurses without end")
        if schema is False:
            raise SchemaError("a `false` schema admits no value")
        if schema is True or not isinstance(schema, dict):
            schema = {}
        schema = self.flatten(schema)
        value = self.gen_flat(schema, name, depth, variant)
        for retry in range(1, 4):
            if conforms(value, schema, self.root):
                break
            value = self.gen_flat(schema, name, depth, variant + retry)
        return value

    def flatten(self, schema: dict[str, Any]) -> dict[str, Any]:
        return flatten(schema, self.root)

    def gen_flat(self, schema: dict[str, Any], name: str, depth: int, variant: int) -> Any:
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self.gen_enum(schema, variant)
        for key in ("oneOf", "anyOf"):
            if isinstance(schema.get(key), list) and schema[key]:
                return self.gen_choice(schema, key, name, depth, variant)
        kind = self.pick_type(schema, depth, variant)
        if kind == "null":
            return None
        if kind == "boolean":
            return variant % 2 == 0
        if kind == "object":
            return self.gen_object(schema, depth, variant)
        if kind == "array":
            return self.gen_array(schema, name, depth)
        if kind in ("integer", "number"):
            return self.gen_number(schema, name, kind == "integer", variant)
        return self.gen_string(schema, name, variant)

    def pick_type(self, schema: dict[str, Any], depth: int, variant: int) -> str:
        types = schema.get("type")
        if isinstance(types, str):
            return types
        if isinstance(types, list) and types:
            real = [t for t in types if t != "null"]
            if not real or ("null" in types and depth > SOFT_DEPTH):
                return "null"
            return real[variant % len(real)]
        if any(k in schema for k in ("properties", "required", "additionalProperties")):
            return "object"
        if any(k in schema for k in ("items", "prefixItems", "minItems", "contains")):
            return "array"
        if any(k in schema for k in ("minimum", "maximum", "multipleOf", "exclusiveMinimum")):
            return "number"
        return "string"

    def gen_enum(self, schema: dict[str, Any], variant: int) -> Any:
        rest = {k: v for k, v in schema.items() if k != "enum"}
        members = [m for m in schema["enum"] if conforms(m, rest, self.root)] or schema["enum"]
        spots = [(self.hints.mentions(m), i) for i, m in enumerate(members) if isinstance(m, str)]
        mentioned = sorted((pos, i) for pos, i in spots if pos is not None)
        start = mentioned[0][1] if mentioned else 0
        return members[(start + variant) % len(members)]

    def gen_choice(
        self, schema: dict[str, Any], key: str, name: str, depth: int, variant: int
    ) -> Any:
        rest = {k: v for k, v in schema.items() if k != key}
        branches = [merge(rest, self.flatten(_obj(b))) for b in schema[key]]
        nullish = [b for b in branches if b.get("type") == "null"]
        others = [b for b in branches if b.get("type") != "null"]
        order = nullish + others if depth > SOFT_DEPTH else others + nullish
        if variant:
            order = order[variant % len(order) :] + order[: variant % len(order)]
        first: Any = None
        for branch in order:
            for attempt in range(1 if key == "anyOf" else 4):
                try:
                    value = self.gen(branch, name, depth + 1, variant + attempt)
                except SchemaError:
                    break
                first = value if first is None else first
                if key == "anyOf" or sum(conforms(value, b, self.root) for b in branches) == 1:
                    return value
        return first

    def gen_object(self, schema: dict[str, Any], depth: int, variant: int = 0) -> dict[str, Any]:
        props: dict[str, Any] = schema.get("properties") or {}
        required = [k for k in schema.get("required", []) if isinstance(k, str)]
        keys = [k for k in props if k in required or self.wants(k, props[k], depth)]
        keys += [k for k in required if k not in keys]
        for key, needed in (schema.get("dependentRequired") or {}).items():
            if key in keys:
                keys.extend(needed)
        keys = list(dict.fromkeys(keys))
        extra = schema.get("additionalProperties", True)
        patterns: dict[str, Any] = schema.get("patternProperties") or {}
        minimum = schema.get("minProperties", 0)
        if not props and isinstance(extra, dict) and extra and depth <= SOFT_DEPTH:
            minimum = max(minimum, 2)
        names = iter(self.extra_keys(schema))
        while len(keys) < minimum:
            key = next(names, None)
            if key is None:
                break
            if key not in keys:
                keys.append(key)
        if "maxProperties" in schema:
            optional = [k for k in keys if k not in required]
            while len(keys) > schema["maxProperties"] and optional:
                keys.remove(optional.pop())
        result: dict[str, Any] = {}
        for key in keys:
            if depth == 0 and key in self.forced:
                result[key] = self.forced[key]
                continue
            sub: Any = props.get(key)
            if sub is None:
                sub = next((s for p, s in patterns.items() if re.search(p, key)), None)
            if sub is None:
                sub = extra if isinstance(extra, dict) else {}
            result[key] = self.gen(sub, key, depth + 1, variant)
        return result

    def wants(self, key: str, schema: Any, depth: int) -> bool:
        """Whether to fill an optional property."""
        if depth > SOFT_DEPTH:
            return False
        if self.optional == "all" or key in self.forced:
            return True
        spoken = [w for w in name_words(key) if len(w) > 2]
        if any(self.hints.mentions(w) is not None for w in spoken):
            return True
        try:
            flat = self.flatten(schema) if isinstance(schema, dict) else {}
        except SchemaError:
            return False
        members = flat.get("enum") or []
        return any(isinstance(m, str) and self.hints.mentions(m) is not None for m in members)

    def extra_keys(self, schema: dict[str, Any]) -> list[str]:
        """Keys to add when an object needs more properties than it declares."""
        props = list(schema.get("properties") or {})
        patterns = list(schema.get("patternProperties") or {})
        closed = schema.get("additionalProperties") is False
        words = [re.sub(r"\W+", "_", w.lower()) for w in self.hints.keywords]
        made = [string_for_pattern(p, self.rng, n) for p in patterns for n in range(1, 7)]
        pool = props + words + [w.upper() for w in words] + [k for k in made if k]
        pool += [f"item_{i}" for i in range(1, 50)] + [f"ITEM_{i}" for i in range(1, 50)]
        names = schema.get("propertyNames")

        def allowed(key: str) -> bool:
            if names is not None and not conforms(key, names, self.root):
                return False
            return not closed or key in props or any(re.search(p, key) for p in patterns)

        return [k for k in dict.fromkeys(pool) if allowed(k)]

    def gen_array(self, schema: dict[str, Any], name: str, depth: int) -> list[Any]:
        prefix = schema.get("prefixItems")
        items = schema.get("items", {})
        if isinstance(items, list):
            prefix, items = items, schema.get("additionalItems", {})
        prefix = prefix or []
        low = schema.get("minItems", 0)
        high = schema.get("maxItems", math.inf)
        if items is False:
            high = min(high, len(prefix))
        item_schema = self.flatten(items) if isinstance(items, dict) else {}
        listed = self.list_hint(item_schema)
        contains = schema.get("contains")
        if contains is not None and not any(conforms(v, contains, self.root) for v in listed):
            listed = []  # a prompt's list that misses the required item cannot be used
        # nested (often recursive) arrays shrink so a tree schema stays a small tree
        wanted = len(listed) if listed else self.rng.choice((2, 3)) if depth <= 2 else 1
        if depth > 4:
            wanted = 0
        count = int(max(low, len(prefix) if prefix else 0, min(high, wanted)))
        count = int(min(count, high)) if high != math.inf else count
        out: list[Any] = []
        if contains is not None and count and not listed:
            out.append(self.gen(contains, name, depth + 1))
        for i in range(len(out), count):
            if listed and i < len(listed):
                out.append(listed[i])
                continue
            sub = prefix[i] if i < len(prefix) else items
            value = self.gen(sub, name, depth + 1, variant=i)
            if schema.get("uniqueItems"):
                for retry in range(1, 8):
                    if not any(json_equal(value, other) for other in out):
                        break
                    value = self.gen(sub, name, depth + 1, variant=i + retry * count)
            out.append(value)
        return out

    def list_hint(self, item_schema: dict[str, Any]) -> list[Any]:
        """An enumeration in the prompt ("Paris, Rome and Tokyo") that fits the items."""
        kind = item_schema.get("type")
        if kind == "string" and "enum" not in item_schema:
            for values in self.hints.lists:
                if all(conforms(v, item_schema, self.root) for v in values):
                    return list(values)
        if kind in ("number", "integer") and len(self.hints.numbers) >= 2:
            values = list(self.hints.numbers)
            if all(conforms(v, item_schema, self.root) for v in values):
                self.used.setdefault("numbers", set()).update(range(len(values)))
                return values
        return []

    def gen_number(
        self, schema: dict[str, Any], name: str, integer: bool, variant: int
    ) -> int | float:
        def fits(v: Any) -> bool:
            ok = not integer or float(v).is_integer()
            return ok and conforms(int(v) if integer else v, schema, self.root)

        hinted = self.take("numbers", self.hints.numbers, fits) if variant == 0 else None
        if hinted is not None:
            return int(hinted) if integer else hinted
        base = number_for_name(name, self.rng)
        # odd variants of a plain number are fractional, to tell it apart from an integer
        step = variant / 2 if not integer else variant
        return fit_number(base + step, schema, integer, self.root)

    def gen_string(self, schema: dict[str, Any], name: str, variant: int) -> str:
        kind = name_kind(name)
        fmt = schema.get("format") if isinstance(schema.get("format"), str) else None
        candidates: list[str] = []
        if fmt:
            candidates += self.format_candidates(fmt, kind)
        candidates += string_candidates(kind, self, variant)
        for candidate in candidates:
            if conforms(candidate, schema, self.root):
                self.claim(candidate)
                return candidate
            sized = _fit_length(candidate, schema)
            if sized is not None and conforms(sized, schema, self.root):
                return sized
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            wanted = schema.get("minLength")
            made = string_for_pattern(pattern, self.rng, wanted)
            if made is not None:
                return made
        filler = (candidates[0] if candidates else "value") if not fmt else "x"
        return _fit_length(filler, schema) or filler

    def claim(self, value: str) -> None:
        """Mark a prompt value as used, so the next property takes the next one."""
        for pool, values in (("names", self.hints.names), ("quoted", self.hints.quoted)):
            if value in values:
                self.used.setdefault(pool, set()).add(values.index(value))

    def unused(self, pool: str, values: list[str]) -> list[str]:
        used = self.used.get(pool, set())
        return [v for i, v in enumerate(values) if i not in used]

    def format_candidates(self, fmt: str, kind: NameKind) -> list[str]:
        hints, rng = self.hints, self.rng
        day = dt.date(2025, 6, 2) + dt.timedelta(days=rng.randrange(0, 120))
        dates = [d for d in hints.dates if format_ok(d[:10], "date")]
        if fmt == "date":
            return [d[:10] for d in dates] + [day.isoformat()]
        if fmt == "date-time":
            stamps = [d.replace(" ", "T") for d in dates if format_ok(d, "date-time")]
            return stamps + [f"{d[:10]}T09:00:00Z" for d in dates] + [f"{day}T09:30:00Z"]
        if fmt == "time":
            return ["09:30:00Z"]
        if fmt in ("email", "idn-email"):
            return hints.emails + ["alex@example.com"]
        if fmt in ("uri", "url", "iri", "uri-reference", "iri-reference"):
            slug = "-".join(w.lower() for w in hints.keywords[:3]) or "page"
            return hints.urls + [f"https://example.com/{re.sub(r'[^a-z0-9-]', '', slug)}"]
        if fmt == "uuid":
            return [str(uuid.UUID(int=rng.getrandbits(128), version=4))]
        if fmt in ("hostname", "idn-hostname"):
            return ["api.example.com"]
        simple = {
            "ipv4": "192.0.2.10",
            "ipv6": "2001:db8::10",
            "duration": "PT1H30M",
            "regex": "^[a-z]+$",
            "json-pointer": "/items/0",
            "relative-json-pointer": "0/items",
            "uri-template": "https://example.com/items/{id}",
            "byte": "c2ltdWxhdGVk",
            "password": "correct-horse-battery",
        }
        return [simple[fmt]] if fmt in simple else []


def flatten(schema: dict[str, Any], root: Any) -> dict[str, Any]:
    """Resolve ``$ref`` and merge ``allOf`` so one dict describes the value."""
    for _ in range(20):
        if "$ref" in schema:
            target = resolve_ref(schema["$ref"], root)
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            schema = merge(target if isinstance(target, dict) else {}, rest)
        elif "allOf" in schema:
            rest = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                rest = merge(rest, flatten(part, root) if isinstance(part, dict) else {})
            schema = rest
        else:
            return schema
    raise SchemaError("$ref chain too long")


def _fit_length(value: str, schema: dict[str, Any]) -> str | None:
    """Pad or cut a plain string to the schema's length bounds (not for formats/patterns)."""
    if "format" in schema or "pattern" in schema:
        return None
    low = schema.get("minLength", 0)
    high = schema.get("maxLength")
    out = value
    while len(out) < low:
        out = f"{out} {value}" if value.strip() else out + "x"
    if high is not None and len(out) > high:
        out = out[:high].rstrip() if high else ""
        if len(out) < low:
            out = out.ljust(low, "x")
    return out


def fit_number(value: float, schema: dict[str, Any], integer: bool, root: Any) -> int | float:
    """Move ``value`` inside the schema's bounds and onto its ``multipleOf`` grid."""
    low, high = _bounds(schema, integer)
    value = min(max(value, low), high)
    if integer:
        value = round(value)
        value = math.ceil(low) if value < low else math.floor(high) if value > high else value
    candidates: list[float] = [value]
    step = schema.get("multipleOf")
    if _num(step) and step > 0:
        ks = [round(value / step), 1, 0]
        if low > -math.inf:
            ks.append(math.ceil(low / step))
        if high < math.inf:
            ks.append(math.floor(high / step))
        candidates = [_tidy(k * step, step) for k in ks]
    candidates += [c for c in (low, high) if math.isfinite(c)]
    for candidate in candidates:
        if integer and not float(candidate).is_integer():
            continue
        number = int(candidate) if integer else candidate
        if conforms(number, schema, root):
            return number
    return int(candidates[0]) if integer else candidates[0]


def _bounds(schema: dict[str, Any], integer: bool) -> tuple[float, float]:
    """Inclusive bounds, with exclusive ones stepped inside (drafts 4 and 6+)."""
    low, high = schema.get("minimum"), schema.get("maximum")
    ex_low, ex_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if ex_low is True:
        ex_low, low = low, None
    if ex_high is True:
        ex_high, high = high, None
    lo = low if _num(low) else -math.inf
    hi = high if _num(high) else math.inf
    left = ex_low if _num(ex_low) else lo
    right = ex_high if _num(ex_high) else hi
    gap = min(1.0, (right - left) / 4) if math.isfinite(left) and math.isfinite(right) else 1.0
    if _num(ex_low):
        lo = max(lo, math.floor(ex_low) + 1 if integer else ex_low + gap)
    if _num(ex_high):
        hi = min(hi, math.ceil(ex_high) - 1 if integer else ex_high - gap)
    return lo, hi


def _tidy(value: float, step: float) -> float:
    """Round away float noise (0.1 * 3 → 0.3) when that keeps it on the grid."""
    if isinstance(step, int):
        return int(value)
    decimals = max(0, -math.floor(math.log10(step))) + 2
    tidy = round(value, decimals)
    return int(tidy) if float(tidy).is_integer() else tidy


def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Combine two schemas that must both hold (``allOf``, ``$ref`` siblings, branches)."""
    out = dict(a)
    for key, value in b.items():
        if key not in out:
            out[key] = value
        elif key == "properties":
            props = dict(out[key])
            for name, sub in value.items():
                props[name] = {"allOf": [props[name], sub]} if name in props else sub
            out[key] = props
        elif key == "required":
            out[key] = list(dict.fromkeys([*out[key], *value]))
        elif key == "type":
            left = [out[key]] if isinstance(out[key], str) else list(out[key])
            right = [value] if isinstance(value, str) else list(value)
            both = [t for t in left if t in right or (t == "integer" and "number" in right)]
            both += ["integer"] if not both and "integer" in right and "number" in left else []
            out[key] = (both[0] if len(both) == 1 else both) if both else value
        elif key in _MERGE_MIN:
            out[key] = max(out[key], value) if _num(out[key]) and _num(value) else value
        elif key in _MERGE_MAX:
            out[key] = min(out[key], value) if _num(out[key]) and _num(value) else value
        elif key == "enum":
            out[key] = [m for m in out[key] if m in value] or value
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = {"allOf": [out[key], value]} if isinstance(out[key], dict) else value
        elif key in ("anyOf", "oneOf"):
            # both sides offer alternatives: every pairing is an alternative of the merge
            pairs = [(x, y) for x in out[key] for y in value][:64]
            out[key] = [merge(_obj(x), _obj(y)) for x, y in pairs]
        else:
            out[key] = value
    return out


def _obj(schema: Any) -> dict[str, Any]:
    return schema if isinstance(schema, dict) else {}


def _num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
