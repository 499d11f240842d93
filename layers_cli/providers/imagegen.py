"""Helpers shared by the image-only adapters (``bfl``, ``recraft``).

Both providers differ from the chat adapters in the same ways: they need their own error
mapping (a 402 means the *operator's* provider account is empty, not the user's Layers
balance), they hand back signed URLs that must be downloaded without the API key, and an
OpenAI ``size`` string has to be fitted to what the provider accepts.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import CapabilityError, InvalidRequest, ProviderError, ProviderServerError
from ..tokens import estimate_text_tokens
from .base import (
    Chunk,
    Usage,
    error_for_status,
    extract_error_message,
    parse_retry_after,
    send,
    timeout_error,
)

if TYPE_CHECKING:
    from .base import Completion, EmbedResult, UpstreamCall
    from .http import Response

T = TypeVar("T")


def capability_error(provider: str) -> CapabilityError:
    """What chat, stream and embed calls get from an image-only provider."""
    return CapabilityError(
        f"{provider} models generate images; use /v1/images/generations", param="model"
    )


class ImageOnlyAdapter:
    """Base for providers that only generate images: chat, stream and embed say so."""

    name: str

    async def complete(self, call: UpstreamCall) -> Completion:
        raise capability_error(self.name)

    async def stream(self, call: UpstreamCall) -> AsyncIterator[Chunk]:
        raise capability_error(self.name)
        yield Chunk()  # pragma: no cover - makes this an async generator

    async def embed(self, call: UpstreamCall) -> EmbedResult:
        raise capability_error(self.name)


def parse_size(size: Any) -> tuple[int, int] | None:
    """``"1024x768"`` → ``(1024, 768)``; ``None``/``"auto"`` → ``None`` (provider default)."""
    if size is None or size == "" or size == "auto":
        return None
    if isinstance(size, str):
        width, sep, height = size.lower().partition("x")
        if sep and width.strip().isdigit() and height.strip().isdigit():
            w, h = int(width), int(height)
            if w > 0 and h > 0:
                return w, h
    raise InvalidRequest(
        f"size must look like WIDTHxHEIGHT (for example 1024x1024), got {size!r}.",
        param="size",
    )


def image_count(body: dict[str, Any]) -> int:
    n = body.get("n")
    if n is None:
        return 1
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidRequest(f"n must be a positive integer, got {n!r}.", param="n")
    return n


def sniff_mime(data: bytes, fallback: str | None = None) -> str:
    """The image type from its magic bytes; providers' headers are not always right."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    head = data[:512].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return "image/svg+xml"
    if fallback:
        return fallback.split(";")[0].strip() or "image/png"
    return "image/png"


def prompt_usage(prompt: str, images: int) -> Usage:
    """Image providers report no tokens: count images, estimate the prompt."""
    return Usage(prompt_tokens=estimate_text_tokens(prompt), images=images, estimated=True)


def json_object(provider: str, response: Response) -> dict[str, Any]:
    """The 2xx body as a JSON object; anything else is the provider's fault (retryable)."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        snippet = response.text[:200].strip()
        raise ProviderServerError(
            f"{provider} returned a response that is not a JSON object "
            f"(HTTP {response.status_code}): {snippet!r}.",
            provider=provider,
            upstream_status=response.status_code,
        )
    return data


def out_of_credits(provider: str, account: str, top_up: str, message: str) -> ProviderError:
    """HTTP 402 from the provider: the gateway operator's account is empty.

    Mapped to 502 (not 402) so that clients do not read it as "buy Layers credits".
    """
    return ProviderError(
        f"{provider} refused the request: the gateway's {account} account has run out of "
        f"credits (HTTP 402: {message}).",
        hint=f"The gateway operator must top it up at {top_up}; "
        "this is not about your Layers credits.",
        provider=provider,
        upstream_status=402,
        code="provider_out_of_credits",
    )


def error_message(response: Response) -> str:
    """The provider's own message, including FastAPI-style ``detail`` lists (BFL's 422)."""
    try:
        data = response.json()
    except ValueError:
        return extract_error_message(response)
    if isinstance(data, dict):
        detail = data.get("detail")
        if isinstance(detail, list) and detail:
            parts = []
            for item in detail:
                if isinstance(item, dict):
                    loc = [str(p) for p in item.get("loc", []) if p != "body"]
                    msg = str(item.get("msg") or item.get("message") or item)
                    parts.append(f"{'.'.join(loc)}: {msg}" if loc else msg)
                else:
                    parts.append(str(item))
            return "; ".join(parts)
        if isinstance(detail, dict):
            inner = detail.get("message") or detail.get("msg")
            return str(inner) if inner else jsonlib.dumps(detail)[:500]
        message = data.get("message")
        if isinstance(message, str) and message and not isinstance(data.get("error"), dict):
            return message
    return extract_error_message(response)


def map_error(
    provider: str,
    account: tuple[str, str],
    response: Response,
    *,
    default_retry_after: float | None = None,
) -> ProviderError:
    """A non-2xx answer → the Layers error (402 handled here, the rest by the shared table).

    ``account`` is the provider account's name and where to top it up.
    """
    message = error_message(response)
    if response.status_code == 402:
        return out_of_credits(provider, *account, message)
    retry_after = parse_retry_after(response.headers)
    if retry_after is None and response.status_code == 429:
        retry_after = default_retry_after
    return error_for_status(provider, response.status_code, message, retry_after=retry_after)


async def request(
    provider: str,
    call: UpstreamCall,
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    on_error: Callable[[Response], ProviderError],
    json: Any = None,
) -> Response:
    """One upstream request; transport failures and non-2xx answers become ProviderErrors."""
    return await send(provider, call, method, url, json=json, headers=headers, error_from=on_error)


async def download(provider: str, call: UpstreamCall, url: str) -> tuple[bytes, str | None]:
    """Fetch a generated image from its (signed) delivery URL, deliberately without the API
    key: delivery hosts need none and must not see it. Returns bytes and content type."""

    def failed(response: Response) -> ProviderError:
        return ProviderServerError(
            f"{provider} generated the image but its download failed "
            f"(HTTP {response.status_code} from the delivery URL).",
            provider=provider,
            upstream_status=response.status_code,
        )

    response = await request(provider, call, "GET", url, headers={}, on_error=failed)
    if not response.content:
        raise ProviderServerError(f"{provider} delivered an empty image file.", provider=provider)
    return response.content, response.headers.get("content-type")


async def within_deadline(provider: str, seconds: float, work: Awaitable[T]) -> T:
    """Run submit + poll + download under one overall deadline → ProviderTimeout."""
    try:
        async with asyncio.timeout(seconds):
            return await work
    except TimeoutError as exc:
        raise timeout_error(provider, seconds) from exc


async def gather_all(coros: list[Awaitable[T]]) -> list[T]:
    """``asyncio.gather`` that cancels the siblings when one fails (no orphaned polls)."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
