"""The simulator's schema filler against the real `jsonschema` validator.

Tool arguments and structured output must validate for the schemas apps really send: the
AI SDK's Zod output (draft-07 with ``$schema``, or 2020-12 from Zod 4), OpenAI strict mode,
Pydantic's ``$defs``/``allOf`` style, and the odd corners of JSON Schema.
"""

from __future__ import annotations

import random
import re

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layers_cli.providers.simulator.prompt import hints_from
from layers_cli.providers.simulator.regex_gen import string_for_pattern
from layers_cli.providers.simulator.schema_fill import fill_schema

SAFE_INT = 9007199254740991
ZOD_EMAIL = (
    r"^(?!\.)(?!.*\.\.)([A-Za-z0-9_'+\-\.]*)[A-Za-z0-9_+-]@([A-Za-z0-9][A-Za-z0-9\-]*\.)+"
    r"[A-Za-z]{2,}$"
)
ZOD_UUID = (
    r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-8][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-"
    r"[0-9a-fA-F]{12}|00000000-0000-0000-0000-000000000000|ffffffff-ffff-ffff-ffff-ffffffffffff)$"
)
ZOD_DATETIME = (
    r"^(?:(?:\d\d[2468][048]|\d\d[13579][26]|\d\d0[48]|[02468][048]00|[13579][26]00)-02-29|"
    r"\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)|"
    r"(?:02)-(?:0[1-9]|1\d|2[0-8])))T(?:(?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d+)?)?(?:Z))$"
)
DRAFT7 = "http://json-schema.org/draft-07/schema#"
DRAFT2020 = "https://json-schema.org/draft/2020-12/schema"


def obj(props: dict, required: list | None = None, **extra) -> dict:
    schema = {"type": "object", "properties": props, **extra}
    schema["required"] = list(props) if required is None else required
    return schema


SCHEMAS: dict[str, dict] = {
    "weather": obj(
        {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        ["city"],
        additionalProperties=False,
    ),
    "zod-draft7": {
        "$schema": DRAFT7,
        **obj(
            {
                "name": {"type": "string", "minLength": 1, "maxLength": 40},
                "age": {"type": "integer", "minimum": -SAFE_INT, "maximum": SAFE_INT},
                "score": {"type": "number"},
                "email": {"type": "string", "format": "email"},
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "role": {"type": "string", "enum": ["admin", "user", "guest"]},
                "nickname": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "active": {"type": "boolean"},
                "website": {"type": "string", "format": "uri"},
            },
            additionalProperties=False,
        ),
    },
    "zod4-2020": {
        "$schema": DRAFT2020,
        **obj(
            {
                "id": {"type": "string", "format": "uuid", "pattern": ZOD_UUID},
                "count": {"type": "integer", "exclusiveMinimum": 0, "maximum": SAFE_INT},
                "createdAt": {"type": "string", "format": "date-time", "pattern": ZOD_DATETIME},
                "email": {"type": "string", "format": "email", "pattern": ZOD_EMAIL},
                "day": {"type": "string", "format": "date"},
                "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                "level": {"type": "integer", "minimum": 1, "maximum": 5},
            },
            additionalProperties=False,
        ),
    },
    "openai-strict": obj(
        {
            "answer": {"type": "string"},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "sources": {
                "type": "array",
                "items": obj(
                    {"title": {"type": "string"}, "url": {"type": ["string", "null"]}},
                    additionalProperties=False,
                ),
            },
            "note": {"type": ["string", "null"]},
        },
        additionalProperties=False,
    ),
    "ai-sdk-output-array": {
        "$schema": DRAFT7,
        **obj(
            {
                "elements": {
                    "type": "array",
                    "items": obj(
                        {"city": {"type": "string"}, "population": {"type": "integer"}},
                        additionalProperties=False,
                    ),
                }
            },
            additionalProperties=False,
        ),
    },
    "ai-sdk-output-choice": {
        "$schema": DRAFT7,
        **obj({"result": {"type": "string", "enum": ["sunny", "rainy", "snowy"]}}),
    },
    "pydantic": {
        "$defs": {
            "Address": obj(
                {"street": {"type": "string", "title": "Street"}, "zip": {"type": "string"}},
                title="Address",
            ),
            "Kind": {"enum": ["home", "work"], "title": "Kind", "type": "string"},
        },
        "title": "Contact",
        **obj(
            {
                "name": {"title": "Name", "type": "string"},
                "address": {"$ref": "#/$defs/Address"},
                "kind": {"allOf": [{"$ref": "#/$defs/Kind"}], "default": "home"},
                "phones": {"items": {"type": "string"}, "type": "array", "maxItems": 2},
            },
            ["name", "address"],
        ),
    },
    "recursive-tree": {
        "$defs": {
            "node": obj(
                {
                    "label": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                }
            )
        },
        "$ref": "#/$defs/node",
    },
    "recursive-root": obj(
        {"value": {"type": "integer"}, "next": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}}
    ),
    "draft7-definitions": {
        "$schema": DRAFT7,
        "definitions": {"money": obj({"amount": {"type": "number"}, "currency": {"const": "EUR"}})},
        **obj({"price": {"$ref": "#/definitions/money"}}),
    },
    "discriminated-union": obj(
        {
            "shape": {
                "oneOf": [
                    obj({"kind": {"const": "circle"}, "radius": {"type": "number", "minimum": 0}}),
                    obj({"kind": {"const": "square"}, "side": {"type": "number", "minimum": 0}}),
                ]
            }
        }
    ),
    "oneOf-int-or-number": obj(
        {"v": {"oneOf": [{"type": "integer"}, {"type": "number", "multipleOf": 0.5}]}}
    ),
    "arrays": obj(
        {
            "exact": {"type": "array", "items": {"type": "integer"}, "minItems": 4, "maxItems": 4},
            "unique": {
                "type": "array",
                "items": {"enum": ["a", "b", "c"]},
                "uniqueItems": True,
                "minItems": 3,
            },
            "unique-str": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
            "tuple": {
                "type": "array",
                "prefixItems": [{"type": "string"}, {"type": "integer"}],
                "items": False,
            },
            "nested": {
                "type": "array",
                "items": {"type": "array", "items": {"type": "number"}, "minItems": 2},
                "minItems": 1,
                "maxItems": 2,
            },
            "contains": {"type": "array", "items": {"type": "integer"}, "contains": {"const": 7}},
        },
        **{"$schema": DRAFT2020},
    ),
    "draft7-tuple": {
        "$schema": DRAFT7,
        "type": "array",
        "items": [{"type": "number"}, {"type": "string", "enum": ["x", "y"]}],
        "additionalItems": False,
    },
    "numbers": obj(
        {
            "cents": {"type": "number", "multipleOf": 0.01, "minimum": 1},
            "even": {"type": "integer", "multipleOf": 2, "minimum": 11},
            "neg": {"type": "integer", "maximum": -5},
            "tiny": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.001},
            "draft4": {"type": "number", "minimum": 10, "exclusiveMinimum": False},
            "big": {"type": "integer", "minimum": 10**12},
        }
    ),
    "strings": obj(
        {
            "code": {"type": "string", "pattern": "^[A-Z]{3}-\\d{4}$"},
            "zip": {"type": "string", "pattern": "^\\d{5}(-\\d{4})?$"},
            "slug": {"type": "string", "pattern": "^[a-z0-9]+(?:-[a-z0-9]+)*$", "maxLength": 20},
            "long": {"type": "string", "minLength": 60},
            "short": {"type": "string", "maxLength": 3},
            "exact": {"type": "string", "minLength": 5, "maxLength": 5},
            "time": {"type": "string", "format": "time"},
            "host": {"type": "string", "format": "hostname"},
            "ip": {"type": "string", "format": "ipv4"},
            "ip6": {"type": "string", "format": "ipv6"},
            "dur": {"type": "string", "format": "duration"},
            "hex": {"type": "string", "pattern": "^#[0-9a-f]{6}$"},
        }
    ),
    "maps": obj(
        {
            "scores": {"type": "object", "additionalProperties": {"type": "integer"}},
            "env": {
                "type": "object",
                "patternProperties": {"^[A-Z_]+$": {"type": "string"}},
                "additionalProperties": False,
                "minProperties": 2,
            },
            "small": {"type": "object", "maxProperties": 1, "properties": {"a": {}, "b": {}}},
        }
    ),
    "type-lists": obj(
        {
            "maybe": {"type": ["null", "integer"]},
            "either": {"type": ["string", "number"]},
            "any": {},
            "t": True,
            "nullable-obj": {"anyOf": [obj({"x": {"type": "string"}}), {"type": "null"}]},
        }
    ),
    "combinators": obj(
        {
            "both": {"allOf": [{"type": "integer"}, {"minimum": 3}, {"maximum": 4}]},
            "notnull": {"not": {"type": "null"}},
            "cond": {
                "type": "object",
                "properties": {"kind": {"enum": ["a", "b"]}},
                "required": ["kind"],
                "if": {"properties": {"kind": {"const": "a"}}},
                "then": {"required": ["extra"]},
            },
            "deps": {
                "type": "object",
                "properties": {"card": {"type": "string"}, "cvv": {"type": "string"}},
                "required": ["card"],
                "dependentRequired": {"card": ["cvv"]},
            },
        },
        **{"$schema": DRAFT2020},
    ),
    "enums-mixed": obj(
        {
            "e": {"enum": [1, "two", None, 3.5]},
            "c": {"const": {"nested": [1, 2]}},
            "n": {"type": "null"},
        }
    ),
    "empty-object": {"type": "object", "properties": {}, "additionalProperties": False},
    "strict-recursive": {
        "$defs": {
            "item": obj(
                {
                    "name": {"type": "string"},
                    "sub": {"anyOf": [{"$ref": "#/$defs/item"}, {"type": "null"}]},
                },
                additionalProperties=False,
            )
        },
        **obj({"root": {"$ref": "#/$defs/item"}}, additionalProperties=False),
    },
    "allOf-objects": {
        "allOf": [
            obj({"a": {"type": "string"}}),
            obj({"b": {"type": "integer", "minimum": 100}}),
            {"required": ["c"], "properties": {"c": {"type": "boolean"}}},
        ]
    },
    "min-properties": {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "minProperties": 3,
    },
    "draft4-exclusive": {
        "$schema": "http://json-schema.org/draft-04/schema#",
        **obj(
            {
                "p": {
                    "type": "number",
                    "minimum": 0,
                    "exclusiveMinimum": True,
                    "maximum": 1,
                    "exclusiveMaximum": True,
                },
                "i": {"type": "integer", "minimum": 5, "exclusiveMinimum": True},
            }
        ),
    },  # fmt: skip
    "parts-union": obj(
        {
            "parts": {
                "type": "array",
                "minItems": 2,
                "items": {
                    "anyOf": [
                        obj({"type": {"const": "text"}, "text": {"type": "string"}}),
                        obj(
                            {"type": {"const": "image"}, "url": {"type": "string", "format": "uri"}}
                        ),
                    ]
                },
            },
            "email": {"type": "string", "format": "email", "maxLength": 20},
            "mixed": {"type": "string", "enum": ["a", 1, None]},
        }
    ),
    "no-type-props": {"properties": {"q": {"type": "string"}}, "required": ["q"]},
}

PROMPTS = [
    "What's the weather in Paris and Rome in fahrenheit?",
    "Add 3 and 4.5, then multiply by 12",
    "Create a contact for Jane Doe at jane@example.org, born 1990-04-01, rating 4",
    "Summarize 'The Old Man and the Sea' in two sentences",
    "",
    "¿Qué tiempo hace en Madrid?",
]


def validate(instance: object, schema: dict) -> None:
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls(schema, format_checker=cls.FORMAT_CHECKER).validate(instance)
    _formats(instance, schema, schema)


def _formats(instance: object, schema: object, root: dict) -> None:
    """Checks the optional-format validators skip without extra packages installed."""
    if not isinstance(schema, dict):
        return
    fmt = schema.get("format")
    if isinstance(instance, str) and fmt == "date-time":
        assert re.match(
            r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$", instance
        )
    if isinstance(instance, str) and fmt == "uri":
        assert re.match(r"^[a-z][a-z0-9+.-]*://\S+$", instance)
    if isinstance(instance, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key in instance:
                _formats(instance[key], sub, root)


@pytest.mark.parametrize("optional", ["all", "mentioned"])
@pytest.mark.parametrize("prompt", PROMPTS)
@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_filled_instances_validate(name: str, prompt: str, optional: str) -> None:
    schema = SCHEMAS[name]
    for seed in range(3):
        instance = fill_schema(schema, hints_from(prompt), random.Random(seed), optional=optional)
        validate(instance, schema)


def test_tool_arguments_skip_optional_properties_the_prompt_does_not_mention() -> None:
    schema = obj(
        {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}, "days": {}},
        ["city"],
    )
    quiet = fill_schema(
        schema, hints_from("Weather in Oslo"), random.Random(0), optional="mentioned"
    )
    assert quiet == {"city": "Oslo"}
    said = fill_schema(
        schema,
        hints_from("Oslo weather in celsius for 3 days"),
        random.Random(0),
        optional="mentioned",
    )
    assert set(said) == {"city", "unit", "days"} and said["unit"] == "celsius"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prompt=st.text(max_size=200), seed=st.integers(0, 2**32))
def test_any_prompt_gives_valid_instances(prompt: str, seed: int) -> None:
    for schema in SCHEMAS.values():
        validate(fill_schema(schema, hints_from(prompt), random.Random(seed)), schema)


def test_values_come_from_the_prompt() -> None:
    hints = hints_from("What's the weather in Paris in fahrenheit?")
    args = fill_schema(SCHEMAS["weather"], hints, random.Random(0))
    assert args == {"city": "Paris", "unit": "fahrenheit"}

    add = obj({"a": {"type": "number"}, "b": {"type": "number"}})
    assert fill_schema(add, hints_from("Add 3 and 4.5"), random.Random(0)) == {"a": 3, "b": 4.5}

    contact = obj(
        {
            "name": {"type": "string"},
            "email": {"type": "string", "format": "email"},
            "birthday": {"type": "string", "format": "date"},
        }
    )
    got = fill_schema(
        contact, hints_from("Add Jane Doe, jane@example.org, born 1990-04-01"), random.Random(0)
    )
    assert got == {"name": "Jane Doe", "email": "jane@example.org", "birthday": "1990-04-01"}


def test_numbers_outside_bounds_are_not_used() -> None:
    schema = obj({"month": {"type": "integer", "minimum": 1, "maximum": 12}})
    got = fill_schema(schema, hints_from("In 2025, what happened?"), random.Random(0))
    assert 1 <= got["month"] <= 12


def test_listed_values_fill_string_arrays() -> None:
    schema = obj({"cities": {"type": "array", "items": {"type": "string"}}})
    got = fill_schema(schema, hints_from("Compare Paris, Rome and Tokyo"), random.Random(0))
    assert got == {"cities": ["Paris", "Rome", "Tokyo"]}


def test_same_seed_same_instance() -> None:
    hints = hints_from("Plan a trip to Lisbon for 3 people")
    schema = SCHEMAS["zod-draft7"]
    assert fill_schema(schema, hints, random.Random(7)) == fill_schema(
        schema, hints, random.Random(7)
    )


@pytest.mark.parametrize(
    "pattern",
    [r"^[A-Z]{3}$", r"^\d{5}(-\d{4})?$", r"^\+?[1-9]\d{1,14}$", ZOD_EMAIL, ZOD_UUID, ZOD_DATETIME,
     r"^(foo|bar)+baz$", r"(a)\1", r"^[^\s@]+@[^\s@]+$", r"^\w+\s\w+$"],
)  # fmt: skip
def test_pattern_strings_match(pattern: str) -> None:
    made = string_for_pattern(pattern, random.Random(1))
    assert made is not None and re.search(pattern, made)


def test_unbuildable_pattern_gives_none() -> None:
    assert string_for_pattern("[", random.Random(1)) is None
    assert string_for_pattern(r"^a(?!b)b$", random.Random(1)) is None
