"""Test helper: drain a provider stream into the reply it adds up to."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from atp.common.v1 import chat_pb2


@dataclass
class Collected:
    """A whole reply, put together from batches the way the adapters will."""

    batches: int = 0
    text: str = ""
    roles: list[str] = field(default_factory=list)
    # index -> [id, name, arguments]
    tool_calls: dict[int, list[str]] = field(default_factory=dict)
    finish_reason: str = ""
    usage: chat_pb2.Usage | None = None
    terminal_batches: int = 0


async def collect(stream: AsyncIterator) -> Collected:
    out = Collected()
    async for batch in stream:
        out.batches += 1
        assert not out.finish_reason, "a batch arrived after the one with the finish_reason"
        for delta in batch.deltas:
            assert delta.content or delta.tool_calls, "empty delta"
            if delta.role:
                out.roles.append(delta.role)
            out.text += delta.content
            for call in delta.tool_calls:
                entry = out.tool_calls.setdefault(call.index, ["", "", ""])
                entry[0] += call.id
                entry[1] += call.function_name
                entry[2] += call.arguments
        if batch.finish_reason:
            out.terminal_batches += 1
            out.finish_reason = batch.finish_reason
            out.usage = batch.usage
        else:
            assert batch.usage is None, "usage before the last batch"
    return out
