"""Fake Recraft API: ``POST /v1/images/generations`` with ``Authorization: Bearer``.

Mounted like ``https://external.api.recraft.ai``, so an adapter's base URL is
``{server}/v1``. It answers ``{"created", "credits", "data": [{"image_id", "b64_json" | "url",
"revised_prompt"}]}``; URLs point at ``GET /files/{image_id}.png|svg`` on this server
(no auth). Vector models (``*_vector``) and styles (``vector_illustration``, ``icon``) give
SVG, others real PNGs at the model's size for the requested ``WxH`` or aspect ratio.
A missing token gets Recraft's ``401 text/plain "request unauthorized"``; a bad request gets
``400 {"code", "message"}`` (Recraft's JSON error shape is unverified). Unknown fields are
rejected, so adapters cannot forward junk unnoticed.

`FakeState` failures apply to the next generation request (status/body/headers, delay,
malformed). ``create_app(state, always_url=True)`` answers with URLs even when
``b64_json`` was asked for.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from . import FakeState
from .bfl import apply_failure, image_bytes

TABLE = """
1:1    1024x1024  1024x1024  2048x2048
2:1    2048x1024  1536x768   3072x1536
1:2    1024x2048  768x1536   1536x3072
3:2    1536x1024  1280x832   2560x1664
2:3    1024x1536  832x1280   1664x2560
4:3    1365x1024  1216x896   2432x1792
3:4    1024x1365  896x1216   1792x2432
5:4    1280x1024  1152x896   2304x1792
4:5    1024x1280  896x1152   1792x2304
6:10   1024x1707  832x1344   1664x2688
14:10  1434x1024  1280x896   2560x1792
10:14  1024x1434  896x1280   1792x2560
16:9   1820x1024  1344x768   2688x1536
9:16   1024x1820  768x1344   1536x2688
"""  # aspect, V2/V3, V4/V4.1, V4/V4.1 Pro (recraft.ai/docs/api-reference/appendix)
ROWS = [line.split() for line in TABLE.strip().splitlines()]
ASPECTS = [row[0] for row in ROWS]
MODEL = re.compile(r"^recraftv(2|3|4|4_1)(_flash|_utility|_styles)?(_pro)?(_vector)?$")


def sizes_for(model: str) -> dict[str, str]:
    """Aspect → explicit size the model renders (vector models: the raster table's)."""
    column = 1 if not model.startswith("recraftv4") else 3 if "_pro" in model else 2
    return {row[0]: row[column] for row in ROWS}


STYLES = {
    "any",
    "realistic_image",
    "digital_illustration",
    "vector_illustration",
    "icon",
    "logo_raster",
}
VECTOR_STYLES = {"vector_illustration", "icon"}
FIELDS = {
    "prompt",
    "model",
    "style",
    "substyle",
    "style_id",
    "size",
    "n",
    "response_format",
    "negative_prompt",
    "controls",
    "text_layout",
    "image_format",
}
CREDITS = {"raster": 40, "pro": 250, "vector": 80}


def svg_bytes(key: str) -> bytes:
    colour = hashlib.sha256(key.encode()).hexdigest()[:6]
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
        f'<rect width="64" height="64" fill="#{colour}"/></svg>'
    ).encode()


def _bad(code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, 400)


def _validate(body: Any) -> JSONResponse | None:
    if not isinstance(body, dict):
        return _bad("invalid_json", "request body must be a JSON object")
    for key in body:
        if key not in FIELDS:
            return _bad("unknown_parameter", f"unknown parameter: {key}")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        return _bad("invalid_prompt", "prompt is required")
    n = body.get("n", 1)
    if not isinstance(n, int) or not 1 <= n <= 6:
        return _bad("invalid_n", "n must be between 1 and 6")
    model = body.get("model", "recraftv3")
    if not isinstance(model, str) or not MODEL.match(model):
        return _bad("invalid_model", f"unknown model: {model}")
    limit = 10000 if model.startswith("recraftv4") else 1000
    if len(prompt.encode()) > limit:
        return _bad("prompt_too_long", f"prompt must be at most {limit} bytes for {model}")
    size = body.get("size", "1:1")
    vector = model.endswith("_vector")
    if size not in ASPECTS and (vector or size not in sizes_for(model).values()):
        return _bad("invalid_size", f"unsupported size for {model}: {size}")
    if body.get("style", "realistic_image") not in STYLES:
        return _bad("invalid_style", f"unknown style: {body.get('style')}")
    if "style" in body and "style_id" in body:
        return _bad("invalid_style", "style and style_id are mutually exclusive")
    if body.get("response_format", "url") not in ("url", "b64_json"):
        return _bad("invalid_response_format", "response_format must be url or b64_json")
    return None


def create_app(state: FakeState, *, always_url: bool = False) -> Starlette:
    files: dict[str, tuple[bytes, str]] = {}

    def record(request: Request, body: Any = None) -> None:
        state.requests.append(
            {
                "method": request.method,
                "path": request.url.path,
                "headers": dict(request.headers),
                "json": body,
            }
        )

    async def generate(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        record(request, body)
        answer = await apply_failure(state.take_failure())
        if answer is not None:
            return answer
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            return PlainTextResponse("request unauthorized", 401)
        if (invalid := _validate(body)) is not None:
            return invalid
        model = body.get("model", "recraftv3")
        size = body.get("size", "1:1")
        width, height = (int(x) for x in sizes_for(model).get(size, size).split("x"))
        style = body.get("style", "realistic_image")
        vector = model.endswith("_vector") or style in VECTOR_STYLES
        as_url = always_url or body.get("response_format", "url") == "url"
        origin = str(request.base_url).rstrip("/")
        data = []
        for i in range(body.get("n", 1)):
            key = f"{model}|{style}|{body['prompt']}|{i}|{len(files)}"
            image_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"recraft|{key}"))
            if vector:
                content, media, ext = svg_bytes(key), "image/svg+xml", "svg"
            else:
                content, media, ext = image_bytes(width, height, key), "image/png", "png"
            files[image_id] = (content, media)
            entry: dict[str, Any] = {"image_id": image_id, "revised_prompt": body["prompt"]}
            if as_url:
                entry["url"] = f"{origin}/files/{image_id}.{ext}"
            else:
                entry["b64_json"] = base64.b64encode(content).decode()
            data.append(entry)
        tier = "vector" if vector else "pro" if "_pro" in model else "raster"
        credits = CREDITS[tier] * len(data)
        return JSONResponse({"created": 1748140800, "credits": credits, "data": data})

    async def file(request: Request) -> Response:
        record(request)
        image_id = request.path_params["name"].rsplit(".", 1)[0]
        if image_id not in files:
            return PlainTextResponse("404 page not found", 404)
        content, media = files[image_id]
        return Response(content, media_type=media)

    return Starlette(
        routes=[
            Route("/v1/images/generations", generate, methods=["POST"]),
            Route("/files/{name}", file, methods=["GET"]),
        ]
    )
