"""A fake Gemini API (generativelanguage ``v1beta`` / ``v1``) speaking the documented wire format.

Routes (``POST /{version}/models/{model}:{action}``): ``generateContent``,
``streamGenerateContent`` (``?alt=sse`` → ``data: {json}\\r\\n\\r\\n`` events ending at EOF;
without it a JSON array), Imagen ``predict`` and ``batchEmbedContents``. With
``responseModalities: ["IMAGE"]`` generateContent answers like a Gemini image model (an
``inlineData`` PNG shaped by ``imageConfig.aspectRatio``; ``[filtered]`` → ``IMAGE_SAFETY``).

Answers are derived from the request so they are deterministic:

* tools offered (mode AUTO/ANY) and no ``functionResponse`` in the last turn → a
  ``functionCall`` for every declared tool named in the user text (else the first allowed
  tool), args sampled from its schema; the first call carries a ``thoughtSignature``;
* a ``functionResponse`` turn → ``"Result: {json}"``; ``responseMimeType`` JSON → a JSON
  document sampled from ``responseSchema``; otherwise ``"Echo: <user text>"``;
* ``includeThoughts`` → a ``thought: true`` part (and a trailing signed empty text part);
* a ``googleSearch`` tool → ``groundingMetadata`` citing ``https://example.com/...``;
* ``[blocked]`` in the prompt → ``promptFeedback.blockReason``; ``[unsafe]`` → finish SAFETY;
  ``maxOutputTokens`` too small → truncated text with ``MAX_TOKENS``; a stop sequence cuts;
* usage: prompt ≈ request chars / 4 (half of it cached once it reaches 1024 tokens),
  candidates ≈ answer chars / 4, thoughts = summary tokens + 20.

Keys: none → 403 PERMISSION_DENIED; ``INVALID_KEY`` → 400 ``API_KEY_INVALID`` (as Google
does). `FakeState` failures: status (default Google bodies, 429 with ``RetryInfo`` 12s),
delay, malformed body, ``stream_error_after`` (N chunks then an in-band error event).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import random
import re
import struct
import zlib
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from . import Failure, FakeState

INVALID_KEY = "invalid-key"
SIGNATURE = base64.b64encode(b"fake-thought-signature").decode()
EMBED_DIMENSIONS = 3072
IMAGEN_ASPECTS = {"1:1", "3:4", "4:3", "9:16", "16:9"}
NATIVE_ASPECTS = IMAGEN_ASPECTS | {"2:3", "3:2", "4:5", "5:4", "21:9"}
IMAGE_TOKENS = 1290  # what Gemini image models report per generated image


def dims(aspect: str) -> tuple[int, int]:
    """Tiny pixel sizes with the right shape (longest side 16)."""
    a, b = (int(x) for x in aspect.split(":"))
    return round(16 * a / max(a, b)), round(16 * b / max(a, b))


_ERRORS = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
    403: ("PERMISSION_DENIED", "Method doesn't allow unregistered callers."),
    404: ("NOT_FOUND", "models/unknown is not found for API version v1beta."),
    429: ("RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan."),
    500: ("INTERNAL", "An internal error has occurred. Please retry."),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "The request timed out. Please try again."),
}


def error_body(code: int, message: str | None = None, **extra: Any) -> dict[str, Any]:
    status, default = _ERRORS.get(code, ("UNKNOWN", "Unknown error."))
    error: dict[str, Any] = {"code": code, "message": message or default, "status": status}
    if code == 429:
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [{"quotaMetric": "generate_content_free_tier_requests"}],
            },
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12s"},
        ]
    error.update(extra)
    return {"error": error}


def _tokens(text: str) -> int:
    return math.ceil(len(text) / 4) if text else 0


def tiny_png(width: int, height: int, seed: str) -> bytes:
    """A real PNG (RGB, one colour derived from ``seed``)."""
    r, g, b = hashlib.sha256(seed.encode()).digest()[:3]
    rows = b"".join(b"\x00" + bytes([r, g, b]) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def sample(schema: Any, hint: str) -> Any:
    """A value that satisfies a (Gemini-subset) schema, deterministic from ``hint``."""
    if not isinstance(schema, dict):
        return hint
    if schema.get("anyOf"):
        return sample(schema["anyOf"][0], hint)
    if schema.get("enum"):
        return schema["enum"][0]
    kind = str(schema.get("type", "object")).lower()
    if kind == "object":
        props = schema.get("properties") or {}
        keys = schema.get("required") or list(props)
        return {k: sample(props.get(k), hint) for k in keys}
    if kind == "array":
        return [sample(schema.get("items"), hint)]
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    return hint


def _hint(text: str) -> str:
    words = re.findall(r"\b[A-Z][a-z]+\b", text)
    return words[-1] if words else "example"


def plan(body: dict[str, Any], model: str) -> dict[str, Any]:
    """The whole GenerateContentResponse for a request (streams are cut from it)."""
    contents = body.get("contents") or []
    last_parts = (contents[-1].get("parts") or []) if contents else []
    user_text = " ".join(p["text"] for p in last_parts if "text" in p)
    results = [p["functionResponse"] for p in last_parts if "functionResponse" in p]
    attachments = sum(1 for p in last_parts if "inlineData" in p or "fileData" in p)
    gen = body.get("generationConfig") or {}
    tools = body.get("tools") or []
    declarations = [d for t in tools for d in t.get("functionDeclarations") or []]
    calling = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    mode = calling.get("mode", "AUTO")
    allowed = calling.get("allowedFunctionNames") or [d["name"] for d in declarations]
    rid = "resp-" + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    prompt_tokens = _tokens(
        json.dumps([contents, body.get("systemInstruction"), tools], sort_keys=True)
    )
    usage: dict[str, Any] = {"promptTokenCount": prompt_tokens}
    if prompt_tokens >= 1024:
        usage["cachedContentTokenCount"] = prompt_tokens // 2
    response: dict[str, Any] = {"usageMetadata": usage, "modelVersion": model, "responseId": rid}
    if "[blocked]" in user_text:
        response["promptFeedback"] = {"blockReason": "SAFETY", "safetyRatings": []}
        usage["totalTokenCount"] = prompt_tokens
        return response

    if "IMAGE" in [str(m).upper() for m in gen.get("responseModalities") or []]:
        return _image_answer(response, user_text, gen)
    parts: list[dict[str, Any]] = []
    thinking = (gen.get("thinkingConfig") or {}).get("includeThoughts")
    if thinking:
        thought = f"Thinking about the request: {user_text[:60] or 'tool results'}."
        parts.append({"text": thought, "thought": True})
        usage["thoughtsTokenCount"] = _tokens(thought) + 20
    finish = "STOP"
    text = ""
    if declarations and not results and mode in ("AUTO", "ANY", "VALIDATED"):
        named = [d for d in declarations if d["name"] in allowed and d["name"] in user_text]
        chosen = named or [d for d in declarations if d["name"] in allowed][:1]
        for i, decl in enumerate(chosen):
            call = {"name": decl["name"], "args": sample(decl.get("parameters"), _hint(user_text))}
            part: dict[str, Any] = {"functionCall": call}
            if i == 0:
                part["thoughtSignature"] = SIGNATURE
            parts.append(part)
        usage["candidatesTokenCount"] = _tokens(json.dumps([p["functionCall"] for p in parts]))
    else:
        if "[unsafe]" in user_text:
            finish = "SAFETY"
        elif results:
            text = " ".join(
                "Result: " + json.dumps(r.get("response"), sort_keys=True) for r in results
            )
        elif gen.get("responseMimeType") == "application/json":
            schema = gen.get("responseSchema")
            doc = sample(schema, _hint(user_text)) if schema else {"answer": user_text}
            text = json.dumps(doc)
        else:
            text = f"Echo: {user_text}" + (f" [{attachments} attachment(s)]" if attachments else "")
        for stop in gen.get("stopSequences") or []:
            if stop and stop in text:
                text = text[: text.index(stop)]
        limit = gen.get("maxOutputTokens")
        if limit and _tokens(text) > limit:
            text, finish = text[: limit * 4], "MAX_TOKENS"
        if text:
            parts.append({"text": text})
        usage["candidatesTokenCount"] = _tokens(text)
    if thinking:
        parts.append({"text": "", "thoughtSignature": SIGNATURE})
    candidate: dict[str, Any] = {
        "content": {"role": "model", "parts": parts},
        "finishReason": finish,
        "index": 0,
        "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}],
    }
    if any("googleSearch" in t for t in tools) and text:
        query = user_text or "query"
        candidate["groundingMetadata"] = {
            "webSearchQueries": [query],
            "groundingChunks": [
                {
                    "web": {
                        "uri": f"https://example.com/search?q={len(query)}",
                        "title": "example.com",
                    }
                }
            ],
            "groundingSupports": [
                {
                    "segment": {"startIndex": 0, "endIndex": len(text.encode()), "text": text},
                    "groundingChunkIndices": [0],
                    "confidenceScores": [0.9],
                }
            ],
        }
    response["candidates"] = [candidate]
    usage["totalTokenCount"] = (
        prompt_tokens + usage.get("candidatesTokenCount", 0) + usage.get("thoughtsTokenCount", 0)
    )
    return response


def _image_answer(response: dict[str, Any], prompt: str, gen: dict[str, Any]) -> dict[str, Any]:
    """A Gemini-native image model's answer: an inlineData PNG (plus text if asked)."""
    usage = response["usageMetadata"]
    if "[filtered]" in prompt:
        response["candidates"] = [{"finishReason": "IMAGE_SAFETY", "index": 0}]
        usage["totalTokenCount"] = usage["promptTokenCount"]
        return response
    aspect = (gen.get("imageConfig") or {}).get("aspectRatio", "1:1")
    png = base64.b64encode(tiny_png(*dims(aspect), prompt)).decode()
    parts: list[dict[str, Any]] = []
    if "TEXT" in [str(m).upper() for m in gen.get("responseModalities") or []]:
        parts.append({"text": "Here is your image."})
    parts.append({"inlineData": {"mimeType": "image/png", "data": png}})
    content = {"role": "model", "parts": parts}
    response["candidates"] = [{"content": content, "finishReason": "STOP", "index": 0}]
    usage["candidatesTokenCount"] = IMAGE_TOKENS
    usage["totalTokenCount"] = usage["promptTokenCount"] + IMAGE_TOKENS
    return response


def stream_chunks(response: dict[str, Any]) -> list[dict[str, Any]]:
    """Cut a whole response into stream chunks: thoughts, text in pieces, each functionCall
    whole; cumulative usageMetadata on each; finishReason (+grounding) on the last."""
    head = {k: response[k] for k in ("modelVersion", "responseId")}
    usage = response["usageMetadata"]
    if "candidates" not in response:
        return [{**response}]
    candidate = response["candidates"][0]
    pieces: list[dict[str, Any]] = []
    all_parts = (candidate.get("content") or {}).get("parts") or []
    for part in all_parts:
        text = part.get("text")
        if text and not part.get("thought"):
            words = text.split(" ")
            step = max(1, math.ceil(len(words) / 3))
            for i in range(0, len(words), step):
                piece = " ".join(words[i : i + step]) + (" " if i + step < len(words) else "")
                pieces.append({"text": piece})
        elif part.get("thought") or "functionCall" in part or "inlineData" in part:
            pieces.append(part)
    tail_parts = [p for p in all_parts if p.get("text") == ""]
    chunks: list[dict[str, Any]] = []
    emitted = 0
    for piece in pieces:
        emitted += _tokens(piece.get("text", "")) if "text" in piece else 0
        partial = {
            **usage,
            "candidatesTokenCount": min(emitted, usage.get("candidatesTokenCount", 0)),
        }
        chunk_candidate = {"content": {"role": "model", "parts": [piece]}, "index": 0}
        chunks.append({"candidates": [chunk_candidate], "usageMetadata": partial, **head})
    last = {k: v for k, v in candidate.items() if k != "content"}
    last["content"] = {"role": "model", "parts": tail_parts or [{"text": ""}]}
    chunks.append({"candidates": [last], "usageMetadata": usage, **head})
    return chunks


def embed_values(text: str, dimensions: int) -> list[float]:
    rng = random.Random(hashlib.sha256(text.encode()).digest())
    values = [rng.gauss(0, 1) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 6) for v in values]


def _predict(body: dict[str, Any]) -> Response:
    prompt = str(((body.get("instances") or [{}])[0]).get("prompt") or "")
    params = body.get("parameters") or {}
    count = int(params.get("sampleCount", 1))
    aspect = params.get("aspectRatio", "1:1")
    if not 1 <= count <= 4 or aspect not in IMAGEN_ASPECTS or not prompt:
        return JSONResponse(error_body(400, "Invalid Imagen parameters."), status_code=400)
    if "[filtered]" in prompt:
        reason = "Your current safety filter threshold filtered out the generated images."
        return JSONResponse({"predictions": [{"raiFilteredReason": reason}]})
    images = [tiny_png(*dims(aspect), f"{prompt}:{i}") for i in range(count)]
    predictions = [
        {"mimeType": "image/png", "bytesBase64Encoded": base64.b64encode(png).decode()}
        for png in images
    ]
    return JSONResponse({"predictions": predictions})


def _embed(body: dict[str, Any], model: str) -> Response:
    embeddings = []
    for item in body.get("requests") or []:
        if item.get("model") != f"models/{model}":
            message = f"Model {item.get('model')} does not match the URL model models/{model}."
            return JSONResponse(error_body(400, message), status_code=400)
        text = " ".join(p.get("text", "") for p in (item.get("content") or {}).get("parts", []))
        if not text:
            return JSONResponse(error_body(400, "* content: must not be empty"), status_code=400)
        dims = int(item.get("outputDimensionality") or EMBED_DIMENSIONS)
        embeddings.append({"values": embed_values(text, dims)})
    return JSONResponse({"embeddings": embeddings})


def _sse(chunks: list[dict[str, Any]], failure: Failure | None) -> StreamingResponse:
    async def events():
        for i, chunk in enumerate(chunks):
            if (
                failure
                and failure.stream_error_after is not None
                and i >= failure.stream_error_after
            ):
                body = failure.body or error_body(503)
                yield f"data: {json.dumps(body)}\r\n\r\n"
                return
            yield f"data: {json.dumps(chunk)}\r\n\r\n"
            await asyncio.sleep(0)

    return StreamingResponse(events(), media_type="text/event-stream")


def create_app(state: FakeState) -> Starlette:
    async def handle(request: Request) -> Response:
        target = request.path_params["target"]
        model_path, _, action = target.rpartition(":")
        model = model_path.removeprefix("models/")
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        state.requests.append(
            {
                "path": request.url.path,
                "query": dict(request.query_params),
                "headers": dict(request.headers),
                "json": body,
                "model": model,
                "action": action,
            }
        )
        key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
        if not key:
            return JSONResponse(error_body(403), status_code=403)
        if key == INVALID_KEY:
            detail = {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
            }
            message = "API key not valid. Please pass a valid API key."
            return JSONResponse(error_body(400, message, details=[detail]), status_code=400)
        failure = state.take_failure()
        if failure and failure.delay:
            await asyncio.sleep(failure.delay)
        if failure and failure.status:
            payload = failure.body if failure.body is not None else error_body(failure.status)
            if isinstance(payload, str):
                return Response(payload, failure.status, headers=failure.headers)
            return JSONResponse(payload, failure.status, headers=failure.headers)
        streaming = action == "streamGenerateContent"
        if failure and failure.malformed:
            if streaming:
                return StreamingResponse(
                    iter(["data: {not json\r\n\r\n"]), media_type="text/event-stream"
                )
            return Response("<html>502 upstream exploded</html>", 200, media_type="text/html")
        if not isinstance(body, dict):
            return JSONResponse(error_body(400, "Invalid JSON payload received."), status_code=400)
        if action == "predict":
            return _predict(body)
        if action == "batchEmbedContents":
            return _embed(body, model)
        if action not in ("generateContent", "streamGenerateContent"):
            return JSONResponse(error_body(404, f"Unknown action {action}."), status_code=404)
        if not body.get("contents"):
            return JSONResponse(error_body(400, "* contents: must not be empty"), status_code=400)
        aspect = ((body.get("generationConfig") or {}).get("imageConfig") or {}).get("aspectRatio")
        if aspect is not None and aspect not in NATIVE_ASPECTS:
            message = f"Unsupported aspect ratio: {aspect}"
            return JSONResponse(error_body(400, message), status_code=400)
        response = plan(body, model)
        if not streaming:
            return JSONResponse(response)
        chunks = stream_chunks(response)
        if request.query_params.get("alt") != "sse":
            return JSONResponse(chunks)
        return _sse(chunks, failure)

    return Starlette(routes=[Route("/{version}/{target:path}", handle, methods=["POST"])])
