"""The words of simulated replies: short, topical, templated, and honest about being simulated.

Replies reuse the user's own key words so a developer can see their prompt reached the model,
and name the model once so they can see which model answered.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .prompt import Digest, first_sentence

_GREETING = re.compile(r"^\s*(hi|hello|hey|hiya|howdy|good (morning|afternoon|evening))\b", re.I)
_ECHO = re.compile(
    r"\b(?:say|repeat|reply with|respond with|answer with|output|print)\b"
    r"(?:\s+(?:exactly|only|just))?\s*:?\s*[\"“']([^\"”'\n]{1,200})[\"”']",
    re.IGNORECASE,
)
_ECHO_BARE = re.compile(
    r"\b(?:reply|respond|answer) with (?:exactly|only|just)\s*:?\s*(\S[^\n]{0,200})$", re.I
)


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def join_words(items: list[str]) -> str:
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def asked(question: str) -> str:
    """``You asked: "…"`` with sentence punctuation that reads right."""
    q = first_sentence(question, 90)
    return f'You asked: "{q}"' + ("" if q[-1:] in "?!.…" else ".")


def signature(d: Digest, display: str) -> str:
    return d.pick(
        (
            f"(Answered by {display}, simulated offline by Layers.)",
            f"This reply comes from the Layers offline simulator standing in for {display}.",
            f"— {display}, simulated by Layers",
        ),
        "signature",
    )


def _terms(keys: list[str]) -> tuple[str, str, str]:
    """Three terms to write about: the prompt's key words, padded with neutral ones."""
    fill = ["this question", "the context", "the details"]
    k = list(keys[:3]) + fill[len(keys[:3]) :]
    return k[0], k[1], k[2]


def direct(question: str, display: str) -> str | None:
    """Replies a model gives without elaboration: a greeting back, or the text asked for."""
    if _GREETING.match(question) and len(question.split()) <= 6:
        return (
            f"Hello! I'm {display}, running in the Layers offline simulator. "
            "How can I help you today?"
        )
    echo = _ECHO.search(question) or _ECHO_BARE.search(question.strip())
    return echo.group(1).strip() if echo else None


def answer(d: Digest, question: str, keys: list[str], display: str, terse: bool) -> str:
    """A general answer: restate, two topical sentences, then the model's name."""
    k1, k2, k3 = _terms(keys)
    topic = join_words(keys[:3]) or "your question"
    opener = d.pick(
        (asked(question), f"Here is a short answer about {topic}.", f"A good question: {topic}."),
        "opener",
    )
    body = [
        f"In short, {k1} is the heart of it, and {k2} shapes how it plays out in practice.",
        f"The key idea is that {k1} and {k2} are closely linked, so look at them together.",
        f"A practical way in is to start with {k1}, then consider {k2} and {k3}.",
        f"Most of the difficulty comes from {k2}; once that is clear, {k1} follows naturally.",
        f"If you need more depth on {k3}, ask a follow-up and I will expand on it.",
    ]
    first = d.number("body") % len(body)
    picked = [body[first]] if terse else [body[first], body[(first + 2) % len(body)]]
    return " ".join([opener, *(cap(s) for s in picked), signature(d, display)])


def reasoning(d: Digest, question: str, keys: list[str], sentences: int, plan: str) -> str:
    """Step-by-step thinking about the prompt, ``sentences`` long (3 to 11)."""
    k1, k2, k3 = _terms(keys)
    q = first_sentence(question, 90)
    opening = [
        f'The user is asking: "{q}"' + ("" if q[-1:] in "?!.…" else "."),
        f"The key terms are {join_words(keys[:4])}."
        if keys
        else "There are no obvious key terms, so I should read the request as a whole.",
        plan,
    ]
    middle = [
        f"First, I should make sure I understand what {k1} means here.",
        f"Next, I will consider how {k2} affects the answer.",
        "I should check for edge cases or assumptions that could change the answer.",
        f"It may help to mention {k3} briefly, without going off topic.",
        "Let me double-check that each step follows from the previous one.",
        "A concise structure works best: the main point first, then a supporting detail.",
        "The user probably wants something practical rather than a long essay.",
        f"Comparing {k1} with {k2} should make the trade-off clearer.",
    ]
    closing = "Everything is consistent, so I can write the final answer now."
    count = max(3, min(sentences, len(opening) + len(middle) + 1))
    start = d.number("reasoning") % 2
    lines = (opening + middle[start:] + middle[:start])[: count - 1] + [closing]
    return " ".join(lines)


def after_tools(d: Digest, results: list[tuple[str, str]], question: str, display: str) -> str:
    """A final answer that quotes each tool result and states what it means."""
    lines = []
    facts: list[str] = []
    for name, result in results:
        shown = result if len(result) <= 400 else result[:400] + "…"
        lines.append(f"The {name} tool returned: {shown}")
        facts += _facts(result)
    what = "that result" if len(results) == 1 else "those results"
    if facts:
        lines.append(f"Based on {what}: {join_words(facts[:6])}.")
    else:
        lines.append(f"Based on {what}, that answers your question.")
    return "\n\n".join([*lines, signature(d, display)])


def _facts(result: str) -> list[str]:
    try:
        data = json.loads(result)
    except ValueError:
        return []
    rows = data if isinstance(data, list) else [data]
    facts = []
    for row in rows[:3]:
        if isinstance(row, dict):
            facts += [f"{k} is {v}" for k, v in row.items() if isinstance(v, str | int | float)]
    return facts


def vision(d: Digest, descriptions: list[str], question: str, display: str) -> str:
    """Say what the attached images really are (format, size, dominant colour)."""
    if len(descriptions) == 1:
        seen = [f"The image you sent is {descriptions[0]}."]
    else:
        seen = [f"Image {i} is {text}." for i, text in enumerate(descriptions, 1)]
    opener = asked(question) if question.strip() else "You sent an image without a question."
    return " ".join([opener, *seen, signature(d, display)])


def search(
    d: Digest, question: str, keys: list[str], display: str
) -> tuple[str, list[dict[str, Any]]]:
    """An answer with numbered references, and the (placeholder) sources it cites."""
    k1, k2, k3 = _terms(keys)
    topic = join_words(keys[:3]) or "your question"
    slug = re.sub(r"[^a-z0-9]+", "-", " ".join(keys[:3]).lower()).strip("-") or "overview"
    first = re.sub(r"[^a-z0-9]+", "-", k1.lower()).strip("-") or "topic"
    month, day = 1 + d.number("month") % 12, 1 + d.number("day") % 28
    sources = [
        {
            "title": f"{cap(topic)}: an overview",
            "url": f"https://example.com/{slug}",
            "date": f"2025-{month:02d}-{day:02d}",
            "snippet": f"An overview of {topic}, with background and recent developments.",
        },
        {
            "title": f"A practical guide to {k1}",
            "url": f"https://example.org/guides/{first}",
            "date": f"2025-{(month % 12) + 1:02d}-{day:02d}",
            "snippet": f"How {k1} relates to {k2}, step by step.",
        },
        {
            "title": f"What's new: {k3}",
            "url": f"https://news.example.net/2025/{slug}",
            "date": f"2025-{((month + 1) % 12) + 1:02d}-{day:02d}",
            "snippet": f"Recent coverage with context on {k3}.",
        },
    ]
    content = " ".join(
        [
            f"Here is what current sources say about {topic}.",
            f"{cap(k1)} is covered in depth in a recent overview [1].",
            f"A practical guide explains how {k1} relates to {k2} [2].",
            f"Recent coverage adds context on {k3} [3].",
            f"({display}, simulated offline by Layers: the sources are placeholders.)",
        ]
    )
    return content, sources


def citation_annotations(content: str, sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``url_citation`` annotations for the ``[n]`` markers still present in ``content``."""
    notes = []
    for n, source in enumerate(sources, 1):
        marker = content.find(f"[{n}]")
        if marker < 0:
            continue
        start = max(content.rfind(". ", 0, marker) + 2, 0) if ". " in content[:marker] else 0
        notes.append(
            {
                "type": "url_citation",
                "url_citation": {
                    "start_index": start,
                    "end_index": marker + len(f"[{n}]"),
                    "url": source["url"],
                    "title": source["title"],
                },
            }
        )
    return notes


def json_answer(d: Digest, question: str, keys: list[str], display: str) -> dict[str, Any]:
    """A JSON object answer when no schema says what the object should hold."""
    k1, k2, _ = _terms(keys)
    return {
        "answer": f"{cap(k1)} and {k2} are the key points of this question.",
        "topic": join_words(keys[:3]) or first_sentence(question, 60),
        "keywords": keys[:5],
        "model": display,
    }
