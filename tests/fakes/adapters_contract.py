"""Complete as the adapters contract defines it, for fakes: Generate's messages folded into one reply."""

from __future__ import annotations

from collections.abc import AsyncIterable

from atp.adapters.v1 import adapters_pb2


async def complete_from_generate(
    messages: AsyncIterable[adapters_pb2.GenerateResponse],
) -> adapters_pb2.CompleteResponse:
    """CompleteResponse.response carries the header, every delta and the completion (or the error) of
    the stream, in order: exactly what merging the stream's messages field by field gives."""
    reply = adapters_pb2.GenerateResponse()
    async for message in messages:
        reply.MergeFrom(message)
    return adapters_pb2.CompleteResponse(response=reply)
