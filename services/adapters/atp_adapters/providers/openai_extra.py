"""The fields of an OpenAI-compatible reply that ATP's typed reply has no place for, kept for chat clients."""

from __future__ import annotations

from typing import Any

import orjson

from atp_common.replies import OPENAI_EXTRA_FIELD as EXTRA_FIELD

__all__ = ["StreamExtras", "reply_extras", "unknown"]

# What the typed reply holds (or ATP writes itself: the id, created). Everything else a server adds
# (vLLM's stop_reason and prompt_logprobs, OpenRouter's provider and reasoning_details, Perplexity's
# citations, Groq's x_groq, `reasoning` beside reasoning_content) travels as it came.
_REPLY = frozenset(
    ("id", "object", "created", "model", "choices", "usage", "system_fingerprint", "service_tier")
)
# OpenAI pads stream chunks with random `obfuscation` against length side channels: ATP's chunks are its
# own, so the provider's padding says nothing about them and is not carried.
_CHUNK = _REPLY | {"obfuscation"}
_CHOICE = frozenset(("index", "message", "delta", "logprobs", "finish_reason"))
_MESSAGE = frozenset(
    ("role", "content", "refusal", "tool_calls", "annotations", "audio", "reasoning_content")
)
_USAGE = frozenset(
    (
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "prompt_tokens_details",
        "completion_tokens_details",
    )
)


def unknown(fields: dict[str, Any], known: frozenset[str]) -> dict[str, Any]:
    """The fields not in `known`, as they came."""
    return {key: value for key, value in fields.items() if key not in known}


def _message_extras(message: dict[str, Any]) -> dict[str, Any]:
    extras = unknown(message, _MESSAGE)
    if message.get("annotations") == []:
        # OpenAI always sends the list, empty or not; the typed reply cannot tell empty from absent.
        extras["annotations"] = []
    return extras


def reply_extras(payload: dict[str, Any]) -> dict[str, bytes] | None:
    """A whole reply's unknown fields, at the top, in `usage`, and per choice and its message, as the
    provider field; None when there are none (the common case costs one subset check per level)."""
    extras: dict[str, Any] = {}
    if not payload.keys() <= _REPLY:
        extras["reply"] = unknown(payload, _REPLY)
    usage = payload.get("usage")
    if isinstance(usage, dict) and not usage.keys() <= _USAGE:
        extras["usage"] = unknown(usage, _USAGE)
    choices: dict[str, Any] = {}
    for choice in payload.get("choices") or ():
        message = choice.get("message") or {}
        own, said = unknown(choice, _CHOICE), _message_extras(message)
        if own or said:
            choices[str(choice.get("index", 0))] = {"choice": own, "message": said}
    if choices:
        extras["choices"] = choices
    return {EXTRA_FIELD: orjson.dumps(extras)} if extras else None


class StreamExtras:
    """A stream's unknown chunk-level and usage fields, the latest value of each, for its last chunk."""

    __slots__ = ("reply", "usage")

    def __init__(self) -> None:
        self.reply: dict[str, Any] = {}
        self.usage: dict[str, Any] = {}

    def add(self, chunk: dict[str, Any]) -> None:
        if not chunk.keys() <= _CHUNK:
            self.reply.update(unknown(chunk, _CHUNK))
        usage = chunk.get("usage")
        if isinstance(usage, dict) and not usage.keys() <= _USAGE:
            self.usage.update(unknown(usage, _USAGE))

    def extras(self) -> dict[str, Any]:
        return {key: value for key, value in (("reply", self.reply), ("usage", self.usage)) if value}

    def field(self) -> dict[str, bytes] | None:
        extras = self.extras()
        return {EXTRA_FIELD: orjson.dumps(extras)} if extras else None
