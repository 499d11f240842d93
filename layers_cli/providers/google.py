"""Google Gemini adapter: chat via ``generateContent`` / ``streamGenerateContent?alt=sse``,
images via Imagen ``:predict`` or Gemini image models, embeddings via ``batchEmbedContents``.

Request translation lives in `google_translate`; this module owns the HTTP calls, Gemini's
error bodies (retry delay in ``RetryInfo``, bad keys answered as 400) and the response and
stream parsing back into canonical `Completion` / `Chunk` values.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import (
    CapabilityError,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderServerError,
)
from ..tokens import estimate_messages_tokens, estimate_text_tokens
from . import DEFAULT_BASE_URLS
from .base import (
    Chunk,
    Completion,
    EmbedResult,
    ImageResult,
    ToolCallDelta,
    UpstreamCall,
    Usage,
    error_for_status,
    iter_sse,
    open_stream,
    parse_retry_after,
    send,
)
from .google_translate import (
    PROVIDER,
    build_request,
    google_metadata,
    grounding_annotations,
    map_finish,
    parse_usage,
    tool_call,
)

if TYPE_CHECKING:
    from .http import Response

EMBED_BATCH = 100  # batchEmbedContents accepts at most 100 requests


def _ratios(*names: str) -> dict[str, float]:
    return {n: int(n.split(":")[0]) / int(n.split(":")[1]) for n in names}


IMAGEN_ASPECTS = _ratios("1:1", "3:4", "4:3", "9:16", "16:9")
NATIVE_ASPECTS = _ratios("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")


@dataclass
class GoogleToolCallDelta(ToolCallDelta):
    """A first tool-call delta that also carries ``extra_content.google.thought_signature``
    (Gemini 3 needs it echoed back). `base.ToolCallDelta` has no such field yet, so the
    server reads it with ``getattr(delta, "extra_content", None)``."""

    extra_content: dict[str, Any] | None = None


# google.rpc.Code names → HTTP status, for mid-stream errors that carry no usable ``code``.
_STATUS_CODES = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ABORTED": 409,
    "ALREADY_EXISTS": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "DATA_LOSS": 500,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


# --------------------------------------------------------------------------- errors


def parse_retry_delay(value: Any) -> float | None:
    """``"12s"`` / ``"34.4s"`` (protobuf Duration JSON) → seconds."""
    if not isinstance(value, str):
        return None
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)s\s*", value)
    return float(match.group(1)) if match else None


def error_from_body(
    status: int | None, data: Any, fallback: str, retry_after: float | None = None
) -> ProviderError:
    """A Gemini error body (HTTP or mid-stream) → the mapped Layers error.

    Gemini answers a bad API key with 400 ``API_KEY_INVALID``; that is the gateway's
    credential, so it maps like a 401."""
    error = data.get("error") if isinstance(data, dict) else None
    message = fallback
    if isinstance(error, dict):
        message = str(error.get("message") or fallback)
        code = error.get("code")
        if status is None and isinstance(code, int) and code >= 400:
            status = code
        if status is None:
            status = _STATUS_CODES.get(str(error.get("status")), 500)
        for detail in error.get("details") or []:
            if not isinstance(detail, dict):
                continue
            kind = str(detail.get("@type", ""))
            if kind.endswith("RetryInfo") and retry_after is None:
                retry_after = parse_retry_delay(detail.get("retryDelay"))
            if kind.endswith("ErrorInfo") and str(detail.get("reason", "")).startswith("API_KEY"):
                return ProviderAuthError(
                    f"{PROVIDER} rejected the gateway's credential (HTTP {status}: {message}).",
                    hint=f"Run `layers providers set {PROVIDER}` with a valid key.",
                    provider=PROVIDER,
                    upstream_status=status,
                )
    elif isinstance(error, str):
        message = error
    return error_for_status(PROVIDER, status or 500, message, retry_after=retry_after)


def _error_from_response(response: Response) -> ProviderError:
    try:
        data = response.json()
    except ValueError:
        data = None
    fallback = response.text.strip()[:500] or response.reason_phrase
    retry_after = parse_retry_after(response.headers)
    return error_from_body(response.status_code, data, fallback, retry_after)


def _not_json(what: str, text: str, status: int = 200) -> ProviderServerError:
    return ProviderServerError(
        f"{PROVIDER} returned {what} that is not JSON: {text.strip()[:200]!r}",
        provider=PROVIDER,
        upstream_status=status,
    )


def _json_body(response: Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError as exc:
        raise _not_json("a body", response.text, response.status_code) from exc
    if not isinstance(data, dict):
        raise _not_json("a body", response.text, response.status_code)
    return data


# --------------------------------------------------------------------------- parsing


def _candidate(data: dict[str, Any]) -> dict[str, Any]:
    candidates = data.get("candidates") or []
    return candidates[0] if candidates and isinstance(candidates[0], dict) else {}


def _parts(candidate: dict[str, Any]) -> list[dict[str, Any]]:
    parts = (candidate.get("content") or {}).get("parts") or []
    return [p for p in parts if isinstance(p, dict)]


def _blocked(data: dict[str, Any]) -> bool:
    return bool((data.get("promptFeedback") or {}).get("blockReason"))


def _estimate(body: dict[str, Any], output: str) -> Usage:
    """Only when Gemini sent no usageMetadata (never seen, but billing must not be 0)."""
    return Usage(
        prompt_tokens=estimate_messages_tokens(body.get("messages") or [], body.get("tools")),
        completion_tokens=estimate_text_tokens(output),
        estimated=True,
    )


def parse_response(data: dict[str, Any], body: dict[str, Any]) -> Completion:
    """A GenerateContentResponse → canonical `Completion` (first candidate only)."""
    candidate = _candidate(data)
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in _parts(candidate):
        if "functionCall" in part:
            calls.append(tool_call(part, data.get("responseId"), len(calls)))
        elif part.get("text"):
            (thoughts if part.get("thought") else texts).append(str(part["text"]))
    content = "".join(texts)
    message: dict[str, Any] = {"role": "assistant", "content": content or None}
    if calls:
        message["tool_calls"] = calls
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    annotations = grounding_annotations(content, candidate.get("groundingMetadata"))
    if annotations:
        message["annotations"] = annotations
    raw = candidate.get("finishReason")
    if data.get("usageMetadata"):
        usage = parse_usage(data["usageMetadata"])
    else:
        usage = _estimate(body, content + "".join(thoughts) + json.dumps(calls))
    return Completion(
        message=message,
        finish_reason=map_finish(raw, bool(calls), _blocked(data)),
        usage=usage,
        provider_metadata={PROVIDER: google_metadata(data, candidate, raw)},
        upstream_id=data.get("responseId"),
    )


class StreamState:
    """Folds Gemini stream chunks (each a whole GenerateContentResponse) into canonical
    chunks. usageMetadata is cumulative, so only the last one counts."""

    def __init__(self) -> None:
        self.response_id: str | None = None
        self.text = ""
        self.output = ""
        self.calls = 0
        self.raw_finish: str | None = None
        self.last: dict[str, Any] = {}  # response-level fields seen last
        self.candidate: dict[str, Any] = {}  # candidate-level metadata seen last

    def feed(self, data: dict[str, Any]) -> list[Chunk]:
        self.response_id = data.get("responseId") or self.response_id
        for key in ("usageMetadata", "promptFeedback", "modelVersion"):
            if data.get(key):
                self.last[key] = data[key]
        candidate = _candidate(data)
        out: list[Chunk] = []
        for part in _parts(candidate):
            if "functionCall" in part:
                call = tool_call(part, self.response_id, self.calls)
                first = GoogleToolCallDelta(
                    index=self.calls,
                    id=call["id"],
                    name=call["function"]["name"],
                    extra_content=call.get("extra_content"),
                )
                args = call["function"]["arguments"]
                out.append(Chunk(tool_calls=[first]))
                out.append(Chunk(tool_calls=[ToolCallDelta(index=self.calls, arguments=args)]))
                self.output += args
                self.calls += 1
            elif part.get("text"):
                text = str(part["text"])
                self.output += text
                if part.get("thought"):
                    out.append(Chunk(reasoning=text))
                else:
                    self.text += text
                    out.append(Chunk(content=text))
        self.raw_finish = candidate.get("finishReason") or self.raw_finish
        for key in ("groundingMetadata", "safetyRatings", "citationMetadata", "urlContextMetadata"):
            if candidate.get(key):
                self.candidate[key] = candidate[key]
        return out

    def finish(self, body: dict[str, Any]) -> list[Chunk]:
        """The finish chunk (with citations), then the one usage chunk."""
        blocked = _blocked(self.last)
        if not self.raw_finish and not blocked:
            raise ProviderServerError(
                f"{PROVIDER} ended the stream before sending a finish reason.",
                provider=PROVIDER,
            )
        meta = self.last.get("usageMetadata")
        usage = parse_usage(meta) if meta else _estimate(body, self.output)
        grounding = self.candidate.get("groundingMetadata")
        annotations = grounding_annotations(self.text, grounding) or None
        finish = map_finish(self.raw_finish, self.calls > 0, blocked)
        metadata = google_metadata(self.last, self.candidate, self.raw_finish)
        return [
            Chunk(finish_reason=finish, annotations=annotations),
            Chunk(usage=usage, provider_metadata={PROVIDER: metadata}),
        ]


def _stream_event(data: str) -> dict[str, Any]:
    try:
        payload = json.loads(data)
    except ValueError as exc:
        raise _not_json("a stream event", data) from exc
    if not isinstance(payload, dict):
        raise _not_json("a stream event", data)
    if payload.get("error"):
        raise error_from_body(None, payload, "stream interrupted")
    return payload


def aspect_ratio(size: Any, choices: dict[str, float] = IMAGEN_ASPECTS) -> str | None:
    """An OpenAI ``WxH`` size → the closest of the model's supported aspect ratios."""
    match = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", str(size or ""))
    if not match or not int(match.group(1)) or not int(match.group(2)):
        return None
    ratio = int(match.group(1)) / int(match.group(2))
    return min(choices, key=lambda k: abs(math.log(choices[k] / ratio)))


def _aspect(body: dict[str, Any], choices: dict[str, float]) -> str | None:
    explicit = body.get("aspect_ratio")  # AI SDK providerOptions spread into the body
    return explicit if explicit in choices else aspect_ratio(body.get("size"), choices)


# --------------------------------------------------------------------------- http


def _model_path(upstream: str) -> str:
    return upstream if "/" in upstream else f"models/{upstream}"


def _url(call: UpstreamCall, action: str) -> str:
    base = (call.base_url or DEFAULT_BASE_URLS[PROVIDER]).rstrip("/")
    return f"{base}/{_model_path(call.upstream_model)}:{action}"


def _headers(call: UpstreamCall) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if call.credential:
        headers["x-goog-api-key"] = call.credential
    return {**headers, **call.extra_headers}


async def _post(call: UpstreamCall, action: str, payload: dict[str, Any]) -> dict[str, Any]:
    response = await send(
        PROVIDER,
        call,
        "POST",
        _url(call, action),
        json=payload,
        headers=_headers(call),
        error_from=_error_from_response,
    )
    return _json_body(response)


async def _open_stream(call: UpstreamCall, payload: dict[str, Any]) -> Response:
    return await open_stream(
        PROVIDER,
        call,
        _url(call, "streamGenerateContent"),
        json=payload,
        headers=_headers(call),
        params={"alt": "sse"},
        error_from=_error_from_response,
    )


def _decode_image(data: Any) -> bytes:
    try:
        return base64.b64decode(str(data), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _not_json("image bytes", "invalid base64") from exc


def _no_image(reason: str) -> ProviderBadRequest:
    return ProviderBadRequest(
        f"{PROVIDER} generated no image for this prompt ({reason}). "
        "Rephrase the prompt and try again.",
        provider=PROVIDER,
        upstream_status=200,
    )


async def _imagen(call: UpstreamCall) -> ImageResult:
    body = call.body
    params: dict[str, Any] = {"sampleCount": int(body.get("n") or 1)}
    aspect = _aspect(body, IMAGEN_ASPECTS)
    if aspect:
        params["aspectRatio"] = aspect
    if body.get("person_generation"):
        params["personGeneration"] = body["person_generation"]
    if body.get("output_format") in ("png", "jpeg"):
        params["outputOptions"] = {"mimeType": f"image/{body['output_format']}"}
    payload = {"instances": [{"prompt": str(body.get("prompt") or "")}], "parameters": params}
    data = await _post(call, "predict", payload)
    images: list[bytes] = []
    filtered: list[str] = []
    mime: str | None = None
    for prediction in data.get("predictions") or []:
        if prediction.get("bytesBase64Encoded"):
            images.append(_decode_image(prediction["bytesBase64Encoded"]))
            mime = mime or prediction.get("mimeType")
        elif prediction.get("raiFilteredReason"):
            filtered.append(str(prediction["raiFilteredReason"]))
    if not images:
        raise _no_image(filtered[0] if filtered else "no image was returned")
    return ImageResult(
        images=images,
        usage=Usage(images=len(images)),
        mime_type=mime or "image/png",
        provider_metadata={PROVIDER: {"raiFilteredReasons": filtered} if filtered else {}},
    )


async def _native_images(call: UpstreamCall) -> ImageResult:
    generation: dict[str, Any] = {"responseModalities": ["IMAGE"]}
    aspect = _aspect(call.body, NATIVE_ASPECTS)
    if aspect:
        generation["imageConfig"] = {"aspectRatio": aspect}
    prompt = str(call.body.get("prompt") or "")
    payload = {
        "contents": [{"role": "user", "parts": [{"text": prompt}]}],
        "generationConfig": generation,
    }
    count = max(1, int(call.body.get("n") or 1))
    answers = await asyncio.gather(
        *(_post(call, "generateContent", payload) for _ in range(count)), return_exceptions=True
    )
    usage = Usage()
    images: list[bytes] = []
    notes: list[str] = []
    reasons: list[str] = []
    mime: str | None = None
    for data in answers:
        if isinstance(data, BaseException):
            raise data
        counted = parse_usage(data.get("usageMetadata"))
        usage.prompt_tokens += counted.prompt_tokens
        usage.completion_tokens += counted.completion_tokens
        usage.reasoning_tokens += counted.reasoning_tokens
        candidate = _candidate(data)
        for part in _parts(candidate):
            inline = part.get("inlineData") or {}
            if part.get("thought"):
                continue  # Gemini 3 image models show interim "thought" images
            if str(inline.get("mimeType", "")).startswith("image/") and inline.get("data"):
                images.append(_decode_image(inline["data"]))
                mime = mime or inline["mimeType"]
            elif part.get("text"):
                notes.append(str(part["text"]))
        feedback = (data.get("promptFeedback") or {}).get("blockReason")
        reasons.append(str(feedback or candidate.get("finishReason") or "no image was returned"))
    if not images:
        raise _no_image(reasons[0])
    usage.images = len(images)
    metadata = {"text": "\n".join(notes)} if notes else {}
    return ImageResult(
        images=images,
        usage=usage,
        mime_type=mime or "image/png",
        provider_metadata={PROVIDER: metadata},
    )


class GoogleAdapter:
    name = PROVIDER

    async def complete(self, call: UpstreamCall) -> Completion:
        payload = build_request(call.body, call.upstream_model, call.model.has("thinking"))
        data = await _post(call, "generateContent", payload)
        return parse_response(data, call.body)

    async def stream(self, call: UpstreamCall) -> AsyncIterator[Chunk]:
        payload = build_request(call.body, call.upstream_model, call.model.has("thinking"))
        response = await _open_stream(call, payload)
        state = StreamState()
        try:
            async for _event, data in iter_sse(PROVIDER, response, call.timeout):
                for chunk in state.feed(_stream_event(data)):
                    yield chunk
        finally:
            await response.aclose()
        for chunk in state.finish(call.body):
            yield chunk

    async def images(self, call: UpstreamCall) -> ImageResult:
        """Imagen models use ``:predict``; Gemini-native image models (Nano Banana) use
        generateContent with ``responseModalities: ["IMAGE"]``, one call per image."""
        if call.upstream_model.startswith("imagen"):
            return await _imagen(call)
        return await _native_images(call)

    async def embed(self, call: UpstreamCall) -> EmbedResult:
        """batchEmbedContents (100 texts per call). Gemini reports no token counts, so the
        usage is Layers' estimate."""
        raw = call.body.get("input")
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise CapabilityError(
                f"{call.model.id} embeds text only; send `input` as a string or a list of "
                "strings (token-id arrays are not supported by Google).",
                param="input",
            )
        model = _model_path(call.upstream_model)
        extra: dict[str, Any] = {}
        if call.body.get("dimensions"):
            extra["outputDimensionality"] = int(call.body["dimensions"])
        vectors: list[list[float]] = []
        for start in range(0, len(texts), EMBED_BATCH):
            batch = texts[start : start + EMBED_BATCH]
            requests = [
                {"model": model, "content": {"parts": [{"text": t}]}, **extra} for t in batch
            ]
            data = await _post(call, "batchEmbedContents", {"requests": requests})
            embeddings = data.get("embeddings") or []
            vectors += [[float(v) for v in e.get("values") or []] for e in embeddings]
        if len(vectors) != len(texts):
            raise ProviderServerError(
                f"{PROVIDER} returned {len(vectors)} embeddings for {len(texts)} inputs.",
                provider=PROVIDER,
            )
        tokens = sum(estimate_text_tokens(t) for t in texts)
        return EmbedResult(vectors=vectors, usage=Usage(prompt_tokens=tokens, estimated=True))


ADAPTER = GoogleAdapter()
