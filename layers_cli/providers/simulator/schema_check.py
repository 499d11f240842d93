"""A small JSON Schema checker, so the generator can test a candidate before using it.

It covers the keywords structured-output and tool schemas use (drafts 4 to 2020-12). It is
not a full validator; the tests hold the generator to the real ``jsonschema`` package.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from typing import Any
from urllib.parse import unquote

JSON_TYPES = ("null", "boolean", "object", "array", "number", "integer", "string")

_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+\-]\d{2}:\d{2})$"
)
_TIME = re.compile(r"^\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+\-]\d{2}:\d{2})$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s]+$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")
_DURATION = re.compile(
    r"^P(?!$)(?:\d+Y)?(?:\d+M)?(?:\d+W)?(?:\d+D)?(?:T(?=\d)(?:\d+H)?(?:\d+M)?(?:\d+S)?)?$"
)


class SchemaError(ValueError):
    """A schema the simulator cannot satisfy (a bad ``$ref``, a ``false`` schema…)."""


def resolve_ref(ref: str, root: Any) -> Any:
    """Follow a local ``$ref`` ("#", "#/$defs/X", "#/definitions/X", JSON pointers)."""
    if not ref.startswith("#"):
        # remote refs are out of reach offline; a bare "Name" often means a $defs entry
        for defs in ("$defs", "definitions"):
            if isinstance(root, dict) and ref in (root.get(defs) or {}):
                return root[defs][ref]
        raise SchemaError(f"cannot resolve $ref {ref!r} offline")
    node = root
    for raw in unquote(ref[1:]).split("/")[1:]:
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list) and token.isdigit():
            node = node[int(token)]
        elif isinstance(node, dict) and token in node:
            node = node[token]
        else:
            raise SchemaError(f"$ref {ref!r} points nowhere")
    return node


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0 but true != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if _is_number(a) and _is_number(b):
        return a == b
    return type(a) is type(b) and a == b


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def type_of(value: Any, name: str) -> bool:
    if name == "null":
        return value is None
    if name == "boolean":
        return isinstance(value, bool)
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "string":
        return isinstance(value, str)
    if name == "number":
        return _is_number(value)
    if name == "integer":
        return _is_number(value) and float(value).is_integer()
    return True


def format_ok(value: str, fmt: str) -> bool:
    """The formats the generator writes, checked the way validators check them."""
    try:
        if fmt == "date":
            return bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", value)) and bool(
                dt.date.fromisoformat(value)
            )
        if fmt == "date-time":
            return bool(_DATE_TIME.match(value)) and bool(dt.date.fromisoformat(value[:10]))
        if fmt == "time":
            return bool(_TIME.match(value))
        if fmt in ("email", "idn-email"):
            return bool(_EMAIL.match(value))
        if fmt in ("uri", "url", "iri"):
            return bool(_URI.match(value))
        if fmt == "uuid":
            return bool(_UUID.match(value))
        if fmt in ("hostname", "idn-hostname"):
            return bool(_HOST.match(value))
        if fmt == "ipv4":
            return isinstance(ipaddress.ip_address(value), ipaddress.IPv4Address)
        if fmt == "ipv6":
            return isinstance(ipaddress.ip_address(value), ipaddress.IPv6Address)
        if fmt == "duration":
            return bool(_DURATION.match(value))
        if fmt == "regex":
            re.compile(value)
    except ValueError:
        return False
    return True


def multiple_ok(value: float, step: float) -> bool:
    """``multipleOf`` as ``jsonschema`` checks it (float quotients must be whole)."""
    if isinstance(step, float) or isinstance(value, float):
        quotient = value / step
        return quotient == int(quotient) if abs(quotient) < 1e300 else False
    return value % step == 0


def conforms(value: Any, schema: Any, root: Any, depth: int = 0) -> bool:
    """Whether ``value`` satisfies ``schema`` (for the keywords this module knows)."""
    if schema is True or schema == {}:
        return True
    if schema is False:
        return False
    if not isinstance(schema, dict) or depth > 40:
        return True
    if "$ref" in schema:
        try:
            target = resolve_ref(schema["$ref"], root)
        except SchemaError:
            return False
        if not conforms(value, target, root, depth + 1):
            return False
    checks = (_check_combinators, _check_values, _check_number, _check_string)
    if not all(check(value, schema, root, depth) for check in checks):
        return False
    if isinstance(value, dict):
        return _check_object(value, schema, root, depth)
    if isinstance(value, list):
        return _check_array(value, schema, root, depth)
    return True


def _check_combinators(value: Any, schema: dict, root: Any, depth: int) -> bool:
    if any(not conforms(value, s, root, depth + 1) for s in schema.get("allOf", [])):
        return False
    if "anyOf" in schema and not any(conforms(value, s, root, depth + 1) for s in schema["anyOf"]):
        return False
    one_of = schema.get("oneOf")
    if one_of is not None and sum(1 for s in one_of if conforms(value, s, root, depth + 1)) != 1:
        return False
    if "not" in schema and conforms(value, schema["not"], root, depth + 1):
        return False
    if "if" in schema:
        branch = "then" if conforms(value, schema["if"], root, depth + 1) else "else"
        if branch in schema and not conforms(value, schema[branch], root, depth + 1):
            return False
    return True


def _check_values(value: Any, schema: dict, root: Any, depth: int) -> bool:
    if "const" in schema and not json_equal(value, schema["const"]):
        return False
    if "enum" in schema and not any(json_equal(value, e) for e in schema["enum"]):
        return False
    types = schema.get("type")
    if isinstance(types, str):
        types = [types]
    return not types or any(type_of(value, t) for t in types)


def _check_number(value: Any, schema: dict, root: Any, depth: int) -> bool:
    if not _is_number(value):
        return True
    low, high = schema.get("minimum"), schema.get("maximum")
    ex_low, ex_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if ex_low is True:  # draft 4: a flag on minimum
        ex_low, low = low, None
    if ex_high is True:
        ex_high, high = high, None
    if _is_number(low) and value < low or _is_number(high) and value > high:
        return False
    if _is_number(ex_low) and value <= ex_low or _is_number(ex_high) and value >= ex_high:
        return False
    step = schema.get("multipleOf")
    return not (_is_number(step) and step > 0 and not multiple_ok(value, step))


def _check_string(value: Any, schema: dict, root: Any, depth: int) -> bool:
    if not isinstance(value, str):
        return True
    if len(value) < schema.get("minLength", 0):
        return False
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        return False
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        try:
            if not re.search(pattern, value):
                return False
        except re.error:
            pass
    fmt = schema.get("format")
    return not isinstance(fmt, str) or format_ok(value, fmt)


def _check_object(value: dict, schema: dict, root: Any, depth: int) -> bool:
    props = schema.get("properties") or {}
    patterns = schema.get("patternProperties") or {}
    if any(key not in value for key in schema.get("required", [])):
        return False
    if len(value) < schema.get("minProperties", 0):
        return False
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        return False
    for key, needed in (schema.get("dependentRequired") or {}).items():
        if key in value and any(n not in value for n in needed):
            return False
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        matched = False
        if key in props:
            matched = True
            if not conforms(item, props[key], root, depth + 1):
                return False
        for pattern, sub in patterns.items():
            if re.search(pattern, key):
                matched = True
                if not conforms(item, sub, root, depth + 1):
                    return False
        if not matched and not conforms(item, extra, root, depth + 1):
            return False
    names = schema.get("propertyNames")
    return names is None or all(conforms(k, names, root, depth + 1) for k in value)


def _check_array(value: list, schema: dict, root: Any, depth: int) -> bool:
    if len(value) < schema.get("minItems", 0):
        return False
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        return False
    prefix = schema.get("prefixItems")
    items = schema.get("items")
    if isinstance(items, list):  # draft 7 tuples
        prefix, items = items, schema.get("additionalItems")
    prefix = prefix or []
    for i, item in enumerate(value):
        sub = prefix[i] if i < len(prefix) else items
        if sub is not None and not conforms(item, sub, root, depth + 1):
            return False
    if schema.get("uniqueItems"):
        for i, item in enumerate(value):
            if any(json_equal(item, other) for other in value[:i]):
                return False
    if "contains" in schema:
        hits = sum(1 for item in value if conforms(item, schema["contains"], root, depth + 1))
        if hits < schema.get("minContains", 1):
            return False
        if "maxContains" in schema and hits > schema["maxContains"]:
            return False
    return True
