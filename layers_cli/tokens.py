"""Token estimation without a tokenizer download.

Providers' reported counts always win; this estimate sizes holds, bills streams that were cut
short, and gives the simulator its counts. It errs high (≈ 3.5 characters a token) so a hold
covers what the provider later reports.
"""

from __future__ import annotations

import json
import math
from typing import Any

CHARS_PER_TOKEN = 3.5
MESSAGE_OVERHEAD = 4  # role and framing tokens per message, as OpenAI counts them
IMAGE_TOKENS = 765  # a high-detail 1024x1024 image part, OpenAI's figure


def estimate_text_tokens(text: str) -> int:
    if not text:
        return 0
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


def _content_tokens(content: Any) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return estimate_text_tokens(content)
    total = 0
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                total += estimate_text_tokens(str(part))
            elif part.get("type") == "text":
                total += estimate_text_tokens(str(part.get("text", "")))
            elif part.get("type") in ("image_url", "input_image"):
                total += IMAGE_TOKENS
            else:
                total += estimate_text_tokens(json.dumps(part)[:4000])
    return total


def estimate_messages_tokens(messages: list[dict[str, Any]], tools: Any = None) -> int:
    """Prompt tokens for a Chat Completions ``messages`` list (plus tool definitions)."""
    total = 3
    for message in messages:
        total += MESSAGE_OVERHEAD
        total += _content_tokens(message.get("content"))
        for key in ("reasoning_content", "name", "tool_call_id"):
            if isinstance(message.get(key), str):
                total += estimate_text_tokens(message[key])
        for call in message.get("tool_calls") or []:
            total += estimate_text_tokens(json.dumps(call, separators=(",", ":")))
    if tools:
        total += estimate_text_tokens(json.dumps(tools, separators=(",", ":")))
    return total
