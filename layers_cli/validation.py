"""Checking request bodies before anything is held or sent: every 400 says which field and why.

Unknown fields are tolerated (clients send many); known fields must have the right shape.
"""

from __future__ import annotations

from typing import Any

from .catalog import ModelInfo
from .errors import CapabilityError, InvalidRequest

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
EFFORTS = {"none", "minimal", "low", "medium", "high", "xhigh"}


def require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body


def require_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest(
            "'model' is required: a model id such as 'openai/gpt-4o'.",
            hint="GET /v1/models lists every id.",
            param="model",
        )
    return model.strip()


def _number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidRequest(f"'{name}' must be a number from {low:g} to {high:g}.", param=name)


def _has_images(messages: list[dict[str, Any]]) -> bool:
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") in ("image_url", "input_image"):
                    return True
    return False


def check_chat(body: dict[str, Any], model: ModelInfo) -> int:
    """Validate a chat body against the model; returns the effective maximum output tokens
    (and writes it into the body so adapters always see one)."""
    if model.type != "language":
        endpoint = "/v1/images/generations" if model.type == "image" else "/v1/embeddings"
        raise CapabilityError(
            f"{model.id} is an {model.type} model and cannot chat; use POST {endpoint}.",
            param="model",
        )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array.", param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f"messages[{i}] must be an object.", param=f"messages[{i}]")
        role = message.get("role")
        if role not in ROLES:
            raise InvalidRequest(
                f"messages[{i}].role must be one of {', '.join(sorted(ROLES))}, not {role!r}.",
                param=f"messages[{i}].role",
            )
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise InvalidRequest(
                f"messages[{i}].content must be a string, an array of parts or null.",
                param=f"messages[{i}].content",
            )
        if role == "tool" and not message.get("tool_call_id"):
            raise InvalidRequest(
                f"messages[{i}] has role 'tool' but no 'tool_call_id'.",
                param=f"messages[{i}].tool_call_id",
            )
    if "stream" in body and not isinstance(body["stream"], bool):
        raise InvalidRequest("'stream' must be true or false.", param="stream")
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    n = body.get("n", 1)
    if n not in (1, None):
        raise InvalidRequest("Only n=1 is supported.", param="n")
    tools = body.get("tools")
    if tools:
        if not isinstance(tools, list) or not all(
            isinstance(t, dict)
            and isinstance(t.get("function"), dict)
            and isinstance(t["function"].get("name"), str)
            for t in tools
        ):
            raise InvalidRequest(
                "'tools' must be an array of {type: 'function', function: {name, parameters}}.",
                param="tools",
            )
        if not model.has("tools"):
            raise CapabilityError(
                f"{model.id} does not support tool calling; pick a model with the 'tools' "
                "capability (`layers models list --capability tools`).",
                param="tools",
            )
    fmt = body.get("response_format")
    if fmt is not None:
        if not isinstance(fmt, dict) or fmt.get("type") not in (
            "text",
            "json_object",
            "json_schema",
        ):
            raise InvalidRequest(
                "'response_format.type' must be 'text', 'json_object' or 'json_schema'.",
                param="response_format",
            )
        if fmt["type"] == "json_schema":
            schema = fmt.get("json_schema")
            if not isinstance(schema, dict) or not isinstance(schema.get("schema", {}), dict):
                raise InvalidRequest(
                    "'response_format.json_schema' must be {name, schema, strict?}.",
                    param="response_format",
                )
        if fmt["type"] != "text" and not model.has("json"):
            raise CapabilityError(
                f"{model.id} does not support structured (JSON) output.", param="response_format"
            )
    if _has_images(messages) and not model.has("vision"):
        raise CapabilityError(
            f"{model.id} cannot read images; pick a model with the 'vision' capability "
            "(`layers models list --capability vision`).",
            param="messages",
        )
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in EFFORTS:
        raise InvalidRequest(
            f"'reasoning_effort' must be one of {', '.join(sorted(EFFORTS))}.",
            param="reasoning_effort",
        )
    thinking = body.get("thinking")
    if thinking is not None and not isinstance(thinking, dict):
        raise InvalidRequest("'thinking' must be {type, budget_tokens}.", param="thinking")
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidRequest("'metadata' must be an object.", param="metadata")
    return _max_output(body, model)


def _max_output(body: dict[str, Any], model: ModelInfo) -> int:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InvalidRequest(f"'{name}' must be a positive integer.", param=name)
        if value > model.max_output_tokens:
            raise InvalidRequest(
                f"'{name}' is {value}, above {model.id}'s maximum output of "
                f"{model.max_output_tokens} tokens.",
                param=name,
            )
        return value
    body["max_tokens"] = model.default_output_tokens
    return model.default_output_tokens


def check_images(body: dict[str, Any], model: ModelInfo) -> int:
    """Validate an images body; returns n."""
    if model.type != "image":
        raise CapabilityError(
            f"{model.id} does not generate images; pick an image model "
            "(`layers models list --type image`).",
            param="model",
        )
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidRequest("'prompt' is required.", param="prompt")
    n = body.get("n", 1)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 10:
        raise InvalidRequest("'n' must be an integer from 1 to 10.", param="n")
    fmt = body.get("response_format")
    if fmt not in (None, "b64_json", "url"):
        raise InvalidRequest(
            "'response_format' must be 'b64_json' or 'url'.", param="response_format"
        )
    return n


def check_embeddings(body: dict[str, Any], model: ModelInfo) -> list[str]:
    """Validate an embeddings body; returns the inputs as a list of strings."""
    if model.type != "embedding":
        raise CapabilityError(
            f"{model.id} is not an embedding model (`layers models list --type embedding`).",
            param="model",
        )
    raw = body.get("input")
    inputs = [raw] if isinstance(raw, str) else raw
    if not isinstance(inputs, list) or not inputs or not all(isinstance(x, str) for x in inputs):
        raise InvalidRequest(
            "'input' must be a string or a non-empty array of strings (token arrays are not "
            "supported).",
            param="input",
        )
    if len(inputs) > 2048:
        raise InvalidRequest("At most 2048 inputs per request.", param="input")
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise InvalidRequest(
            "'encoding_format' must be 'float' or 'base64'.", param="encoding_format"
        )
    dims = body.get("dimensions")
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or dims <= 0):
        raise InvalidRequest("'dimensions' must be a positive integer.", param="dimensions")
    return inputs
