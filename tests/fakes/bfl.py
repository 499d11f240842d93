"""Fake Black Forest Labs (FLUX) API, speaking BFL's submit-and-poll wire format.

Mounted like ``https://api.bfl.ai``, so an adapter's base URL is ``{server}/v1``:

* ``POST /v1/{model}`` (header ``x-key``) → ``{id, polling_url, cost, input_mp, output_mp}``;
  the body is validated like BFL's FastAPI models (422 ``{"detail": [{loc, msg, type}]}``).
* ``GET /v1/get_result?id=`` (header ``x-key``) → ``Pending`` for `READY_AFTER` polls, then
  ``Ready`` with ``result.sample``, a "signed" URL on this server.
* ``GET /delivery/{id}.png|jpg?sig=`` → real image bytes of the requested size (no auth).

Everything is derived from the request (image colour from prompt and seed), so runs repeat.

`FakeState` failures are consumed one per *submit*:

* ``Failure(status=..., body=..., headers=...)`` — the submit answers that HTTP error;
  ``Failure(delay=s)`` sleeps first; ``Failure(malformed=True)`` answers 200 non-JSON.
* ``Failure(body={"task_status": S, "details": D})`` — the task accepts but polls report S
  forever (``"Pending"`` = never ready; ``"Content Moderated"``, ``"Error"`` …);
  ``{"task_status": "malformed"}`` makes the polls answer non-JSON.
* ``Failure(body={"delivery_status": 404})`` — the delivery URL answers that status.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import uuid
from typing import Any

from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from . import Failure, FakeState

READY_AFTER = 2  # polls that answer Pending before Ready
COSTS = {  # credits for the first megapixel, and per extra megapixel
    "flux-2-pro": (3.0, 1.5),
    "flux-2-max": (7.0, 3.0),
    "flux-2-flex": (5.0, 5.0),
    "flux-2-klein-4b": (1.4, 0.1),
    "flux-2-klein-9b": (1.5, 0.2),
    "flux-pro-1.1": (4.0, 0.0),
    "flux-pro-1.1-ultra": (6.0, 0.0),
    "flux-kontext-pro": (4.0, 0.0),
    "flux-kontext-max": (8.0, 0.0),
    "flux-pro": (5.0, 0.0),
    "flux-dev": (2.5, 0.0),
}
FIELDS = {
    "prompt",
    "width",
    "height",
    "aspect_ratio",
    "seed",
    "safety_tolerance",
    "output_format",
    "prompt_upsampling",
    "raw",
    "steps",
    "guidance",
    "image_prompt",
    "image_prompt_strength",
    "input_image",
    "webhook_url",
    "webhook_secret",
    *(f"input_image_{i}" for i in range(2, 9)),
}


def image_bytes(width: int, height: int, key: str, fmt: str = "png") -> bytes:
    """A real, small (solid colour) image whose colour is derived from ``key``."""
    digest = hashlib.sha256(key.encode()).digest()
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), tuple(digest[:3])).save(
        buffer, format="JPEG" if fmt == "jpeg" else "PNG"
    )
    return buffer.getvalue()


async def apply_failure(failure: Failure | None) -> Response | None:
    """The HTTP answer a scripted failure asks for (None: carry on, after any delay)."""
    if failure is None:
        return None
    if failure.delay:
        await asyncio.sleep(failure.delay)
    if failure.malformed:
        return Response("<html>502 Bad Gateway</html>", media_type="application/json")
    if failure.status:
        if isinstance(failure.body, dict | list):
            return JSONResponse(failure.body, failure.status, headers=failure.headers)
        return PlainTextResponse(str(failure.body or ""), failure.status, headers=failure.headers)
    return None


def _invalid(loc: str, msg: str, kind: str = "value_error") -> JSONResponse:
    return JSONResponse({"detail": [{"loc": ["body", loc], "msg": msg, "type": kind}]}, 422)


def _validate(model: str, body: Any) -> JSONResponse | None:
    if not isinstance(body, dict):
        return _invalid("body", "Input should be a valid dictionary", "dict_type")
    for key in body:
        if key not in FIELDS:
            return _invalid(key, "Extra inputs are not permitted", "extra_forbidden")
    if not isinstance(body.get("prompt"), str) or not body["prompt"]:
        return _invalid("prompt", "Field required", "missing")
    if body.get("output_format", "jpeg") not in ("jpeg", "png"):
        return _invalid("output_format", "Input should be 'jpeg' or 'png'", "enum")
    if "width" in body or "height" in body:
        if model.startswith("flux-2"):
            step, low, high = 16, 64, 2048 * 2048
        elif "ultra" in model or "kontext" in model:
            return _invalid("width", "Extra inputs are not permitted", "extra_forbidden")
        else:
            step, low, high = 32, 256, 1440
        for key in ("width", "height"):
            value = body.get(key, 1024)
            if not isinstance(value, int) or value % step or value < low:
                return _invalid(key, f"Value must be a multiple of {step} and >= {low}")
            if not model.startswith("flux-2") and value > high:
                return _invalid(key, f"Input should be less than or equal to {high}")
        if model.startswith("flux-2") and body.get("width", 1024) * body.get("height", 1024) > high:
            return _invalid("width", "Output must be at most 4 megapixels")
    return None


def _dimensions(body: dict[str, Any]) -> tuple[int, int]:
    if "aspect_ratio" in body:
        a, b = (int(x) for x in str(body["aspect_ratio"]).split(":"))
        scale = (1024 * 1024 / (a * b)) ** 0.5
        return max(32, round(a * scale / 32) * 32), max(32, round(b * scale / 32) * 32)
    return int(body.get("width", 1024)), int(body.get("height", 1024))


def create_app(state: FakeState) -> Starlette:
    tasks: dict[str, dict[str, Any]] = {}

    def record(request: Request, body: Any = None) -> None:
        state.requests.append(
            {
                "method": request.method,
                "path": request.url.path,
                "query": dict(request.query_params),
                "headers": dict(request.headers),
                "json": body,
            }
        )

    def unauthorized(request: Request) -> JSONResponse | None:
        if not request.headers.get("x-key"):
            return JSONResponse({"detail": "Not authenticated"}, 403)
        return None

    async def submit(request: Request) -> Response:
        model = request.path_params["model"]
        try:
            body = await request.json()
        except ValueError:
            body = None
        record(request, body)
        failure = state.take_failure()
        script = failure.body if failure and isinstance(failure.body, dict) else {}
        if failure and (failure.status or failure.malformed or failure.delay):
            answer = await apply_failure(failure)
            if answer is not None:
                return answer
        if (denied := unauthorized(request)) is not None:
            return denied
        if model not in COSTS:
            return JSONResponse({"detail": "Not Found"}, 404)
        if (invalid := _validate(model, body)) is not None:
            return invalid
        width, height = _dimensions(body)
        seed = body.get("seed")
        if not isinstance(seed, int):
            seed = int(
                hashlib.sha256(f"{body['prompt']}|{len(tasks)}".encode()).hexdigest()[:8], 16
            )
        task_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"bfl|{model}|{body['prompt']}|{len(tasks)}"))
        tasks[task_id] = {
            "polls": 0,
            "prompt": body["prompt"],
            "upsample": bool(body.get("prompt_upsampling")),
            "seed": seed,
            "width": width,
            "height": height,
            "format": body.get("output_format", "jpeg"),
            "script": {k: v for k, v in script.items() if k.endswith("status") or k == "details"},
        }
        first, extra = COSTS[model]
        megapixels = width * height / 1_000_000
        origin = str(request.base_url).rstrip("/")
        return JSONResponse(
            {
                "id": task_id,
                "polling_url": f"{origin}/v1/get_result?id={task_id}",
                "cost": round(first + extra * max(0.0, megapixels - 1), 2),
                "input_mp": 0.0,
                "output_mp": round(megapixels, 2),
            }
        )

    async def get_result(request: Request) -> Response:
        record(request)
        if (denied := unauthorized(request)) is not None:
            return denied
        task_id = request.query_params.get("id", "")
        task = tasks.get(task_id)
        if task is None:
            return JSONResponse({"id": task_id, "status": "Task not found", "result": None})
        task["polls"] += 1
        status = task["script"].get("task_status")
        if status == "malformed":
            return Response("{'status': Ready", media_type="application/json")
        common = {"id": task_id, "details": task["script"].get("details"), "preview": None}
        if status:
            return JSONResponse({**common, "status": status, "result": None, "progress": None})
        if task["polls"] <= READY_AFTER:
            progress = round(task["polls"] / (READY_AFTER + 1), 2)
            return JSONResponse(
                {**common, "status": "Pending", "result": None, "progress": progress}
            )
        ext = "jpg" if task["format"] == "jpeg" else "png"
        signature = hashlib.sha256(task_id.encode()).hexdigest()[:16]
        origin = str(request.base_url).rstrip("/")
        prompt = task["prompt"] + (", highly detailed" if task["upsample"] else "")
        result = {
            "sample": f"{origin}/delivery/{task_id}.{ext}?se=2030-01-01&sig={signature}",
            "prompt": prompt,
            "seed": task["seed"],
            "start_time": 1700000000.1,
            "end_time": 1700000004.2,
            "duration": 4.1,
        }
        return JSONResponse({**common, "status": "Ready", "result": result, "progress": None})

    async def delivery(request: Request) -> Response:
        record(request)
        name = request.path_params["name"]
        task = tasks.get(name.rsplit(".", 1)[0])
        if task is None:
            return PlainTextResponse("The specified key does not exist.", 404)
        if task["script"].get("delivery_status"):
            return PlainTextResponse("AuthenticationFailed", task["script"]["delivery_status"])
        key = f"{task['prompt']}|{task['seed']}"
        data = image_bytes(task["width"], task["height"], key, task["format"])
        media = "image/jpeg" if task["format"] == "jpeg" else "image/png"
        return Response(data, media_type=media)

    return Starlette(
        routes=[
            Route("/v1/get_result", get_result, methods=["GET"]),
            Route("/v1/{model}", submit, methods=["POST"]),
            Route("/delivery/{name}", delivery, methods=["GET"]),
        ]
    )
