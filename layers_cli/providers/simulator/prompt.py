"""Reading a request the way a model would: the question, its key words, names and values.

Everything the simulator varies is derived from a SHA-256 digest of the request (never
Python's salted ``hash()``), so the same request always gets the same answer, streamed or not.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


def _word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Request fields that change how an answer is delivered or where it is cut, not what it
# says: a reply cut by max_tokens or a stop sequence is a prefix of the uncut one.
DELIVERY_KEYS = frozenset(
    {"stream", "stream_options", "max_tokens", "max_completion_tokens", "stop", "user",
     "metadata", "store", "service_tier", "cache"}
)  # fmt: skip

STOPWORDS = _word_set(
    """a about above after again against all also am an and any are aren't as at be because
    been before being below between both but by can can't cannot could couldn't did didn't do
    does doesn't doing don't down during each either else etc even ever every few for from
    further get gets getting give given gives go going got had hadn't has hasn't have haven't
    having he he's her here here's hers herself him himself his how how's however i i'd i'll
    i'm i've if in into is isn't it it's its itself just let let's lets like me more most much
    must mustn't my myself need no nor not now of off ok okay on once only or other our ours
    ourselves out over own please quite rather really same say says shall she she's should
    shouldn't show so some such sure tell than thank thanks that that's the their theirs them
    themselves then there there's these they they'd they'll they're they've this those
    through to too under until up upon us use using very via want was wasn't way we we'd we'll
    we're we've were weren't what what's whats when when's where where's whether which while
    who who's whom whose why why's will with within without won't would wouldn't yes yet you
    you'd you'll you're you've your yours yourself yourselves hi hello hey explain describe
    know one two three four five six seven eight nine ten many lot lots thing things something
    anything make find current currently today right now work works happen happens mean
    means look looks think take takes come comes seem seems called json object objects format
    formatted schema keys key fields field properties return respond response output reply
    valid latest recent recently"""
)
# Imperative verbs that open a request; capitalised at a sentence start, they are not names.
IMPERATIVES = _word_set(
    """add analyse analyze book build calculate check choose compare compose convert count
    create define delete draft draw find fix generate get help imagine list look name plan
    recommend remind remove rewrite schedule search send set show sort suggest summarise
    summarize translate update write"""
)
_FOLLOWS_VERB = re.compile(r"^\s+(?:a|an|the|me|my|this|that|these|those|some|all|it|us|our)\b")

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'’\-]*[A-Za-z0-9]|[A-Za-z]")
_PROPER = re.compile(r"\b[A-Z][A-Za-z'’\-]*[a-z][A-Za-z'’\-]*(?:\s+[A-Z][A-Za-z'’\-]*[a-z]\w*)*")
_NUMBER = re.compile(r"(?<![\w.\-])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w])")
_QUOTED = re.compile(
    r"\"([^\"\n]{1,200})\"|“([^”\n]{1,200})”|(?<![A-Za-z])'([^'\n]{1,200})'(?![A-Za-z])"
)
_EMAIL = re.compile(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+")
_URL = re.compile(r"https?://[^\s\"'<>)\]]+")
_DATE = re.compile(
    r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?(?:\.\d+)?(?:Z|[+\-]\d{2}:\d{2})?)?\b"
)
_EXPRESSION = re.compile(r"[-(]*\d[\d.,\s]*(?:\s*[-+*/^×÷x%]\s*[(\d][\d.,()\s]*)+")
_LIST_SEP = re.compile(r"^\s*(?:,|,?\s+and|,?\s+or|&|/|\+|vs\.?|versus)\s*$", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class Digest:
    """Deterministic choices for one request, salted per use."""

    def __init__(self, key: str) -> None:
        self.key = key

    @classmethod
    def of(cls, model_id: str, body: dict[str, Any]) -> Digest:
        content = {k: v for k, v in body.items() if k not in DELIVERY_KEYS}
        raw = json.dumps([model_id, content], sort_keys=True, default=str, ensure_ascii=True)
        return cls(hashlib.sha256(raw.encode()).hexdigest())

    def number(self, salt: str) -> int:
        data = hashlib.sha256(f"{self.key}|{salt}".encode()).digest()
        return int.from_bytes(data[:8], "big")

    def pick(self, options: Sequence[T], salt: str) -> T:
        return options[self.number(salt) % len(options)]

    def rng(self, salt: str) -> random.Random:
        return random.Random(self.number(salt))

    def hex(self, salt: str, length: int = 24) -> str:
        return hashlib.sha256(f"{self.key}|{salt}".encode()).hexdigest()[:length]


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or its text parts joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
        return "\n".join(texts)
    return str(content)


def image_urls(content: Any) -> list[str]:
    """The ``image_url`` parts of a message's content, in order."""
    urls: list[str] = []
    if isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and part.get("type") in ("image_url", "input_image"):
                ref = part.get("image_url")
                url = ref.get("url") if isinstance(ref, dict) else ref
                if isinstance(url, str):
                    urls.append(url)
    return urls


def last_user_index(messages: list[dict[str, Any]]) -> int | None:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            return i
    return None


def first_sentence(text: str, limit: int = 90) -> str:
    """The question as one short line, cut at a word boundary."""
    line = " ".join(text.split())
    line = _SENTENCE_END.split(line, maxsplit=1)[0] if len(line) > limit else line
    if len(line) <= limit:
        return line
    cut = line[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(",;:") + "…"


def stem(word: str) -> str:
    """A crude stem so that "cities" meets "city" and "forecasting" meets "forecast"."""
    w = word.lower().strip("'’")
    if len(w) > 5 and w.endswith("ing"):
        return w[:-3]
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith(("ches", "shes", "xes", "sses")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def proper_nouns(text: str) -> list[str]:
    """Capitalised names ("Paris", "New York"); sentence-initial common words are skipped."""
    found: list[tuple[int, str]] = []
    initial: list[tuple[int, str]] = []
    for match in _PROPER.finditer(text):
        name, start = match.group(0), match.start()
        parts = name.split()
        before = text[:start].rstrip()
        at_start = not before or before[-1] in '.!?:\n"“('
        while parts and (
            parts[0].lower() in STOPWORDS or at_start and parts[0].lower() in IMPERATIVES
        ):
            start += len(parts[0]) + 1
            parts = parts[1:]
            at_start = False if parts else at_start
        if not parts:
            continue
        (initial if at_start and len(parts) == 1 else found).append((start, " ".join(parts)))
    chosen = found or [item for item in initial if _may_be_name(text, item)]
    if found:
        # a sentence-initial name counts when it is also part of a list ("Paris and Rome")
        chosen = sorted(found + [i for i in initial if _joins_list(text, i, found)])
    return _dedupe(name for _, name in chosen)


def _may_be_name(text: str, item: tuple[int, str]) -> bool:
    low = item[1].lower()
    after = text[item[0] + len(item[1]) :]
    return low not in STOPWORDS and low not in IMPERATIVES and not _FOLLOWS_VERB.match(after)


def _joins_list(text: str, item: tuple[int, str], others: list[tuple[int, str]]) -> bool:
    end = item[0] + len(item[1])
    return any(_LIST_SEP.match(text[end:start]) for start, _ in others if start > end)


def value_lists(text: str) -> list[list[str]]:
    """Enumerations of names or quoted values: "Paris, Rome and Tokyo" → one list."""
    lists: list[list[str]] = []
    for pattern_items in (_located_names(text), _located_quotes(text)):
        group: list[tuple[int, int, str]] = []
        for item in pattern_items:
            if group and _LIST_SEP.match(text[group[-1][1] : item[0]]):
                group.append(item)
                continue
            if len(group) >= 2:
                lists.append(_dedupe(v for _, _, v in group))
            group = [item]
        if len(group) >= 2:
            lists.append(_dedupe(v for _, _, v in group))
    return [items for items in lists if len(items) >= 2]


def _located_names(text: str) -> list[tuple[int, int, str]]:
    located = []
    for name in proper_nouns(text):
        for match in re.finditer(re.escape(name), text):
            located.append((match.start(), match.end(), name))
    return sorted(located)


def _located_quotes(text: str) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), next(g for g in m.groups() if g)) for m in _QUOTED.finditer(text)]


def numbers(text: str) -> list[int | float]:
    """Numbers in reading order (dates and URLs are not numbers)."""
    text = _URL.sub(" ", _DATE.sub(" ", text))
    out: list[int | float] = []
    for match in _NUMBER.finditer(text):
        raw = match.group(0).replace(",", "")
        out.append(float(raw) if "." in raw else int(raw))
    return out


def keywords(text: str, limit: int = 6) -> list[str]:
    """Topical words in order: stopwords dropped, names ("New York") kept whole."""
    text = _URL.sub(" ", _EMAIL.sub(" ", text))
    names = _located_names(text)
    picked: list[str] = []
    for match in _WORD.finditer(text):
        inside = next((n for n in names if n[0] <= match.start() < n[1]), None)
        if inside:
            picked.append(inside[2])
            continue
        word, low = match.group(0), match.group(0).lower()
        if low in STOPWORDS or low in IMPERATIVES or len(low) < 2:
            continue
        picked.append(word if word.isupper() else low)
    return _dedupe(picked)[:limit]


def _dedupe(items: Any) -> list[str]:
    seen: set[str] = set()
    out = []
    for item in items:
        if item.lower() not in seen:
            seen.add(item.lower())
            out.append(item)
    return out


@dataclass
class Hints:
    """Values a prompt offers for filling in arguments and JSON documents."""

    text: str = ""
    question: str = ""
    keywords: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    lists: list[list[str]] = field(default_factory=list)
    numbers: list[int | float] = field(default_factory=list)
    quoted: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    dates: list[str] = field(default_factory=list)
    expression: str | None = None
    lower: str = ""

    def mentions(self, value: str) -> int | None:
        """Where the prompt mentions ``value`` as a whole word (case-insensitive), if it does."""
        if not value:
            return None
        match = re.search(rf"(?<![\w]){re.escape(value.lower())}(?![\w])", self.lower)
        return match.start() if match else None


def hints_from(text: str, extra: str = "") -> Hints:
    """Hints from the user's question (``text``) plus extra material such as tool results."""
    full = f"{text}\n{extra}" if extra else text
    expression = None
    for match in _EXPRESSION.finditer(_DATE.sub(" ", text)):
        candidate = match.group(0).strip(" ,.")
        if re.search(r"\d\s*[-+*/^×÷x%]\s*[(\d]", candidate):
            expression = candidate.replace("×", "*").replace("÷", "/")
            break
    return Hints(
        text=full,
        question=first_sentence(text, 120),
        keywords=keywords(text),
        names=proper_nouns(text),
        lists=value_lists(text),
        numbers=numbers(full),
        quoted=[next(g for g in m.groups() if g) for m in _QUOTED.finditer(text)],
        emails=_EMAIL.findall(full),
        urls=_URL.findall(full),
        dates=_DATE.findall(full),
        expression=expression,
        lower=full.lower(),
    )
