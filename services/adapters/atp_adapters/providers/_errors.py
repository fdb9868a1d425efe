"""What a provider's error reply says: its message and parameter, and when to retry."""

from __future__ import annotations

import email.utils
import re
import time
from typing import Any

import orjson

__all__ = ["error_message", "exceeds_context", "parse_retry_after"]

# How providers say a prompt does not fit: OpenAI and compatible servers ("maximum context length"),
# Anthropic ("prompt is too long", "exceed context limit"), Bedrock ("Input is too long"), Gemini ("exceeds
# the maximum number of tokens allowed"), Ollama and others ("context window", "too many tokens").
_CONTEXT_WINDOW = re.compile(
    r"context[_ ]length|context window|context limit|prompt is too long|input is too long"
    r"|maximum number of tokens|too many (?:input )?tokens",
    re.IGNORECASE,
)


def exceeds_context(message: str, code: str | None) -> bool:
    """Whether a provider's refusal says the prompt does not fit the model's context window."""
    return code == "context_length_exceeded" or _CONTEXT_WINDOW.search(message) is not None


def parse_retry_after(headers: Any) -> float | None:
    """Retry-After (seconds or an HTTP date), or the millisecond variant some providers send."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(float(millis) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def error_message(body: bytes) -> tuple[str, str | None, str | None]:
    """The provider's own message, offending parameter and error code from an error body, whatever its
    dialect.

    OpenAI, Anthropic and Gemini all nest it as `{"error": {"message": ...}}`; only OpenAI's (and compatible
    servers') has a `code` word (Gemini's is the HTTP status again).
    """
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()
        return (text[:500] or "no error body"), None, None
    if isinstance(payload, list) and payload:  # Gemini's streaming endpoint wraps errors in a list
        payload = payload[0]
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, dict):
            message = error.get("message") or error.get("type") or orjson.dumps(error).decode()[:500]
            param, code = error.get("param"), error.get("code")
            return (
                str(message),
                param if isinstance(param, str) and param else None,
                code[:64] if isinstance(code, str) and code else None,
            )
        if isinstance(error, str):
            return error, None, None
    return body.decode("utf-8", "replace")[:500], None, None
