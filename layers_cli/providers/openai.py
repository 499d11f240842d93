"""OpenAI itself: the compatible engine plus the rules of OpenAI's reasoning models.

Reasoning models (``o1``/``o3``/``o4-mini``/``gpt-5*``, not ``gpt-5-chat``) reject
``max_tokens``, ``temperature`` and other sampling knobs and take instructions as the
``developer`` role. Clients often send the generic shape anyway (the AI SDK does not recognise
``openai/o3`` as a reasoning model), so the adapter translates instead of letting OpenAI 400.
"""

from __future__ import annotations

import re
from typing import Any

from .base import UpstreamCall
from .openai_compat import OpenAICompatible
from .openai_wire import DIALECTS

REASONING_MODEL = re.compile(r"^(o\d|gpt-5)")
# Sampling settings reasoning models refuse (the list @ai-sdk/openai drops for them).
UNSUPPORTED_WHEN_REASONING = (
    "temperature",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
)


def is_reasoning_model(upstream_model: str) -> bool:
    model = upstream_model.rsplit("/", 1)[-1].lower()
    return bool(REASONING_MODEL.match(model)) and "-chat" not in model


def effort_from_thinking(thinking: Any) -> str | None:
    """The hosted service's ``thinking.budget_tokens`` as an OpenAI ``reasoning_effort``."""
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return None
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int):
        return None
    if budget < 4096:
        return "low"
    return "medium" if budget < 16384 else "high"


class OpenAIAdapter(OpenAICompatible):
    def __init__(self) -> None:
        super().__init__("openai", dialect=DIALECTS["openai"])

    def chat_body(self, call: UpstreamCall, *, stream: bool) -> dict[str, Any]:
        body = super().chat_body(call, stream=stream)
        if not is_reasoning_model(call.upstream_model):
            body.pop("reasoning_effort", None)  # "not supported with this model"
            return body
        limit = body.pop("max_tokens", None)
        if limit:
            body["max_completion_tokens"] = limit
        for key in UNSUPPORTED_WHEN_REASONING:
            body.pop(key, None)
        body["messages"] = [
            {**message, "role": "developer"} if message.get("role") == "system" else message
            for message in body["messages"]
        ]
        if "reasoning_effort" not in body:
            effort = effort_from_thinking(call.body.get("thinking"))
            if effort:
                body["reasoning_effort"] = effort
        return body


ADAPTER = OpenAIAdapter()
