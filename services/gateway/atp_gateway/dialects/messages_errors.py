"""Errors in Anthropic's shape: {"type": "error", "error": {"type": ..., "message": ...}} with its statuses."""

from __future__ import annotations

import orjson

from atp_common.errors import CONTEXT_LENGTH_EXCEEDED, AtpError, BudgetExceeded
from atp_gateway.dialects.json_fields import rename_error
from atp_gateway.errors import ErrorReply, error_reply

__all__ = ["RENAMES", "anthropic_error", "messages_error_reply", "stream_error_event"]

# Internal (Chat Completions) parameter names that routing and providers name in their refusals, as the
# Messages body spells them.
RENAMES = {
    "max_completion_tokens": "max_tokens",
    "reasoning_effort": "thinking",
    "reasoning": "thinking",
    "response_format": "output_config.format",
    "stop": "stop_sequences",
    "parallel_tool_calls": "tool_choice.disable_parallel_tool_use",
    "user": "metadata.user_id",
    "safety_identifier": "metadata.user_id",
}

# HTTP status to Anthropic's error type. Anthropic answers an overloaded service with 529, which its SDK
# retries like a 503; ATP's 503 (no provider available, draining) becomes that.
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_STATUS = {503: 529}
_TOO_LONG = "prompt is too long"


def anthropic_error(exc: AtpError) -> tuple[int, dict[str, str]]:
    """The status and the value of the body's "error" for `exc`, its param the path in the Messages body."""
    rename_error(exc, RENAMES)
    status = exc.mapping.http_status
    status = _STATUS.get(status, status)
    kind = "billing_error" if isinstance(exc, BudgetExceeded) else _TYPES.get(status, "api_error")
    message = exc.message
    if exc.param and exc.param not in message:
        message = f"{exc.param}: {message}"
    if exc.reason == CONTEXT_LENGTH_EXCEEDED and _TOO_LONG not in message:
        # Claude's own words for it, which Anthropic's clients look for before they compact a conversation.
        message = f"{_TOO_LONG}: {message}"
    return status, {"type": kind, "message": message}


def messages_error_reply(exc: AtpError) -> ErrorReply:
    """The exchange's error reply (headers: retry-after, x-ratelimit-*) with Anthropic's body and status."""
    reply = error_reply(exc)
    reply.status, reply.error = anthropic_error(exc)
    reply.body = orjson.dumps({"type": "error", "error": reply.error})
    return reply


def stream_error_event(exc: AtpError) -> bytes:
    """The `error` event that ends a stream that broke after output."""
    _, error = anthropic_error(exc)
    return b"event: error\ndata: " + orjson.dumps({"type": "error", "error": error}) + b"\n\n"
