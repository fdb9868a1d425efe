"""What OpenAI's input token count (POST /v1/responses/input_tokens) checks of its body, by the SDK's types."""

from __future__ import annotations

import functools
import json
from typing import Any

import pydantic
from openai.types.responses.input_token_count_params import InputTokenCountParams

__all__ = ["Invalid", "check_input_tokens_request", "counted_openai_tokens"]


class Invalid(ValueError):
    """A body the real endpoint answers with 400."""


@functools.cache
def _adapter() -> pydantic.TypeAdapter[Any]:
    return pydantic.TypeAdapter(InputTokenCountParams)


def _consume(value: Any) -> Any:
    # The SDK types its lists as Iterable, which pydantic checks only as they are read: read them all.
    if isinstance(value, dict):
        return {key: _consume(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)) or hasattr(value, "__next__"):
        return [_consume(item) for item in value]
    return value


def check_input_tokens_request(body: Any) -> None:
    """Raise Invalid for a body the count refuses: unknown top-level fields, or any field (items, parts,
    tools, tool choice, text format) not of the SDK's own request types."""
    if not isinstance(body, dict):
        raise Invalid("the body must be a JSON object")
    for key in body:
        if key not in InputTokenCountParams.__annotations__:
            raise Invalid(f"Unknown parameter: '{key}'.")
    try:
        _consume(_adapter().validate_python(body))
    except pydantic.ValidationError as exc:
        raise Invalid(f"Invalid body: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None


def counted_openai_tokens(body: dict[str, Any]) -> int:
    """The fake's count: a quarter of the JSON of everything counted but the model (deterministic)."""
    return len(json.dumps({k: v for k, v in body.items() if k != "model"}, sort_keys=True)) // 4
