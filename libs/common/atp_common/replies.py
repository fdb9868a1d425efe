"""A non-streamed request's reply: Generate's messages merged into one, for the two ends of Complete."""

from __future__ import annotations

from collections.abc import AsyncIterable

from atp.adapters.v1 import adapters_pb2

# GenerateCompletion.provider_fields key of the fields a reply had beyond the typed reply, placed as a chat
# completion places them (JSON: {"reply", "usage", "choices": {index: {"choice", "message"}}}): an
# OpenAI-compatible server's, and Gemini's under its own names. Only the chat dialect returns them.
OPENAI_EXTRA_FIELD = "openai_extra"


async def merged_reply(
    messages: AsyncIterable[adapters_pb2.GenerateResponse],
) -> adapters_pb2.GenerateResponse:
    """The messages as one (deltas appended, the header, completion or error kept); a non-streamed
    request yields a single message, and an empty stream gives an empty one (no header: malformed)."""
    merged: adapters_pb2.GenerateResponse | None = None
    async for message in messages:
        if merged is None:
            merged = message
        else:
            merged.MergeFrom(message)
    return merged if merged is not None else adapters_pb2.GenerateResponse()
