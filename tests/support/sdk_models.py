"""Strict validation of replies against the official SDKs' own models: no coercion and no unknown fields."""

from __future__ import annotations

import functools
from typing import Any, TypeVar

import orjson
import pydantic

M = TypeVar("M")

__all__ = ["anthropic_message", "strict"]


def _no_extra(value: Any, path: str) -> None:
    if isinstance(value, pydantic.BaseModel):
        extra = value.model_extra or {}
        assert not extra, f"fields unknown to the SDK at {path or 'top level'}: {sorted(extra)}"
        for name in type(value).model_fields:
            _no_extra(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _no_extra(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_extra(item, f"{path}.{key}")


@functools.cache
def _adapter(model: Any) -> pydantic.TypeAdapter[Any]:
    # Building an adapter for the SDKs' large unions takes a good part of a second: once per type.
    return pydantic.TypeAdapter(model)


def strict(model: Any, data: Any) -> Any:
    """`data` validated as `model` (a model class or a union type) in strict mode, with every object's
    fields known to the SDK; returns the parsed value."""
    parsed = _adapter(model).validate_python(data, strict=True)
    _no_extra(parsed, "")
    return parsed


async def anthropic_message(sdk: Any, stream: bool, **body: Any) -> Any:
    """The Message the anthropic SDK makes of one call: streamed (the SDK's stream helper adds up the
    events), or whole, whose raw JSON is first held strictly to the SDK's Message model."""
    from anthropic.types import Message

    if stream:
        async with sdk.messages.stream(**body) as events:
            return await events.get_final_message()
    raw = await sdk.messages.with_raw_response.create(**body)
    strict(Message, orjson.loads(raw.http_response.content))
    return await raw.parse()
