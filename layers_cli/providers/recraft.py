"""Recraft: image generation through its OpenAI-like ``POST /images/generations``.

The wire is close to OpenAI's, with three differences this adapter absorbs: ``n`` is at
most 6 per call (larger ``n`` is split into concurrent calls), only a fixed list of sizes is
accepted per model (other sizes go as the nearest aspect ratio, and the result says so), and
``style`` means a Recraft style (``vector_illustration`` …), not DALL-E's vivid/natural.
Images are requested as ``b64_json``; a ``url`` answer is downloaded without the key.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

from ..errors import ProviderServerError
from . import imagegen
from .base import ImageResult, UpstreamCall

PROVIDER = "recraft"
ACCOUNT = ("Recraft", "https://app.recraft.ai/profile/api")
MAX_PER_CALL = 6

# Every Recraft model takes these aspect ratios as ``size`` ("16:9"); raster models also
# take the explicit size each one stands for (recraft.ai/docs/api-reference/appendix).
#   aspect, V2/V3, V4/V4.1, V4/V4.1 Pro
SIZES = (
    ("1:1", "1024x1024", "1024x1024", "2048x2048"),
    ("2:1", "2048x1024", "1536x768", "3072x1536"),
    ("1:2", "1024x2048", "768x1536", "1536x3072"),
    ("3:2", "1536x1024", "1280x832", "2560x1664"),
    ("2:3", "1024x1536", "832x1280", "1664x2560"),
    ("4:3", "1365x1024", "1216x896", "2432x1792"),
    ("3:4", "1024x1365", "896x1216", "1792x2432"),
    ("5:4", "1280x1024", "1152x896", "2304x1792"),
    ("4:5", "1024x1280", "896x1152", "1792x2304"),
    ("6:10", "1024x1707", "832x1344", "1664x2688"),
    ("14:10", "1434x1024", "1280x896", "2560x1792"),
    ("10:14", "1024x1434", "896x1280", "1792x2560"),
    ("16:9", "1820x1024", "1344x768", "2688x1536"),
    ("9:16", "1024x1820", "768x1344", "1536x2688"),
)


def size_table(model: str) -> dict[str, str]:
    """Aspect ratio → explicit size for a Recraft model id; empty for vector models."""
    if "vector" in model:
        return {}
    column = 1 if not model.startswith("recraftv4") else 3 if "pro" in model else 2
    return {row[0]: row[column] for row in SIZES}


# Recraft's own options a client may send (the AI SDK spreads providerOptions into the body).
PASSTHROUGH = (
    "style",
    "substyle",
    "style_id",
    "negative_prompt",
    "controls",
    "text_layout",
    "image_format",
)
OPENAI_STYLES = ("vivid", "natural")  # DALL-E 3 values: meaningless to Recraft


class RecraftAdapter(imagegen.ImageOnlyAdapter):
    name = PROVIDER

    async def images(self, call: UpstreamCall) -> ImageResult:
        body = call.body
        prompt = str(body.get("prompt") or "")
        n = imagegen.image_count(body)
        size, note = fit_size(call.upstream_model, body.get("size"))
        payload = build_payload(body, prompt, call.upstream_model, size)
        counts = [min(MAX_PER_CALL, n - start) for start in range(0, n, MAX_PER_CALL)]
        batches = await imagegen.within_deadline(
            PROVIDER,
            call.timeout,
            imagegen.gather_all([_generate(call, {**payload, "n": k}) for k in counts]),
        )
        items = [item for batch in batches for item in batch["items"]]
        credits = [b["credits"] for b in batches if isinstance(b["credits"], int | float)]
        metadata: dict[str, Any] = {
            "image_ids": [item["image_id"] for item in items],
            "credits": sum(credits) if credits else None,
            "size": size,
        }
        if note:
            metadata["size_note"] = note
        first = items[0]
        return ImageResult(
            images=[item["image"] for item in items],
            usage=imagegen.prompt_usage(prompt, len(items)),
            revised_prompts=[item["revised_prompt"] for item in items],
            mime_type=imagegen.sniff_mime(first["image"], first["content_type"]),
            provider_metadata={PROVIDER: metadata},
        )


async def _generate(call: UpstreamCall, payload: dict[str, Any]) -> dict[str, Any]:
    """One Recraft call (n ≤ 6) → its images as bytes, downloading any URLs."""
    base = (call.base_url or "").rstrip("/")
    auth = {"Authorization": f"Bearer {call.credential}"} if call.credential else {}
    headers = auth
    response = await imagegen.request(
        PROVIDER,
        call,
        "POST",
        f"{base}/images/generations",
        json=payload,
        headers=headers,
        on_error=lambda r: imagegen.map_error(PROVIDER, ACCOUNT, r),
    )
    data = imagegen.json_object(PROVIDER, response)
    entries = data.get("data")
    if not isinstance(entries, list) or not entries:
        raise ProviderServerError(f"{PROVIDER} returned no images.", provider=PROVIDER)
    items = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise ProviderServerError(
                f"{PROVIDER} returned an image entry that is not an object.", provider=PROVIDER
            )
        items.append(await _entry_bytes(call, entry))
    return {"items": items, "credits": data.get("credits")}


async def _entry_bytes(call: UpstreamCall, entry: dict[str, Any]) -> dict[str, Any]:
    content_type = None
    if isinstance(entry.get("b64_json"), str):
        try:
            image = base64.b64decode(entry["b64_json"], validate=False)
        except (binascii.Error, ValueError) as exc:
            raise ProviderServerError(
                f"{PROVIDER} returned b64_json that is not valid base64.", provider=PROVIDER
            ) from exc
    elif isinstance(entry.get("url"), str):
        image, content_type = await imagegen.download(PROVIDER, call, entry["url"])
    else:
        raise ProviderServerError(
            f"{PROVIDER} returned an image with neither b64_json nor url.", provider=PROVIDER
        )
    if not image:
        raise ProviderServerError(f"{PROVIDER} returned an empty image.", provider=PROVIDER)
    revised = entry.get("revised_prompt")
    return {
        "image": image,
        "content_type": content_type,
        "image_id": entry.get("image_id"),
        "revised_prompt": revised if isinstance(revised, str) and revised else None,
    }


def build_payload(
    body: dict[str, Any], prompt: str, model: str, size: str | None
) -> dict[str, Any]:
    """The Recraft body; OpenAI-only fields (quality, user, output_format …) are dropped."""
    payload: dict[str, Any] = {"prompt": prompt, "model": model, "response_format": "b64_json"}
    if size:
        payload["size"] = size
    for key in PASSTHROUGH:
        value = body.get(key)
        if value is None or (key == "style" and value in OPENAI_STYLES):
            continue
        payload[key] = value
    return payload


def fit_size(model: str, size: Any) -> tuple[str | None, str | None]:
    """A Recraft ``size`` for an OpenAI one: the explicit size when the model lists it,
    else the nearest aspect ratio (every model takes those), saying so when it changed."""
    parsed = imagegen.parse_size(size)
    if parsed is None:
        return None, None
    w, h = parsed
    if f"{w}x{h}" in size_table(model).values():
        return f"{w}x{h}", None
    ratios = [tuple(int(x) for x in row[0].split(":")) for row in SIZES]
    a, b = min(ratios, key=lambda r: abs(math.log(r[0] / r[1]) - math.log(w / h)))
    aspect = f"{a}:{b}"
    if "vector" in model and w * b == h * a:
        return aspect, None  # vector output has no pixel size: the shape is all that counts
    sent = size_table(model).get(aspect)
    note = f"size {size} was sent as aspect ratio {aspect}" + (f" ({sent})" if sent else "")
    return aspect, f"{note}: {model} takes only its listed sizes and aspect ratios"


ADAPTER = RecraftAdapter()
