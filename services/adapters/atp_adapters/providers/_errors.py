"""What a provider's error reply says: its message and parameter, and when to retry."""

from __future__ import annotations

import email.utils
import time
from typing import Any

import orjson

__all__ = ["error_message", "parse_retry_after"]


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


def error_message(body: bytes) -> tuple[str, str | None]:
    """The provider's own message (and offending parameter) from an error body, whatever its dialect.

    OpenAI, Anthropic and Gemini all nest it as `{"error": {"message": ...}}`.
    """
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()
        return (text[:500] or "no error body"), None
    if isinstance(payload, list) and payload:  # Gemini's streaming endpoint wraps errors in a list
        payload = payload[0]
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, dict):
            message = error.get("message") or error.get("type") or orjson.dumps(error).decode()[:500]
            param = error.get("param")
            return str(message), param if isinstance(param, str) and param else None
        if isinstance(error, str):
            return error, None
    return body.decode("utf-8", "replace")[:500], None
