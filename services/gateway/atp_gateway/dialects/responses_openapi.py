"""The OpenAPI description of POST /v1/responses (request shape, replies and errors), for docs and schemathesis."""

from __future__ import annotations

from typing import Any

__all__ = ["INPUT_TOKENS_OPENAPI", "INPUT_TOKENS_REPLIES", "RESPONSES_OPENAPI", "RESPONSES_REPLIES"]

_PART = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {
            "enum": ["input_text", "input_image", "input_file", "input_audio", "output_text", "refusal"]
        },
        "text": {"type": "string"},
        "image_url": {"type": "string"},
        "detail": {"enum": ["auto", "low", "high"]},
    },
}
_ITEM = {
    "type": "object",
    "properties": {
        "type": {"enum": ["message", "function_call", "function_call_output", "reasoning"]},
        "role": {"enum": ["user", "assistant", "system", "developer"]},
        "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": _PART}]},
        "call_id": {"type": "string"},
        "name": {"type": "string"},
        "arguments": {"type": "string"},
        "output": {"type": "string"},
    },
}
_REQUEST_PROPERTIES: dict[str, Any] = {
    "model": {"type": "string", "minLength": 1, "maxLength": 256},
    "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": _ITEM}]},
    "instructions": {"type": "string"},
    "max_output_tokens": {"type": "integer", "minimum": 1},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "top_p": {"type": "number", "minimum": 0, "maximum": 1},
    "stream": {"type": "boolean"},
    "store": {"type": "boolean"},
    "parallel_tool_calls": {"type": "boolean"},
    "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
    "tools": {"type": "array", "items": {"type": "object"}},
    "tool_choice": {"oneOf": [{"enum": ["none", "auto", "required"]}, {"type": "object"}]},
    "text": {"type": "object"},
    "reasoning": {"type": "object"},
    "user": {"type": "string"},
}
_REQUEST = {"type": "object", "required": ["model", "input"], "properties": _REQUEST_PROPERTIES}
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {"message": {"type": "string"}, "type": {"type": "string"}},
        }
    },
}
_RESPONSE = {
    "type": "object",
    "required": ["id", "object", "created_at", "model", "output", "status"],
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "response"},
        "output": {"type": "array"},
        "status": {"enum": ["completed", "incomplete"]},
    },
}

RESPONSES_OPENAPI: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": _REQUEST}}},
    "security": [{"bearer": []}],
}
RESPONSES_REPLIES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A Response, or with `stream: true` an SSE stream of Responses events",
        "content": {
            "application/json": {"schema": _RESPONSE},
            "text/event-stream": {"schema": {"type": "string"}},
        },
    },
    **{
        status: {"description": description, "content": {"application/json": {"schema": _ERROR}}}
        for status, description in (
            (400, "Invalid request (the error's param names the JSON path)"),
            (401, "Missing or wrong API key"),
            (403, "Not allowed for this tenant"),
            (404, "Unknown model or route"),
            (413, "Body too large"),
            (429, "Rate limited or budget exhausted"),
            (499, "Cancelled"),
            (500, "Internal error"),
            (502, "The provider failed"),
            (503, "Unavailable or draining"),
            (504, "Deadline exceeded"),
        )
    },
}

_COUNTED = (
    "model",
    "input",
    "instructions",
    "parallel_tool_calls",
    "tools",
    "tool_choice",
    "text",
    "reasoning",
)
INPUT_TOKENS_OPENAPI: dict[str, Any] = {
    **RESPONSES_OPENAPI,
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    **_REQUEST,
                    "properties": {k: v for k, v in _REQUEST_PROPERTIES.items() if k in _COUNTED},
                }
            }
        },
    },
}
INPUT_TOKENS_REPLIES: dict[int | str, dict[str, Any]] = {
    **RESPONSES_REPLIES,
    200: {
        "description": "The input tokens, counted by the provider of the first ranked candidate that can",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["object", "input_tokens"],
                    "properties": {
                        "object": {"const": "response.input_tokens"},
                        "input_tokens": {"type": "integer", "minimum": 0},
                    },
                }
            }
        },
    },
}
