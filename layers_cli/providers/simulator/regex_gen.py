"""Strings that match a ``pattern`` keyword, built by walking Python's parse of the regex.

Schemas from Zod and Pydantic put patterns on ids, codes and emails; a generated value
must match them. Every result is checked with ``re.search`` before it is returned.
"""

from __future__ import annotations

import random
import re
import string
from typing import Any

try:  # Python 3.11+ keeps the parser here; it is private but stable
    from re import _parser as sre_parse
except ImportError:  # pragma: no cover
    import sre_parse  # type: ignore[no-redef]

_ALPHABET = string.ascii_lowercase + string.ascii_uppercase + string.digits + "-_ .@"
_CATEGORY = {
    "CATEGORY_DIGIT": string.digits,
    "CATEGORY_NOT_DIGIT": string.ascii_lowercase,
    "CATEGORY_SPACE": " ",
    "CATEGORY_NOT_SPACE": string.ascii_lowercase + string.digits,
    "CATEGORY_WORD": string.ascii_lowercase + string.digits,
    "CATEGORY_NOT_WORD": "-. ",
    "CATEGORY_LINEBREAK": "\n",
    "CATEGORY_NOT_LINEBREAK": string.ascii_lowercase,
}


def string_for_pattern(pattern: str, rng: random.Random, length: int | None = None) -> str | None:
    """A string that ``re.search``-matches ``pattern``, or None if none can be built.

    ``length`` is a preferred repeat count for open-ended repeats (``+``, ``*``, ``{2,}``).
    """
    try:
        parsed = sre_parse.parse(pattern)
        compiled = re.compile(pattern)
    except (re.error, RecursionError, ValueError):
        return None
    for target in ([length] if length else []) + [3, 1, 0]:
        try:
            text = _Emitter(rng, target).emit(list(parsed))
        except (_Unbuildable, RecursionError):
            continue
        if compiled.search(text):
            return text
    return None


class _Unbuildable(Exception):
    pass


class _Emitter:
    def __init__(self, rng: random.Random, target: int) -> None:
        self.rng = rng
        self.target = target
        self.groups: dict[int, str] = {}

    def emit(self, items: list[tuple[Any, Any]]) -> str:
        return "".join(self._one(str(op), av) for op, av in items)

    def _one(self, op: str, av: Any) -> str:
        if op == "LITERAL":
            return chr(av)
        if op == "NOT_LITERAL":
            return next(c for c in _ALPHABET if ord(c) != av)
        if op == "ANY":
            return self.rng.choice(string.ascii_lowercase)
        if op == "IN":
            return self._in(av)
        if op in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, sub = av
            count = low if low >= 1 else min(self.target, 1)
            if self.target > 1 and high > low:
                count = max(low, min(high, self.target))
            count = min(count, high)
            return "".join(self.emit(list(sub)) for _ in range(count))
        if op == "SUBPATTERN":
            group, _add, _del, sub = av
            text = self.emit(list(sub))
            if group is not None:
                self.groups[group] = text
            return text
        if op == "ATOMIC_GROUP":
            return self.emit(list(av))
        if op == "BRANCH":
            _, alternatives = av
            return self.emit(list(alternatives[0]))
        if op == "GROUPREF":
            return self.groups.get(av, "")
        if op == "GROUPREF_EXISTS":
            group, yes, no = av
            chosen = yes if group in self.groups else no
            return self.emit(list(chosen)) if chosen else ""
        if op in ("AT", "ASSERT", "ASSERT_NOT"):
            return ""
        raise _Unbuildable(op)

    def _in(self, items: list[tuple[Any, Any]]) -> str:
        negate = False
        allowed: list[str] = []
        for op, av in items:
            name = str(op)
            if name == "NEGATE":
                negate = True
            elif name == "LITERAL":
                allowed.append(chr(av))
            elif name == "RANGE":
                low, high = av
                allowed.extend(chr(c) for c in range(low, min(high, low + 61) + 1))
            elif name == "CATEGORY":
                allowed.extend(_CATEGORY.get(str(av), ""))
        if negate:
            banned = set(allowed)
            choices = [c for c in _ALPHABET if c not in banned]
            if not choices:
                raise _Unbuildable("negated set")
            return choices[0]
        if not allowed:
            raise _Unbuildable("empty set")
        return self.rng.choice(allowed)
