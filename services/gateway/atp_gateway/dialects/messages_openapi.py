"""The OpenAPI description of POST /v1/messages (request shape, replies and Anthropic errors)."""

from __future__ import annotations

from typing import Any

__all__ = ["COUNT_OPENAPI", "COUNT_REPLIES", "MESSAGES_OPENAPI", "MESSAGES_REPLIES"]

_BLOCK = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"enum": ["text", "image", "document", "tool_use", "tool_result", "thinking"]},
        "text": {"type": "string"},
    },
}
_REQUEST = {
    "type": "object",
    "required": ["model", "messages", "max_tokens"],
    "properties": {
        "model": {"type": "string", "minLength": 1, "maxLength": 256},
        "max_tokens": {"type": "integer", "minimum": 1},
        "messages": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["role", "content"],
                "properties": {
                    "role": {"enum": ["user", "assistant"]},
                    "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": _BLOCK}]},
                },
            },
        },
        "system": {"oneOf": [{"type": "string"}, {"type": "array", "items": _BLOCK}]},
        "stop_sequences": {"type": "array", "items": {"type": "string"}},
        "temperature": {"type": "number", "minimum": 0, "maximum": 1},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "top_k": {"type": "integer", "minimum": 0},
        "stream": {"type": "boolean"},
        "tools": {"type": "array", "items": {"type": "object"}},
        "tool_choice": {"type": "object"},
        "thinking": {"type": "object"},
        "metadata": {"type": "object", "properties": {"user_id": {"type": "string"}}},
    },
}
_ERROR = {
    "type": "object",
    "required": ["type", "error"],
    "properties": {
        "type": {"const": "error"},
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
        },
    },
}
_MESSAGE = {
    "type": "object",
    "required": ["id", "type", "role", "model", "content", "stop_reason", "usage"],
    "properties": {
        "type": {"const": "message"},
        "role": {"const": "assistant"},
        "content": {"type": "array"},
    },
}

MESSAGES_OPENAPI: dict[str, Any] = {
    "parameters": [
        {
            "name": "anthropic-version",
            "in": "header",
            "required": True,
            "schema": {"type": "string", "enum": ["2023-06-01"]},
        }
    ],
    "requestBody": {"required": True, "content": {"application/json": {"schema": _REQUEST}}},
    "security": [{"bearer": []}],
}
MESSAGES_REPLIES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A Message, or with `stream: true` Anthropic's SSE event sequence",
        "content": {
            "application/json": {"schema": _MESSAGE},
            "text/event-stream": {"schema": {"type": "string"}},
        },
    },
    **{
        status: {"description": description, "content": {"application/json": {"schema": _ERROR}}}
        for status, description in (
            (400, "invalid_request_error (the message names the JSON path)"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (409, "invalid_request_error"),
            (413, "invalid_request_error: body too large"),
            (429, "rate_limit_error or billing_error"),
            (499, "Cancelled"),
            (500, "api_error"),
            (502, "api_error: the provider failed"),
            (504, "timeout_error"),
            (529, "overloaded_error: no provider available, or draining"),
        )
    },
}

_COUNTED = ("model", "messages", "system", "tools", "tool_choice", "thinking")
_COUNT_REQUEST = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {k: v for k, v in _REQUEST["properties"].items() if k in _COUNTED},  # type: ignore[attr-defined]
}
COUNT_OPENAPI: dict[str, Any] = {
    **MESSAGES_OPENAPI,
    "requestBody": {"required": True, "content": {"application/json": {"schema": _COUNT_REQUEST}}},
}
COUNT_REPLIES: dict[int | str, dict[str, Any]] = {
    **MESSAGES_REPLIES,
    200: {
        "description": "The input tokens, counted by the provider of the first ranked candidate that can",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["input_tokens"],
                    "properties": {"input_tokens": {"type": "integer", "minimum": 0}},
                }
            }
        },
    },
}
