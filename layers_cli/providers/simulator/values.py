"""Plausible values for a property, chosen by what its name says it holds.

A ``city`` gets the place the prompt names, a ``query`` the prompt's key words, a ``count``
a small number. The schema filler tries these candidates in order and keeps the first one
that validates.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import random

    from .schema_fill import Filler

NameKind = str

_KINDS: tuple[tuple[NameKind, frozenset[str]], ...] = tuple(
    (kind, frozenset(names.split()))
    for kind, names in (
        ("expression", "expression expr formula equation calculation math"),
        ("email", "email mail"),
        ("url", "url uri link website href homepage site"),
        (
            "place",
            "city location place country destination origin region state address "
            "town where venue area locality airport",
        ),
        (
            "person",
            "person author user username recipient owner customer contact "
            "assignee attendee who firstname lastname fullname",
        ),
        ("name", "name"),
        ("query", "query q search keyword keywords term terms topic subject tag tags category"),
        (
            "text",
            "text message content body prompt input question instruction instructions "
            "task request comment note notes",
        ),
        ("title", "title headline heading label"),
        (
            "summary",
            "description summary reason explanation answer reasoning details "
            "response rationale result output thoughts analysis justification",
        ),
        ("date", "date day deadline birthday when"),
        ("time", "time"),
        ("phone", "phone tel telephone mobile"),
        ("id", "id uuid identifier slug"),
        ("unit", "unit units"),
        ("color", "color colour"),
        ("currency", "currency"),
        ("language", "language lang locale"),
        ("code", "code symbol ticker"),
    )
)
_COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black",
           "white", "gray", "grey", "teal")  # fmt: skip
_LANGUAGES = ("English", "French", "Spanish", "German", "Italian", "Portuguese", "Japanese",
              "Chinese", "Korean", "Dutch", "Python", "JavaScript", "TypeScript", "Rust", "Go",
              "Java")  # fmt: skip
_PEOPLE = ("Alex Morgan", "Sam Rivera", "Jordan Lee", "Taylor Kim", "Chris Park")
_PEOPLE_WORDS = ("person", "people", "user", "users", "character", "author", "customer",
                 "employee", "contact", "student", "member", "profile", "guest")  # fmt: skip
_NUMBERS_BY_NAME: tuple[tuple[frozenset[str], float], ...] = tuple(
    (frozenset(names.split()), value)
    for names, value in (
        ("count limit n num number max results top k quantity size page", 5),
        ("age", 30),
        ("year", 2025),
        ("month", 6),
        ("day", 15),
        ("hour hours", 9),
        ("minute minutes", 30),
        ("price amount cost total budget salary", 100),
        ("lat latitude", 48.8566),
        ("lon lng longitude", 2.3522),
        ("temperature temp celsius", 21),
        ("rating score stars", 4),
        ("percent percentage", 50),
        ("confidence probability", 0.9),
        ("days nights", 3),
        ("people guests adults passengers", 2),
    )
)


def name_words(name: str) -> list[str]:
    """``firstName``, ``first_name`` and ``first-name`` all give ["first", "name"]."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w for w in re.split(r"[\W_]+", spaced.lower()) if w]


def name_kind(name: str) -> NameKind:
    words = name_words(name)
    if words and words[-1] in ("id", "ids", "uuid"):
        return "id"
    for kind, names in _KINDS:
        if any(w in names for w in words) or "".join(words) in names:
            return kind
    return "generic"


def number_for_name(name: str, rng: random.Random) -> float:
    words = set(name_words(name))
    for names, value in _NUMBERS_BY_NAME:
        if words & names:
            return value
    return rng.randint(1, 10)


def string_candidates(kind: NameKind, filler: Filler, variant: int) -> list[str]:
    """Candidate strings for a property of this kind, best first."""
    hints, rng = filler.hints, filler.rng
    names = filler.unused("names", hints.names)
    quoted = filler.unused("quoted", hints.quoted)
    keys = hints.keywords
    topic = " ".join(keys[:4]) if keys else "general question"
    pick = _nth(keys, variant)
    if variant and kind not in ("place", "person", "name"):
        return [pick]
    after = _after_preposition(hints.text)
    if kind == "expression":
        return [hints.expression] if hints.expression else [topic]
    if kind == "email":
        return hints.emails + ["alex@example.com"]
    if kind == "url":
        return hints.urls + ["https://example.com/" + "-".join(keys[:3]).lower()]
    if kind == "place":
        return names + quoted + after + [k.title() for k in keys[:1]] + ["Springfield"]
    person = _PEOPLE[variant % len(_PEOPLE)]
    if kind == "person":
        return quoted + names + [person]
    if kind == "name":  # a person's name only when the prompt is about people
        about_people = any(hints.mentions(w) is not None for w in _PEOPLE_WORDS)
        return names + quoted + ([person] if about_people else []) + [pick.title()]
    if kind == "query":
        return quoted + [topic]
    if kind == "text":
        return quoted + [hints.question or topic]
    if kind == "title":
        return quoted + [topic.title()]
    if kind == "summary":
        return [_summary(keys, hints.question)]
    if kind == "date":
        return [d[:10] for d in hints.dates] + ["2025-06-15"]
    if kind == "time":
        return ["09:30"]
    if kind == "phone":
        return ["+1-555-0100"]
    if kind == "id":
        return [f"id_{rng.getrandbits(40):010x}"]
    if kind == "unit":
        imperial = hints.mentions("fahrenheit") is not None or "°f" in hints.lower
        return ["fahrenheit" if imperial else "celsius"]
    if kind == "color":
        return [c for c in _COLORS if hints.mentions(c) is not None] + ["blue"]
    if kind == "currency":
        return re.findall(r"\b[A-Z]{3}\b", hints.text) + ["USD"]
    if kind == "language":
        return [lang for lang in _LANGUAGES if hints.mentions(lang) is not None] + ["English"]
    if kind == "code":
        return re.findall(r"\b[A-Z]{2,5}\b", hints.text) + [pick.upper()[:6]]
    return quoted + [topic]


def _nth(keys: list[str], n: int) -> str:
    """The n-th key word; past the end, numbered repeats ("tokyo 2") keep values distinct."""
    if not keys:
        return f"item {n + 1}"
    word = keys[n % len(keys)]
    return word if n < len(keys) else f"{word} {n // len(keys) + 1}"


def _after_preposition(text: str) -> list[str]:
    """Lower-case places after "in"/"to"/"from" ("weather in paris" → "Paris")."""
    found = re.findall(r"\b(?:in|at|near|to|from|for)\s+([a-z][a-z\-]{2,})\b", text)
    stop = {"the", "a", "an", "my", "our", "your", "this", "that", "me", "us", "it", "be", "do"}
    return [w.title() for w in found if w not in stop]


def _summary(keys: list[str], question: str) -> str:
    if len(keys) >= 2:
        return f"A short overview of {keys[0]} and {keys[1]}, based on the question asked."
    if keys:
        return f"A short overview of {keys[0]}, based on the question asked."
    return f"A short answer to: {question}" if question else "A short answer."


def guess_schema(name: str) -> dict[str, object]:
    """A schema for a key a prompt asks for by name ("with keys name, age and tags")."""
    words = name_words(name)
    if words and words[0] in ("is", "has", "can", "should", "was", "did"):
        return {"type": "boolean"}
    if any(set(words) & names for names, _ in _NUMBERS_BY_NAME):
        return {"type": "number"}
    if words and len(words[-1]) > 3 and words[-1].endswith("s") and not words[-1].endswith("ss"):
        return {"type": "array", "items": {"type": "string"}}
    return {"type": "string"}
