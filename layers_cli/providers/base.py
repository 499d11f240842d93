"""The adapter protocol and the canonical value types every provider speaks.

Inside the gateway a chat request is an OpenAI Chat Completions body (a plain dict, already
validated by the service). An adapter translates it to its provider's native API and back:

* ``complete(call)``   → `Completion` (one whole response)
* ``stream(call)``     → async iterator of `Chunk`; exactly one chunk, the last, has ``usage``
* ``images(call)``     → `ImageResult`
* ``embed(call)``      → `EmbedResult`

Adapters know nothing of credits, keys or the database: the service hands them the
upstream model id, the credential, the base URL and the shared `http.HTTPClient`. They
raise `layers_cli.errors.ProviderError` subclasses (see `raise_for_status`) and nothing else.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import (
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
    ProviderUnavailable,
    TransportError,
    TransportTimeout,
)

if TYPE_CHECKING:
    from ..catalog import ModelInfo
    from .http import HTTPClient, Response, StreamingResponse


@dataclass
class Usage:
    """Token counts in OpenAI semantics.

    ``prompt_tokens`` *includes* ``cached_tokens`` and ``cache_write_tokens``;
    ``completion_tokens`` *includes* ``reasoning_tokens``. ``estimated`` is true when the
    counts are Layers' estimate rather than the provider's report.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    images: int = 0
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_openai(self) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }
        if self.cache_write_tokens:
            usage["prompt_tokens_details"]["cache_write_tokens"] = self.cache_write_tokens
        return usage


@dataclass
class UpstreamCall:
    """Everything an adapter needs for one upstream call.

    ``body`` is the canonical OpenAI-shaped request (chat, images or embeddings body);
    ``upstream_model`` is the provider's own id for the model (``claude-sonnet-4-5``), not
    the Layers id. ``simulate`` carries the parsed ``X-Layers-Simulate`` directives
    (only the simulator reads them).
    """

    body: dict[str, Any]
    model: ModelInfo
    upstream_model: str
    http: HTTPClient | None = None
    credential: str | None = None
    base_url: str | None = None
    timeout: float = 120.0
    simulate: dict[str, str] = field(default_factory=dict)
    extra_headers: dict[str, str] = field(default_factory=dict)


@dataclass
class ToolCallDelta:
    """One piece of a streamed tool call; ``id`` and ``name`` come on the first piece."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    # provider extras carried on the call, e.g. Gemini's
    # {"google": {"thought_signature": ...}} (the AI SDK echoes it back)
    extra_content: dict[str, Any] | None = None


@dataclass
class Chunk:
    """One canonical stream event. The last chunk of a stream carries ``usage``."""

    content: str | None = None
    reasoning: str | None = None
    tool_calls: list[ToolCallDelta] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage | None = None
    provider_metadata: dict[str, Any] | None = None
    # top-level extras merged into the final OpenAI chunk, e.g. perplexity ``citations``
    extra: dict[str, Any] | None = None
    # annotations (url_citation) to attach on the final chunk's delta
    annotations: list[dict[str, Any]] | None = None


@dataclass
class Completion:
    """A whole chat response in canonical form.

    ``message`` is an OpenAI assistant message dict: ``role``, ``content`` (str or None),
    optionally ``tool_calls`` (arguments as JSON *strings*), ``reasoning_content``,
    ``annotations``, ``refusal``.
    """

    message: dict[str, Any]
    finish_reason: str
    usage: Usage
    provider_metadata: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # top-level extras, e.g. citations
    upstream_id: str | None = None


@dataclass
class ImageResult:
    """Generated images as raw bytes (the server base64-encodes them)."""

    images: list[bytes]
    usage: Usage
    revised_prompts: list[str | None] = field(default_factory=list)
    mime_type: str = "image/png"
    provider_metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class EmbedResult:
    vectors: list[list[float]]
    usage: Usage


class Provider(Protocol):
    """What every adapter module exposes as its ``ADAPTER`` object."""

    name: str

    async def complete(self, call: UpstreamCall) -> Completion: ...

    def stream(self, call: UpstreamCall) -> AsyncIterator[Chunk]: ...

    async def images(self, call: UpstreamCall) -> ImageResult: ...

    async def embed(self, call: UpstreamCall) -> EmbedResult: ...


def parse_retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` / ``retry-after`` (seconds or HTTP date), if present."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def error_for_status(
    provider: str,
    status: int,
    message: str,
    *,
    retry_after: float | None = None,
) -> ProviderError:
    """Map an upstream HTTP status to the Layers error a client should see.

    400-class → 400 with the provider's message; 401/403 → 502 ``provider_auth_error``
    (the *gateway's* credential is wrong, the client can do nothing but tell the operator);
    429 → 429 with the provider's delay; 529/503 → 503 overloaded; other 5xx → 502.
    """
    quoted = f"{provider} returned HTTP {status}: {message}"
    if status in (401, 403):
        return ProviderAuthError(
            f"{provider} rejected the gateway's credential (HTTP {status}: {message}).",
            hint=f"Run `layers providers set {provider}` with a valid key.",
            provider=provider,
            upstream_status=status,
        )
    if status == 402:
        return ProviderError(
            f"{provider}'s own account is out of credits (HTTP 402: {message}). The operator "
            f"must top up the {provider} account; this is not about Layers credits.",
            provider=provider,
            upstream_status=status,
            code="provider_out_of_credits",
        )
    if status == 429:
        return ProviderRateLimited(
            f"{provider} is rate limiting requests (HTTP 429: {message}).",
            provider=provider,
            upstream_status=status,
            retry_after=retry_after,
        )
    if status in (503, 529):
        return ProviderUnavailable(
            f"{provider} is overloaded or unavailable (HTTP {status}: {message}).",
            provider=provider,
            upstream_status=status,
            retry_after=retry_after,
        )
    if status == 408:
        return ProviderTimeout(quoted, provider=provider, upstream_status=status)
    if status >= 500:
        return ProviderServerError(quoted, provider=provider, upstream_status=status)
    return ProviderBadRequest(quoted, provider=provider, upstream_status=status)


def raise_for_status(provider: str, response: Response) -> None:
    """Raise the mapped `ProviderError` for a non-2xx response (body must be read)."""
    if response.status_code < 400:
        return
    raise error_for_status(
        provider,
        response.status_code,
        extract_error_message(response),
        retry_after=parse_retry_after(response.headers),
    )


def extract_error_message(response: Response) -> str:
    """The provider's own message: ``error.message`` (OpenAI, Anthropic, Gemini) or text."""
    try:
        data = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:500] or response.reason_phrase
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            msg = err.get("message") or err.get("detail") or err.get("msg")
            if msg:
                return str(msg)
        elif isinstance(err, str):
            return err
        detail = data.get("detail")
        if detail:
            return str(detail)
    return str(data)[:500]


def timeout_error(provider: str, seconds: float) -> ProviderTimeout:
    return ProviderTimeout(f"{provider} did not answer within {seconds:g} s.", provider=provider)


def connection_error(provider: str, exc: Exception) -> ProviderServerError:
    detail = str(exc) if isinstance(exc, TransportError) else f"{exc.__class__.__name__}: {exc}"
    return ProviderServerError(f"Could not reach {provider}: {detail}.", provider=provider)


async def send(
    provider: str,
    call: UpstreamCall,
    method: str,
    url: str,
    *,
    json: Any = None,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    error_from: Callable[[Response], ProviderError] | None = None,
) -> Response:
    """One non-streaming upstream request; transport failures become `ProviderError`s
    and a non-2xx answer raises the mapped error (``error_from`` lets a provider read its
    own error body). Returns the (read) response."""
    response = await _exchange(provider, call, method, url, json, headers, params, stream=False)
    if response.status_code >= 400:
        raise error_from(response) if error_from else _mapped(provider, response)
    return response


async def _exchange(
    provider: str,
    call: UpstreamCall,
    method: str,
    url: str,
    json: Any,
    headers: dict[str, str] | None,
    params: dict[str, str] | None,
    *,
    stream: bool,
) -> Any:
    """The HTTP exchange itself; transport failures become `ProviderError`s."""
    assert call.http is not None, "the gateway passes its shared HTTPClient"
    exchange = call.http.stream if stream else call.http.request
    try:
        return await exchange(
            method,
            url,
            json=json,
            headers={**(headers or {}), **call.extra_headers},
            params=params,
            timeout=call.timeout,
        )
    except TransportTimeout as exc:
        raise timeout_error(provider, call.timeout) from exc
    except TransportError as exc:
        raise connection_error(provider, exc) from exc


def _mapped(provider: str, response: Response) -> ProviderError:
    return error_for_status(
        provider,
        response.status_code,
        extract_error_message(response),
        retry_after=parse_retry_after(response.headers),
    )


async def open_stream(
    provider: str,
    call: UpstreamCall,
    url: str,
    *,
    json: Any,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    error_from: Callable[[Response], ProviderError] | None = None,
) -> StreamingResponse:
    """Start a streaming POST; the caller must ``await response.aclose()`` when done.

    A non-2xx answer is read, closed and raised as the mapped error before any chunk is
    yielded, so the gateway can still answer with a plain HTTP error.
    """
    response: StreamingResponse = await _exchange(
        provider, call, "POST", url, json, headers, params, stream=True
    )
    if response.status_code >= 400:
        try:
            await response.aread()
        except (TransportError, TransportTimeout) as exc:
            raise connection_error(provider, exc) from exc
        finally:
            await response.aclose()
        raise error_from(response) if error_from else _mapped(provider, response)
    return response


async def iter_sse(
    provider: str, response: Response, timeout: float
) -> AsyncIterator[tuple[str | None, str]]:
    """Yield ``(event_name, data)`` per SSE event; comments and empty data are skipped.

    Read timeouts and dropped connections mid-stream become `ProviderError`s.
    """
    event: str | None = None
    data_lines: list[str] = []
    try:
        async for line in response.aiter_lines():
            if line == "":
                if data_lines:
                    yield event, "\n".join(data_lines)
                event, data_lines = None, []
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "event":
                event = value
            elif name == "data":
                data_lines.append(value)
        if data_lines:
            yield event, "\n".join(data_lines)
    except TransportTimeout as exc:
        raise timeout_error(provider, timeout) from exc
    except TransportError as exc:
        raise connection_error(provider, exc) from exc
