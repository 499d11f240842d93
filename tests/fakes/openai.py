"""A fake OpenAI-compatible upstream: ``/chat/completions`` (whole and SSE), ``/images/generations``
and ``/embeddings``, under ``/`` and ``/v1``.

Answers are derived from the request, so tests (and end-to-end runs through the gateway) can
predict them: text is ``"Echo: <last user text>"``; with tools it calls them with arguments built
from their JSON schema; with a ``json_schema`` response format it answers JSON matching the
schema. Like OpenAI it rejects unknown request fields and unknown message fields, and the
reasoning models' forbidden parameters. Keyword options turn it into a lookalike of another
compatible vendor (Mistral's field list and 422s, usage on the last chunk, no usage at all,
reasoning tokens outside ``completion_tokens`` as xAI reports them).
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import FakeState
from .openai_common import (
    CREATED,
    count_tokens,
    error_body,
    fake_tool_calls,
    is_reasoning_model,
    last_text,
    pieces,
    prompt_tokens,
    record,
    sample,
    scripted,
    sse_response,
    text_of,
    tiny_png,
    unauthorized,
    vector,
)

__all__ = ["MISTRAL_ACCEPTED", "OPENAI_ACCEPTED", "create_app", "tiny_png", "vector"]

OPENAI_ACCEPTED = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "n",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "user",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "reasoning_effort",
        "verbosity",
        "service_tier",
        "store",
        "metadata",
        "modalities",
        "audio",
        "prediction",
        "web_search_options",
        "prompt_cache_key",
        "safety_identifier",
        "functions",
        "function_call",
    }
)
MISTRAL_ACCEPTED = frozenset(
    {
        "model",
        "messages",
        "temperature",
        "top_p",
        "max_tokens",
        "stream",
        "stop",
        "random_seed",
        "response_format",
        "tools",
        "tool_choice",
        "presence_penalty",
        "frequency_penalty",
        "n",
        "parallel_tool_calls",
        "prediction",
        "prompt_mode",
        "safe_prompt",
    }
)
MESSAGE_FIELDS = frozenset(
    {"role", "content", "name", "tool_calls", "tool_call_id", "refusal", "audio", "function_call"}
)
PART_FIELDS = {
    "text": {"type", "text"},
    "image_url": {"type", "image_url"},
    "input_audio": {"type", "input_audio"},
    "file": {"type", "file"},
}
# ------------------------------------------------------------------ the app


def create_app(
    state: FakeState,
    *,
    accepted_fields: frozenset[str] | None = OPENAI_ACCEPTED,
    reject_status: int = 400,
    stream_usage: str = "option",  # "option" (include_usage), "always" (last chunk), "never"
    reasoning_field: str = "reasoning_content",
    reasoning_in_completion: bool = True,
    require_auth: bool = True,
    embeddings_base64: bool = False,
) -> Starlette:
    """The fake upstream. Defaults behave like OpenAI; the options mimic other vendors."""

    def reject(message: str, param: str | None = None) -> Response:
        return JSONResponse(
            error_body(message, "invalid_request_error", None, param), status_code=reject_status
        )

    def validate(body: Any) -> Response | None:
        if not isinstance(body, dict) or not body.get("model"):
            return reject("you must provide a model parameter", "model")
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return reject("[] is too short - 'messages'", "messages")
        if accepted_fields is None:
            return None
        for key in body:
            if key not in accepted_fields:
                return reject(f"Unrecognized request argument supplied: {key}", key)
        for number, message in enumerate(body["messages"]):
            for key in message:
                if key not in MESSAGE_FIELDS:
                    return reject(
                        f"Additional properties are not allowed ('{key}' was unexpected)"
                        f" - 'messages.{number}'",
                        f"messages.{number}",
                    )
            for part in message.get("content") if isinstance(message.get("content"), list) else []:
                allowed = PART_FIELDS.get(part.get("type"), set(part))
                extra = set(part) - allowed
                if extra:
                    return reject(
                        f"Additional properties are not allowed ({sorted(extra)[0]!r} was"
                        f" unexpected) - 'messages.{number}.content'",
                        f"messages.{number}.content",
                    )
        model = body["model"]
        if is_reasoning_model(model):
            if "max_tokens" in body:
                return reject(
                    "Unsupported parameter: 'max_tokens' is not supported with this model. "
                    "Use 'max_completion_tokens' instead.",
                    "max_tokens",
                )
            if body.get("temperature", 1) != 1:
                return reject(
                    f"Unsupported value: 'temperature' does not support "
                    f"{body['temperature']} with this model. Only the default (1) value is "
                    "supported.",
                    "temperature",
                )
        elif "reasoning_effort" in body and model.startswith("gpt-"):
            return reject(
                "Unsupported parameter: 'reasoning_effort' is not supported with this model.",
                "reasoning_effort",
            )
        return None

    def plan(body: dict[str, Any]) -> dict[str, Any]:
        messages = body["messages"]
        model = body["model"]
        user = last_text(messages)
        out: dict[str, Any] = {"content": None, "refusal": None, "tool_calls": []}
        out["finish"] = "stop"
        fmt = body.get("response_format") or {}
        if (
            body.get("tools")
            and body.get("tool_choice") != "none"
            and (messages[-1].get("role") != "tool")
        ):
            out["tool_calls"] = fake_tool_calls(body)
            out["finish"] = "tool_calls" if out["tool_calls"] else "stop"
        elif "REFUSE" in user:
            out["refusal"] = "I can't help with that."
        elif fmt.get("type") == "json_schema":
            out["content"] = json.dumps(sample((fmt.get("json_schema") or {}).get("schema")))
        elif fmt.get("type") == "json_object":
            out["content"] = json.dumps({"echo": user})
        else:
            if messages[-1].get("role") == "tool":
                text = f"The tool said {text_of(messages[-1].get('content'))}"
            else:
                text = f"Echo: {user}"
            limit = body.get("max_completion_tokens") or body.get("max_tokens")
            words = text.split(" ")
            if limit and len(words) > limit:
                text, out["finish"] = " ".join(words[:limit]), "length"
            out["content"] = text
        out["reasoning"] = f"Thinking about {user}" if "reason" in model else ""
        out["annotations"] = []
        if "search" in model and out["content"]:
            out["annotations"] = [
                {
                    "type": "url_citation",
                    "url_citation": {
                        "start_index": 0,
                        "end_index": 4,
                        "url": "https://example.com/echo",
                        "title": "Echo source",
                    },
                }
            ]
        return out

    def usage(body: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        prompt = prompt_tokens(body)
        hidden = 64 if is_reasoning_model(body["model"]) else 0
        reasoning = hidden + count_tokens(answer["reasoning"])
        visible = count_tokens(answer["content"] or answer["refusal"] or "")
        visible += sum(max(1, len(c["function"]["arguments"]) // 4) for c in answer["tool_calls"])
        completion = visible + reasoning if reasoning_in_completion else visible
        cached = prompt // 2 if body.get("prompt_cache_key") else 0
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + visible + reasoning,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": reasoning,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def whole(body: dict[str, Any], answer: dict[str, Any], rid: str) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": answer["content"],
            "refusal": answer["refusal"],
        }
        if answer["tool_calls"]:
            message["tool_calls"] = answer["tool_calls"]
        if answer["reasoning"]:
            message[reasoning_field] = answer["reasoning"]
        if answer["annotations"]:
            message["annotations"] = answer["annotations"]
        return {
            "id": rid,
            "object": "chat.completion",
            "created": CREATED,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": answer["finish"],
                }
            ],
            "usage": usage(body, answer),
            "system_fingerprint": "fp_fake",
            "service_tier": "default",
        }

    def stream_events(body: dict[str, Any], answer: dict[str, Any], rid: str) -> list[dict]:
        base = {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": body["model"],
            "system_fingerprint": "fp_fake",
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return {**base, "choices": [choice], "usage": None}

        events = [chunk({"role": "assistant", "content": "", "refusal": None})]
        events += [chunk({reasoning_field: p}) for p in pieces(answer["reasoning"])]
        events += [chunk({"content": p}) for p in pieces(answer["content"] or "")]
        if answer["refusal"]:
            events.append(chunk({"refusal": answer["refusal"]}))
        for number, call in enumerate(answer["tool_calls"]):
            head = {"index": number, "id": call["id"], "type": "function"}
            args = call["function"]["arguments"]
            if number == 0:  # id and name first, then the arguments in two pieces
                fn = {"name": call["function"]["name"], "arguments": ""}
                events.append(chunk({"tool_calls": [{**head, "function": fn}]}))
                for part in (args[: len(args) // 2], args[len(args) // 2 :]):
                    piece = {"index": 0, "function": {"arguments": part}}
                    events.append(chunk({"tool_calls": [piece]}))
            else:  # a whole call in one delta
                fn = {"name": call["function"]["name"], "arguments": args}
                events.append(chunk({"tool_calls": [{**head, "function": fn}]}))
        if answer["annotations"]:
            events.append(chunk({"annotations": answer["annotations"]}))
        final = chunk({}, answer["finish"])
        if stream_usage == "always":
            final["usage"] = usage(body, answer)
        events.append(final)
        include = (body.get("stream_options") or {}).get("include_usage")
        if stream_usage == "option" and include:
            events.append({**base, "choices": [], "usage": usage(body, answer)})
        return events

    async def chat(request: Request) -> Response:
        body = await record(state, request)
        stream = isinstance(body, dict) and bool(body.get("stream"))
        failed, failure = await scripted(state, stream=stream)
        if failed is not None:
            return failed
        if require_auth and (denied := unauthorized(request)) is not None:
            return denied
        if (invalid := validate(body)) is not None:
            return invalid
        answer = plan(body)
        rid = f"chatcmpl-fake{len(state.requests)}"
        if stream:
            return sse_response(stream_events(body, answer, rid), failure)
        return JSONResponse(whole(body, answer, rid))

    async def images(request: Request) -> Response:
        body = await record(state, request)
        failed, _ = await scripted(state, stream=False)
        if failed is not None:
            return failed
        if require_auth and (denied := unauthorized(request)) is not None:
            return denied
        if not isinstance(body, dict) or not body.get("prompt"):
            return reject("Missing required parameter: 'prompt'.", "prompt")
        model = str(body.get("model") or "dall-e-2")
        if model.startswith("gpt-image") and "response_format" in body:
            return reject("Unknown parameter: 'response_format'.", "response_format")
        count = int(body.get("n") or 1)
        if model == "dall-e-3" and count != 1:
            return reject("You must provide n=1 for this model.", "n")
        as_url = "-url" in model or body.get("response_format", "url") == "url"
        as_url = as_url and not model.startswith("gpt-image")
        data = []
        for number in range(count):
            seed = f"{body['prompt']}#{number}"
            if as_url:
                item = {"url": f"{str(request.base_url).rstrip('/')}/files/{number}.png"}
            else:
                item = {"b64_json": base64.b64encode(tiny_png(seed)).decode()}
            if model == "dall-e-3":
                item["revised_prompt"] = f"A detailed picture of {body['prompt']}"
            data.append(item)
        answer: dict[str, Any] = {"created": CREATED, "data": data}
        if model.startswith("gpt-image"):
            text = count_tokens(body["prompt"])
            answer.update(
                background="opaque",
                output_format="png",
                quality=body.get("quality", "high"),
                size=body.get("size", "1024x1024"),
                usage={
                    "input_tokens": text,
                    "input_tokens_details": {"image_tokens": 0, "text_tokens": text},
                    "output_tokens": 4160 * count,
                    "total_tokens": text + 4160 * count,
                },
            )
        return JSONResponse(answer)

    async def files(request: Request) -> Response:
        await record(state, request)
        name = request.path_params["name"]
        return Response(tiny_png(name), media_type="image/png")

    async def embeddings(request: Request) -> Response:
        body = await record(state, request)
        failed, _ = await scripted(state, stream=False)
        if failed is not None:
            return failed
        if require_auth and (denied := unauthorized(request)) is not None:
            return denied
        if not isinstance(body, dict) or body.get("input") in (None, "", []):
            return reject("'input' is a required property", "input")
        model = str(body.get("model") or "")
        if body.get("dimensions") and not model.startswith("text-embedding-3"):
            return reject("This model does not support specifying dimensions.", "dimensions")
        raw = body["input"]
        inputs = [raw] if isinstance(raw, str) or (raw and isinstance(raw[0], int)) else raw
        size = body.get("dimensions") or {"text-embedding-3-large": 3072}.get(model, 1536)
        encoding = "base64" if embeddings_base64 else body.get("encoding_format", "float")
        data, tokens = [], 0
        for number, item in enumerate(inputs):
            text = item if isinstance(item, str) else " ".join(map(str, item))
            tokens += len(item) if isinstance(item, list) else max(1, count_tokens(text))
            values = vector(text, size)
            embedding: Any = values
            if encoding == "base64":
                embedding = base64.b64encode(struct.pack(f"<{size}f", *values)).decode()
            data.append({"object": "embedding", "index": number, "embedding": embedding})
        data.reverse()  # clients must order by index, not by position
        return JSONResponse(
            {
                "object": "list",
                "model": model,
                "data": data,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    routes = [Route("/files/{name}", files, methods=["GET"])]
    for prefix in ("", "/v1"):
        routes += [
            Route(f"{prefix}/chat/completions", chat, methods=["POST"]),
            Route(f"{prefix}/images/generations", images, methods=["POST"]),
            Route(f"{prefix}/embeddings", embeddings, methods=["POST"]),
        ]
    return Starlette(routes=routes)
