"""A fake Perplexity Sonar API: ``POST /chat/completions`` (whole and SSE) with web search.

Answers cite two sources derived from the question (the last paragraph of the last user
message): ``content`` carries ``[1]``/``[2]``
markers, the top level carries ``citations`` and ``search_results``, and ``usage`` has
Perplexity's extras (``citation_tokens``, ``num_search_queries``, ``reasoning_tokens`` outside
``completion_tokens``, ``cost``). ``sonar-reasoning*`` models open the content with
``<think>…</think>``, even with a response format. Streams repeat the citations and a running
``usage`` on every chunk, and split the text into small pieces so the ``<think>`` tags straddle
chunk boundaries. Like Perplexity it rejects unknown fields and non-alternating roles.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import FakeState
from .openai_common import (
    CREATED,
    count_tokens,
    fake_tool_calls,
    last_text,
    prompt_tokens,
    record,
    sample,
    scripted,
    sse_response,
    unauthorized,
)

ACCEPTED = frozenset(
    {
        "model",
        "messages",
        "stream",
        "max_tokens",
        "temperature",
        "top_p",
        "top_k",
        "stop",
        "presence_penalty",
        "frequency_penalty",
        "response_format",
        "reasoning_effort",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
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
MESSAGE_FIELDS = frozenset({"role", "content", "tool_calls", "tool_call_id", "name"})
ERROR_TYPES = {400: "invalid_parameter", 401: "unauthorized", 429: "rate_limit_exceeded"}


def error(status: int, message: str | None = None) -> dict[str, Any]:
    text = message or {
        401: "Invalid API key provided.",
        429: "Rate limit exceeded. Please try again later.",
        500: "Internal server error.",
        503: "Service temporarily unavailable.",
    }.get(status, "Bad request.")
    return {
        "error": {"message": text, "type": ERROR_TYPES.get(status, "server_error"), "code": status}
    }


def reject(message: str) -> Response:
    return JSONResponse(error(400, message), status_code=400)


def validate(body: Any) -> Response | None:
    if not isinstance(body, dict) or not body.get("model"):
        return reject("Field 'model' is required.")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return reject("Field 'messages' is required.")
    for key in body:
        if key not in ACCEPTED:
            return reject(f"Unrecognized request argument supplied: {key}")
    roles = []
    for message in messages:
        extra = set(message) - MESSAGE_FIELDS
        if extra:
            return reject(f"Unsupported message field: {sorted(extra)[0]}")
        roles.append(message.get("role"))
    turns = [r for r in roles if r != "system"]
    if "developer" in roles:
        return reject("Invalid role: developer")
    for first, second in zip(turns, turns[1:], strict=False):
        if first == second and first in ("user", "assistant"):
            return reject(
                "After the (optional) system message(s), user and assistant roles should be "
                "alternating."
            )
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") not in ("text", "json_schema", "regex"):
        return reject(f"Unsupported response_format type: {fmt.get('type')}")
    spec = fmt.get("json_schema") if isinstance(fmt, dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and "schema" not in (spec or {}):
        return reject("response_format.json_schema.schema is required")
    if isinstance(body.get("tool_choice"), dict):
        return reject("tool_choice must be one of none, auto, required")
    return None


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "query"


def answer_for(body: dict[str, Any]) -> dict[str, Any]:
    model = body["model"]
    question = last_text(body["messages"]).split("\n\n")[-1]  # its last paragraph
    topic = slug(question)
    citations = [f"https://example.com/{topic}/{n}" for n in (1, 2)]
    results = [
        {
            "title": f"Source {n} on {question}"[:80],
            "url": url,
            "date": "2025-01-01",
            "last_updated": "2025-02-01",
            "snippet": f"Snippet {n} about {question}",
            "source": "web",
        }
        for n, url in enumerate(citations, start=1)
    ]
    tool_calls = []
    fmt = body.get("response_format") or {}
    if body.get("tools") and body.get("tool_choice") != "none":
        tool_calls = fake_tool_calls(body)
        text = ""
    elif fmt.get("type") == "json_schema":
        text = json.dumps(sample(fmt["json_schema"]["schema"]))
    else:
        text = f"Here is what I found about {question} [1][2]."
    reasoning = f"The user asks about {question}. Searching." if "reasoning" in model else ""
    if reasoning:
        text = f"<think>\n{reasoning}\n</think>\n\n{text}"
    limit = body.get("max_tokens")
    finish = "tool_calls" if tool_calls else "stop"
    if limit and count_tokens(text) > limit:
        text, finish = " ".join(text.split(" ")[:limit]), "length"
    return {
        "text": text,
        "reasoning_tokens": 3 * count_tokens(reasoning),
        "tool_calls": tool_calls,
        "finish": finish,
        "citations": citations,
        "search_results": results,
    }


def usage(body: dict[str, Any], answer: dict[str, Any], text: str | None = None) -> dict:
    prompt = prompt_tokens(body)
    reasoning = answer["reasoning_tokens"]
    shown = answer["text"] if text is None else text
    completion = count_tokens(re.sub(r"<think>.*?(</think>|$)", "", shown, flags=re.S))
    completion = completion or len(answer["tool_calls"]) * 8
    context = (body.get("web_search_options") or {}).get("search_context_size", "low")
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,  # excludes reasoning_tokens
        "total_tokens": prompt + completion,
        "search_context_size": context,
        "citation_tokens": 120,
        "num_search_queries": 1,
        "reasoning_tokens": reasoning,
        "cost": {
            "input_tokens_cost": round(prompt * 1e-6, 6),
            "output_tokens_cost": round(completion * 1e-6, 6),
            "request_cost": 0.005,
            "total_cost": round(0.005 + (prompt + completion) * 1e-6, 6),
        },
    }


def create_app(state: FakeState) -> Starlette:
    async def chat(request: Request) -> Response:
        body = await record(state, request)
        stream = isinstance(body, dict) and bool(body.get("stream"))
        failed, failure = await scripted(state, stream=stream, errors=lambda status: error(status))
        if failed is not None:
            return failed
        if unauthorized(request) is not None:
            return JSONResponse(error(401), status_code=401)
        if (invalid := validate(body)) is not None:
            return invalid
        answer = answer_for(body)
        rid = f"pplx-{len(state.requests)}"
        top = {
            "id": rid,
            "model": body["model"],
            "created": CREATED,
            "citations": answer["citations"],
            "search_results": answer["search_results"],
        }
        message: dict[str, Any] = {"role": "assistant", "content": answer["text"]}
        if answer["tool_calls"]:
            message["tool_calls"] = answer["tool_calls"]
        if not stream:
            choice = {"index": 0, "message": message, "finish_reason": answer["finish"]}
            return JSONResponse(
                {
                    **top,
                    "object": "chat.completion",
                    "choices": [choice],
                    "usage": usage(body, answer),
                }
            )
        text = answer["text"]
        parts = [text[i : i + 5] for i in range(0, len(text), 5)]
        events, sent = [], ""
        for part in parts:
            sent += part
            choice = {"index": 0, "delta": {"role": "assistant", "content": part}}
            choice["finish_reason"] = None
            events.append(
                {
                    **top,
                    "object": "chat.completion.chunk",
                    "choices": [choice],
                    "usage": usage(body, answer, sent),
                }
            )
        delta: dict[str, Any] = {"role": "assistant", "content": ""}
        if answer["tool_calls"]:
            delta["tool_calls"] = [
                {"index": n, **call} for n, call in enumerate(answer["tool_calls"])
            ]
        final_choice = {
            "index": 0,
            "delta": delta,
            "message": message,
            "finish_reason": answer["finish"],
        }
        events.append(
            {
                **top,
                "object": "chat.completion.chunk",
                "choices": [final_choice],
                "usage": usage(body, answer),
            }
        )
        return sse_response(events, failure)

    routes = [
        Route("/chat/completions", chat, methods=["POST"]),
        Route("/v1/chat/completions", chat, methods=["POST"]),
    ]
    return Starlette(routes=routes)
