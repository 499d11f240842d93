"""Perplexity's Sonar chat completions: OpenAI-shaped, plus web search.

What differs from the compatible engine: search options are forwarded; ``citations`` and
``search_results`` come back top level (kept as extras, in ``provider_metadata.perplexity`` and
as ``url_citation`` annotations); reasoning models put ``<think>…</think>`` in the content,
which becomes reasoning text; ``reasoning_tokens`` sit outside ``completion_tokens``; the
structured-output shape is ``json_schema`` only; roles must alternate. No images or
embeddings here.
"""

from __future__ import annotations

from typing import Any

from ..errors import CapabilityError
from .base import Completion, EmbedResult, ImageResult, UpstreamCall, Usage
from .openai_compat import OpenAICompatible, StreamTranslator
from .openai_wire import Dialect, reasoning_of, split_content

SEARCH_FIELDS = frozenset(
    {
        "search_mode",
        "search_domain_filter",
        "search_recency_filter",
        "search_after_date_filter",
        "search_before_date_filter",
        "last_updated_after_filter",
        "last_updated_before_filter",
        "return_images",
        "return_related_questions",
        "disable_search",
        "enable_search_classifier",
        "web_search_options",
        "language_preference",
        "image_domain_filter",
        "image_format_filter",
    }
)
PERPLEXITY_FIELDS = SEARCH_FIELDS | {
    "messages",
    "stop",
    "temperature",
    "top_p",
    "top_k",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
    "reasoning_effort",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
}
PERPLEXITY = Dialect(fields=PERPLEXITY_FIELDS, stream_options=False, reasoning_excluded=True)
EXTRA_KEYS = ("citations", "search_results", "images", "related_questions")
USAGE_EXTRAS = ("citation_tokens", "num_search_queries", "search_context_size", "cost")


class PerplexityAdapter(OpenAICompatible):
    def __init__(self) -> None:
        super().__init__("perplexity", dialect=PERPLEXITY)

    def chat_body(self, call: UpstreamCall, *, stream: bool) -> dict[str, Any]:
        if call.body.get("tools") and not call.model.has("tools"):
            raise CapabilityError(
                f"{call.model.id} cannot call tools.",
                hint="Send the request without tools, or pick a model with the tools capability.",
                param="tools",
            )
        body = super().chat_body(call, stream=stream)
        body["messages"] = merge_turns(body["messages"])
        body["response_format"] = response_format(body.get("response_format"))
        if not body["response_format"]:
            del body["response_format"]
        choice = body.get("tool_choice")
        if not body.get("tools"):
            body.pop("tool_choice", None)
            body.pop("parallel_tool_calls", None)
        elif isinstance(choice, dict):  # only none|auto|required: force the one named tool
            name = (choice.get("function") or {}).get("name")
            named = [t for t in body["tools"] if (t.get("function") or {}).get("name") == name]
            body["tools"] = named or body["tools"]
            body["tool_choice"] = "required"
        return body

    def parse_completion(self, call: UpstreamCall, data: dict[str, Any]) -> Completion:
        completion = super().parse_completion(call, data)
        message = completion.message
        content = message.get("content")
        if isinstance(content, str) and not message.get("reasoning_content"):
            reasoning, message["content"] = split_think(content)
            if reasoning:
                message["reasoning_content"] = reasoning
        citations, results = sources(data)
        if citations and not message.get("annotations"):
            message["annotations"] = citation_annotations(
                message.get("content") or "", citations, results
            )
        completion.extra = {key: data[key] for key in EXTRA_KEYS if data.get(key)}
        return completion

    def metadata(self, call: UpstreamCall, data: dict[str, Any], usage: Usage) -> dict[str, Any]:
        citations, results = sources(data)
        meta: dict[str, Any] = {
            "citations": citations,
            "search_results": results,
            "reasoning_tokens": usage.reasoning_tokens,
        }
        raw = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        meta.update({key: raw[key] for key in USAGE_EXTRAS if raw.get(key) is not None})
        return {"perplexity": meta}

    def translator(self, call: UpstreamCall) -> StreamTranslator:
        return PerplexityStream(self, call)

    async def images(self, call: UpstreamCall) -> ImageResult:
        raise CapabilityError(
            f"{call.model.id} cannot generate images; Perplexity serves chat models only.",
            hint="Use an image model such as openai/gpt-image-1.",
        )

    async def embed(self, call: UpstreamCall) -> EmbedResult:
        raise CapabilityError(
            f"{call.model.id} cannot create embeddings through Layers.",
            hint="Use an embedding model such as openai/text-embedding-3-small.",
        )


class PerplexityStream(StreamTranslator):
    """Splits ``<think>`` out of the streamed text and ends with citations as extras."""

    def __init__(self, adapter: OpenAICompatible, call: UpstreamCall) -> None:
        super().__init__(adapter, call)
        self.splitter = ThinkSplitter()
        self.answer: list[str] = []

    def delta(self, delta: dict[str, Any]) -> list[Any]:
        text, thinking = split_content(delta.get("content"))
        reasoning, answer = self.splitter.feed(text or "")
        self.answer.append(answer)
        return self.pieces(answer, (reasoning_of(delta) or thinking) + reasoning, delta)

    def finish(self) -> list[Any]:
        reasoning, answer = self.splitter.flush()
        self.answer.append(answer)
        chunks = self.pieces(answer, reasoning, {})
        citations, results = sources(self.last)
        if citations and not self.annotations:
            self.annotations = citation_annotations("".join(self.answer), citations, results)
        return chunks + super().finish()

    def extra(self) -> dict[str, Any]:
        return {key: self.last[key] for key in EXTRA_KEYS if self.last.get(key)}


class ThinkSplitter:
    """Separates a leading ``<think>…</think>`` section from (streamed) text.

    A tag may be split across chunks, so text that could still be part of one is held back
    until it can be classified; `flush` releases whatever is left at the end.
    """

    OPEN, CLOSE = "<think>", "</think>"

    def __init__(self) -> None:
        self.state = "start"  # start → think → answer, or start → answer
        self.buffer = ""
        self.trim = False  # drop the whitespace between </think> and the answer

    def feed(self, text: str) -> tuple[str, str]:
        """``(reasoning, answer)`` text that can be released now."""
        self.buffer += text
        reasoning = ""
        while True:
            if self.state == "start":
                head = self.buffer.lstrip()
                if head.startswith(self.OPEN):
                    self.buffer, self.state = head[len(self.OPEN) :], "think"
                    continue
                if not head or self.OPEN.startswith(head):
                    return reasoning, ""
                self.state = "answer"
            elif self.state == "think":
                end = self.buffer.find(self.CLOSE)
                if end < 0:
                    keep = _partial_suffix(self.buffer, self.CLOSE)
                    cut = len(self.buffer) - keep
                    reasoning, self.buffer = reasoning + self.buffer[:cut], self.buffer[cut:]
                    return reasoning, ""
                reasoning += self.buffer[:end]
                self.buffer = self.buffer[end + len(self.CLOSE) :]
                self.state, self.trim = "answer", True
            else:
                if self.trim:
                    self.buffer = self.buffer.lstrip()
                    if not self.buffer:
                        return reasoning, ""
                    self.trim = False
                answer, self.buffer = self.buffer, ""
                return reasoning, answer

    def flush(self) -> tuple[str, str]:
        rest, self.buffer = self.buffer, ""
        if self.state == "think":
            return rest, ""
        return "", rest.lstrip() if self.trim else rest


def split_think(content: str) -> tuple[str, str]:
    """``(reasoning, answer)`` of a whole response's content."""
    splitter = ThinkSplitter()
    reasoning, answer = splitter.feed(content)
    more_reasoning, more_answer = splitter.flush()
    return (reasoning + more_reasoning).strip(), answer + more_answer


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that could begin ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


def sources(data: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """``(citations, search_results)``; citations fall back to the results' URLs."""
    results = [r for r in data.get("search_results") or [] if isinstance(r, dict)]
    citations = [c for c in data.get("citations") or [] if isinstance(c, str)]
    if not citations:
        citations = [r["url"] for r in results if isinstance(r.get("url"), str)]
    return citations, results


def citation_annotations(
    content: str, citations: list[str], results: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """One OpenAI ``url_citation`` per citation, spanning its first ``[n]`` marker if any."""
    titles = {r.get("url"): r.get("title") for r in results}
    annotations = []
    for number, url in enumerate(citations, start=1):
        marker = f"[{number}]"
        start = content.find(marker)
        start, end = (start, start + len(marker)) if start >= 0 else (0, 0)
        annotations.append(
            {
                "type": "url_citation",
                "url_citation": {
                    "start_index": start,
                    "end_index": end,
                    "url": url,
                    "title": titles.get(url) or url,
                },
            }
        )
    return annotations


def merge_turns(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Join consecutive user (or assistant) messages: Perplexity 400s unless roles alternate."""
    out: list[dict[str, Any]] = []
    for message in messages:
        prev = out[-1] if out else None
        if (
            prev is not None
            and message["role"] == prev["role"]
            and message["role"] in ("user", "assistant")
            and not prev.get("tool_calls")
            and not message.get("tool_calls")
        ):
            prev["content"] = _join(prev.get("content"), message.get("content"))
        else:
            out.append(dict(message))
    return out


def _join(first: Any, second: Any) -> Any:
    if isinstance(first, str) and isinstance(second, str):
        return f"{first}\n\n{second}"

    def parts(content: Any) -> list[Any]:
        if isinstance(content, list):
            return list(content)
        return [{"type": "text", "text": content}] if content else []

    return parts(first) + parts(second)


def response_format(fmt: Any) -> dict[str, Any] | None:
    """Perplexity knows ``json_schema`` (schema required) and ``regex``, not ``json_object``."""
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_schema", "json_schema": {"schema": {"type": "object"}}}
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or {}
        keep = ("name", "description", "schema", "strict")
        out = {key: spec[key] for key in keep if spec.get(key) is not None}
        out.setdefault("schema", {"type": "object"})
        return {"type": "json_schema", "json_schema": out}
    return fmt if fmt.get("type") == "regex" else None


ADAPTER = PerplexityAdapter()
