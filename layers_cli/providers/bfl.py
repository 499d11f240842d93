"""Black Forest Labs (FLUX): image generation through BFL's submit-and-poll API.

BFL has no synchronous endpoint: ``POST {base}/{model}`` answers with a task id and a
``polling_url``; ``GET polling_url`` (with ``x-key``) reports ``Pending`` until ``Ready``,
when ``result.sample`` is a short-lived signed URL that is downloaded *without* the key.
One BFL task makes one image, so ``n`` > 1 runs n tasks concurrently. The whole exchange
runs under one deadline (``call.timeout``).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import ProviderBadRequest, ProviderError, ProviderServerError
from . import imagegen
from .base import ImageResult, UpstreamCall

PROVIDER = "bfl"
ACCOUNT = ("Black Forest Labs", "https://dashboard.bfl.ai")

READY = "Ready"
MODERATED = ("Request Moderated", "Content Moderated")
FAILED = ("Error", "Failed", "Task not found")

# BFL answers 429 when the account has too many active tasks (24 by default) and sends no
# delay; a slot frees up when a running task finishes, typically within seconds.
DEFAULT_RETRY_AFTER = 2.0

# Fields a client may send in the images body (the AI SDK spreads providerOptions into it)
# that mean the same thing to BFL. Everything else (quality, style, user, ...) is dropped.
PASSTHROUGH = (
    "safety_tolerance",
    "prompt_upsampling",
    "raw",
    "steps",
    "guidance",
    "image_prompt",
    "image_prompt_strength",
    "input_image",
    *(f"input_image_{i}" for i in range(2, 9)),
)


class BFLAdapter(imagegen.ImageOnlyAdapter):
    """The ``bfl`` adapter; poll pacing is injectable so tests need not wait."""

    name = PROVIDER

    def __init__(
        self, *, poll_initial: float = 0.25, poll_max: float = 1.5, poll_growth: float = 1.5
    ) -> None:
        self.poll_initial = poll_initial
        self.poll_max = poll_max
        self.poll_growth = poll_growth

    async def images(self, call: UpstreamCall) -> ImageResult:
        body = call.body
        prompt = str(body.get("prompt") or "")
        n = imagegen.image_count(body)
        dims, note = fit_dimensions(call.upstream_model, body.get("size"))
        payload = build_payload(body, prompt, dims)
        seed = body.get("seed")
        payloads = []
        for i in range(n):
            task = dict(payload)
            if isinstance(seed, int) and not isinstance(seed, bool):
                task["seed"] = seed + i  # distinct, reproducible images for n > 1
            payloads.append(task)

        tasks = await imagegen.within_deadline(
            PROVIDER,
            call.timeout,
            imagegen.gather_all([self._generate(call, p) for p in payloads]),
        )

        fallback = "image/jpeg" if payload["output_format"] == "jpeg" else "image/png"
        costs = [t["cost"] for t in tasks if isinstance(t["cost"], int | float)]
        metadata: dict[str, Any] = {
            "ids": [t["id"] for t in tasks],
            "cost": sum(costs) if costs else None,  # BFL credits (1 credit = $0.01)
            "seeds": [t["seed"] for t in tasks],
            **dims,
        }
        if note:
            metadata["size_note"] = note
        return ImageResult(
            images=[t["image"] for t in tasks],
            usage=imagegen.prompt_usage(prompt, len(tasks)),
            revised_prompts=[t["revised_prompt"] for t in tasks],
            mime_type=imagegen.sniff_mime(tasks[0]["image"], tasks[0]["content_type"] or fallback),
            provider_metadata={PROVIDER: metadata},
        )

    async def _generate(self, call: UpstreamCall, payload: dict[str, Any]) -> dict[str, Any]:
        """Submit one task, poll it to completion and download its image."""
        base = (call.base_url or "").rstrip("/")
        response = await _send(call, "POST", f"{base}/{call.upstream_model}", json=payload)
        submit = imagegen.json_object(PROVIDER, response)
        task_id = submit.get("id")
        if not isinstance(task_id, str) or not task_id:
            raise ProviderServerError(
                f"{PROVIDER} accepted the request but returned no task id.", provider=PROVIDER
            )
        polling_url = submit.get("polling_url") or f"{base}/get_result"
        result = await self._poll(call, _with_id(str(polling_url), task_id), task_id)
        image, content_type = await imagegen.download(PROVIDER, call, result["sample"])
        revised = result.get("prompt")
        return {
            "id": task_id,
            "cost": submit.get("cost"),
            "seed": result.get("seed", payload.get("seed")),
            "image": image,
            "content_type": content_type,
            "revised_prompt": revised if isinstance(revised, str) and revised else None,
        }

    async def _poll(self, call: UpstreamCall, url: str, task_id: str) -> dict[str, Any]:
        """Poll until a terminal status; the caller's deadline bounds the loop."""
        interval = self.poll_initial
        while True:
            data = imagegen.json_object(PROVIDER, await _send(call, "GET", url))
            status = data.get("status") or data.get("state")
            if status == READY:
                result = data.get("result")
                if not isinstance(result, dict) or not isinstance(result.get("sample"), str):
                    raise ProviderServerError(
                        f"{PROVIDER} reported task {task_id} Ready without a result.sample URL.",
                        provider=PROVIDER,
                    )
                return result
            if status in MODERATED or status in FAILED:
                raise task_error(str(status), task_id, data.get("details"))
            await asyncio.sleep(interval)
            interval = min(interval * self.poll_growth, self.poll_max)


def task_error(status: str, task_id: str, details: Any) -> ProviderError:
    """A terminal non-Ready status → moderation is the user's to fix (400), the rest retry."""
    extra = f": {details}" if details else ""
    if status in MODERATED:
        what = "prompt or input image" if status == "Request Moderated" else "generated image"
        return ProviderBadRequest(
            f"{PROVIDER} refused the image: status {status!r} (its moderation flagged the "
            f"{what}){extra}.",
            hint="Rephrase the prompt and try again.",
            provider=PROVIDER,
            code="content_policy_violation",
            param="prompt",
        )
    return ProviderServerError(
        f"{PROVIDER} task {task_id} ended with status {status!r}{extra}.", provider=PROVIDER
    )


async def _send(call: UpstreamCall, method: str, url: str, *, json: Any = None) -> Any:
    headers = {"accept": "application/json"}
    if call.credential:
        headers["x-key"] = call.credential
    return await imagegen.request(
        PROVIDER,
        call,
        method,
        url,
        json=json,
        headers=headers,
        on_error=lambda r: imagegen.map_error(
            PROVIDER, ACCOUNT, r, default_retry_after=DEFAULT_RETRY_AFTER
        ),
    )


def _with_id(url: str, task_id: str) -> str:
    """BFL says to use ``polling_url`` as given; add ``id`` only if it is missing."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(key == "id" for key, _ in query):
        return url
    return urlunsplit(parts._replace(query=urlencode([*query, ("id", task_id)])))


def build_payload(body: dict[str, Any], prompt: str, dims: dict[str, Any]) -> dict[str, Any]:
    """The BFL submit body for one task (seed is added per task)."""
    fmt = str(body.get("output_format") or "png").lower()
    payload: dict[str, Any] = {
        "prompt": prompt,
        **dims,
        "output_format": "jpeg" if fmt in ("jpeg", "jpg") else "png",
    }
    for key in PASSTHROUGH:
        if body.get(key) is not None:
            payload[key] = body[key]
    if "width" not in dims and isinstance(body.get("aspect_ratio"), str):  # ultra / kontext
        payload["aspect_ratio"] = body["aspect_ratio"]
    return payload


def _uses_aspect_ratio(model: str) -> bool:
    return "ultra" in model or model.startswith("flux-kontext")


def fit_dimensions(model: str, size: Any) -> tuple[dict[str, Any], str | None]:
    """Fit an OpenAI ``size`` to what the model takes, saying so when it changed.

    FLUX.2: width/height in multiples of 16, at least 64, at most 4 megapixels.
    FLUX 1.x pro/dev: multiples of 32 between 256 and 1440. Ultra and Kontext take an
    ``aspect_ratio`` instead (Kontext 3:7 … 7:3, ultra 9:21 … 21:9).
    """
    parsed = imagegen.parse_size(size)
    if _uses_aspect_ratio(model):
        if parsed is None:
            return {}, None
        w, h = parsed
        a, b = (7, 3) if model.startswith("flux-kontext") else (21, 9)
        if w * b > h * a or h * b > w * a:  # wider or taller than the model takes
            aspect = f"{a}:{b}" if w > h else f"{b}:{a}"
            note = (
                f"size {size} was sent as aspect ratio {aspect}: {model} takes {b}:{a} to {a}:{b}"
            )
            return {"aspect_ratio": aspect}, note
        g = math.gcd(w, h)
        return {"aspect_ratio": f"{w // g}:{h // g}"}, None

    w, h = parsed or (1024, 1024)
    if model.startswith("flux-2"):
        step, low, high, max_pixels = 16, 64, None, 2048 * 2048
        rule = "FLUX.2 needs multiples of 16, at least 64 and at most 4 megapixels"
    else:
        step, low, high, max_pixels = 32, 256, 1440, None
        rule = f"{model} needs multiples of 32 between 256 and 1440"
    scale = 1.0
    if max_pixels and w * h > max_pixels:
        scale = math.sqrt(max_pixels / (w * h))
    if high and max(w, h) * scale > high:
        scale = high / max(w, h)
    shrink = scale < 1.0

    def fit(value: int) -> int:
        if shrink:  # round down so the result stays within the limit (1e-9: float noise)
            steps = math.floor(value * scale / step + 1e-9)
        else:
            steps = math.floor(value / step + 0.5)
        fitted = max(steps * step, low)
        return min(fitted, high) if high else fitted

    width, height = fit(w), fit(h)
    while max_pixels and width * height > max_pixels:  # rounding up went over the cap
        if width >= height:
            width -= step
        else:
            height -= step
    note = None
    if parsed and (width, height) != parsed:
        note = f"size {size} was sent as {width}x{height}: {rule}"
    return {"width": width, "height": height}, note


ADAPTER = BFLAdapter()
