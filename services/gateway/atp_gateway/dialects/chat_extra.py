"""An OpenAI-compatible server's reply fields beyond the typed reply, put back where the server had them."""

from __future__ import annotations

from typing import Any

import orjson

from atp.adapters.v1 import adapters_pb2
from atp_common.replies import OPENAI_EXTRA_FIELD

__all__ = ["extras_of", "fill", "merge_whole"]


def extras_of(completion: adapters_pb2.GenerateCompletion) -> dict[str, Any] | None:
    """The server's extra fields, or None (every reply of other providers, and most of theirs)."""
    raw = completion.provider_fields.get(OPENAI_EXTRA_FIELD)
    return orjson.loads(raw) if raw else None


def fill(into: dict[str, Any], extra: dict[str, Any] | None) -> None:
    """Add the server's fields that ATP's reply does not already hold (ATP's own stay as they are)."""
    for key, value in (extra or {}).items():
        into.setdefault(key, value)


def merge_whole(out: dict[str, Any], extras: dict[str, Any]) -> None:
    """A chat.completion with the server's fields back at the top, in usage, and per choice and message."""
    fill(out, extras.get("reply"))
    if isinstance(out.get("usage"), dict):
        fill(out["usage"], extras.get("usage"))
    said = extras.get("choices") or {}
    for choice in out["choices"]:
        own = said.get(str(choice["index"]))
        if own:
            fill(choice, own.get("choice"))
            fill(choice["message"], own.get("message"))
