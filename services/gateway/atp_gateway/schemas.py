"""The request shapes the gateway accepts, as TypedDicts validated straight from JSON bytes.

Why TypedDicts and `TypeAdapter.validate_json`: pydantic-core parses and validates in one pass in Rust and
hands back plain dicts, which the translation to protobuf reads directly; it is the cheapest of the ways
measured (docs/design-notes.md, "Figures behind the code"), and a BaseModel would also build objects nobody
needs. Strict mode: "100" is not an integer and "true" is not a boolean, as in OpenAI's API.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Required

from pydantic import ConfigDict, Field, TypeAdapter
from typing_extensions import TypedDict

from atp_gateway.dialects.chat_schema import CHAT_REQUEST
from atp_gateway.embeddings import EMBEDDING_REQUEST
from atp_gateway.ids import ID_PATTERN

_CONFIG = ConfigDict(extra="forbid", strict=True)

ShortText = Annotated[str, Field(max_length=256)]


class FeedbackRequest(TypedDict, total=False):
    """A quality score for one decision (the x-atp-decision-id of a reply)."""

    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    # ids.py's format: checked here, before the call to the observer carries it.
    decision_id: Required[Annotated[str, Field(min_length=1, max_length=128, pattern=ID_PATTERN)]]
    score: Required[Annotated[float, Field(ge=0, le=1)]]
    label: Annotated[str, Field(max_length=64)]
    comment: Annotated[str, Field(max_length=4096)]


class WsRequest(TypedDict):
    """A WebSocket frame that starts a chat request (the body is validated as ChatCompletionRequest)."""

    __pydantic_config__ = ConfigDict(extra="forbid", strict=True)  # type: ignore[misc]
    type: Literal["request"]
    id: Annotated[str, Field(min_length=1, max_length=128)]
    body: dict[str, Any]


class WsCancel(TypedDict):
    __pydantic_config__ = ConfigDict(extra="forbid", strict=True)  # type: ignore[misc]
    type: Literal["cancel"]
    id: Annotated[str, Field(min_length=1, max_length=128)]


FEEDBACK_REQUEST = TypeAdapter(FeedbackRequest)
WS_MESSAGE: TypeAdapter[WsRequest | WsCancel] = TypeAdapter(
    Annotated[WsRequest | WsCancel, Field(discriminator="type")]
)


# Response shapes, for the OpenAPI document (and so for schemathesis' response checks).
_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
_USAGE_SCHEMA = {
    "type": "object",
    "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
    "properties": {
        "prompt_tokens": {"type": "integer"},
        "completion_tokens": {"type": "integer"},
        "total_tokens": {"type": "integer"},
    },
}
_COMPLETION_SCHEMA = {
    "type": "object",
    "required": ["id", "object", "created", "model", "choices"],
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "chat.completion"},
        "created": {"type": "integer"},
        "model": {"type": "string"},
        "choices": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["index", "message", "finish_reason"],
                "properties": {
                    "index": {"type": "integer"},
                    "message": {
                        "type": "object",
                        "required": ["role"],
                        "properties": {
                            "role": {"const": "assistant"},
                            "content": {"type": ["string", "null"]},
                        },
                    },
                    "finish_reason": {"type": "string"},
                },
            },
        },
        "usage": _USAGE_SCHEMA,
    },
}


def _error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    described = {
        400: "Invalid request",
        401: "Missing or wrong API key",
        402: "Budget exhausted",
        403: "Not allowed for this tenant",
        404: "Unknown model or route",
        413: "Body too large",
        429: "Rate limited",
        499: "Cancelled",
        500: "Internal error",
        502: "The provider failed",
        503: "Unavailable or draining",
        504: "Deadline exceeded",
    }
    return {
        status: {
            "description": described[status],
            "content": {"application/json": {"schema": _ERROR_SCHEMA}},
        }
        for status in statuses
    }


_SERVING_ERRORS = (400, 401, 402, 403, 404, 413, 429, 499, 500, 502, 503, 504)


# Shared definitions referenced by the request schemas; create_app adds them to components/schemas.
OPENAPI_COMPONENTS: dict[str, Any] = {}


def _request_body(adapter: TypeAdapter[Any]) -> dict[str, Any]:
    schema = adapter.json_schema(ref_template="#/components/schemas/{model}")
    OPENAPI_COMPONENTS.update(schema.pop("$defs", {}))
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _exclusive(body: dict[str, Any], first: str, second: str) -> dict[str, Any]:
    """`body` whose schema says that `first` and `second` are never both set (null counts as unset)."""
    schema = body["requestBody"]["content"]["application/json"]["schema"]
    schema["not"] = {
        "required": [first, second],
        "properties": {first: {"type": "integer"}, second: {"type": "integer"}},
    }
    for name, other in ((first, second), (second, first)):
        schema["properties"][name]["description"] = (
            f"Mutually exclusive with `{other}` (400 if both are set)."
        )
    return body


CHAT_OPENAPI: dict[str, Any] = {
    **_exclusive(_request_body(CHAT_REQUEST), "max_tokens", "max_completion_tokens"),
    "security": [{"bearer": []}],
}
CHAT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A chat completion, or with `stream: true` an SSE stream of chat.completion.chunk",
        "content": {
            "application/json": {"schema": _COMPLETION_SCHEMA},
            "text/event-stream": {"schema": {"type": "string"}},
        },
    },
    **_error_responses(*_SERVING_ERRORS),
}
FEEDBACK_OPENAPI: dict[str, Any] = {**_request_body(FEEDBACK_REQUEST), "security": [{"bearer": []}]}
FEEDBACK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Feedback stored",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["id", "object", "decision_id", "joined"],
                    "properties": {
                        "id": {"type": "string"},
                        "object": {"const": "feedback"},
                        "decision_id": {"type": "string"},
                        "joined": {"type": "boolean"},
                    },
                }
            }
        },
    },
    **_error_responses(400, 401, 403, 404, 413, 429, 500, 503, 504),
}
EMBEDDINGS_OPENAPI: dict[str, Any] = {**_request_body(EMBEDDING_REQUEST), "security": [{"bearer": []}]}
EMBEDDINGS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Embeddings, one per input, in order",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["object", "data", "model", "usage"],
                    "properties": {
                        "object": {"const": "list"},
                        "data": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["object", "index", "embedding"],
                                "properties": {
                                    "object": {"const": "embedding"},
                                    "index": {"type": "integer"},
                                    "embedding": {"type": ["array", "string"]},
                                },
                            },
                        },
                        "model": {"type": "string"},
                        "usage": {
                            "type": "object",
                            "required": ["prompt_tokens", "total_tokens"],
                            "properties": {
                                "prompt_tokens": {"type": "integer"},
                                "total_tokens": {"type": "integer"},
                            },
                        },
                    },
                }
            }
        },
    },
    **_error_responses(*_SERVING_ERRORS),
}
_MODEL_SCHEMA = {
    "type": "object",
    "required": ["id", "object", "created", "owned_by"],
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "model"},
        "created": {"type": "integer"},
        "owned_by": {"type": "string"},
    },
}
MODEL_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The model or route", "content": {"application/json": {"schema": _MODEL_SCHEMA}}},
    **_error_responses(401, 404, 500, 503, 504),
}
MODELS_OPENAPI: dict[str, Any] = {"security": [{"bearer": []}]}
# Retrieve, delete, cancel and input items of a stored Response: ATP stores none, so a valid key gets 404.
STORED_RESPONSE_REPLIES: dict[int | str, dict[str, Any]] = _error_responses(401, 404, 500)
MODELS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Models and routes this gateway serves",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["object", "data"],
                    "properties": {
                        "object": {"const": "list"},
                        "data": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["id", "object", "created", "owned_by"],
                                "properties": {
                                    "id": {"type": "string"},
                                    "object": {"const": "model"},
                                    "created": {"type": "integer"},
                                    "owned_by": {"type": "string"},
                                },
                            },
                        },
                    },
                }
            }
        },
    },
    **_error_responses(401, 500, 503, 504),
}
