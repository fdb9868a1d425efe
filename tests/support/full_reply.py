"""Test helper: drain a provider stream into every field it carries, per choice (reasoning, citations...)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from atp.common.v1 import chat_pb2


@dataclass
class Choice:
    """One choice's reply, put together from its deltas."""

    role: str = ""
    text: str = ""
    refusal: str = ""
    # Thinking blocks as (text, signature), and redacted blocks' data, in order.
    thinking: list[tuple[str, str]] = field(default_factory=list)
    redacted: list[str] = field(default_factory=list)
    annotations: list[chat_pb2.Annotation] = field(default_factory=list)
    logprobs: list[chat_pb2.TokenLogprob] = field(default_factory=list)
    # index -> [id, name, arguments]
    tool_calls: dict[int, list[str]] = field(default_factory=dict)
    finish_reason: str = ""

    def add(self, delta: chat_pb2.Delta) -> None:
        self.role = self.role or delta.role
        self.text += delta.content
        self.refusal += delta.refusal
        if delta.reasoning or delta.reasoning_signature:
            if not self.thinking or self.thinking[-1][1]:
                self.thinking.append(("", ""))
            text, signature = self.thinking[-1]
            self.thinking[-1] = (text + delta.reasoning, signature + delta.reasoning_signature)
        if delta.redacted_reasoning:
            self.redacted.append(delta.redacted_reasoning)
        self.annotations.extend(delta.annotations)
        self.logprobs.extend(delta.logprobs)
        for call in delta.tool_calls:
            entry = self.tool_calls.setdefault(call.index, ["", "", ""])
            entry[0] += call.id
            entry[1] += call.function_name
            entry[2] += call.arguments
        self.finish_reason = delta.finish_reason or self.finish_reason


@dataclass
class FullReply:
    """A whole reply: its choices by index and what the last batch said."""

    choices: dict[int, Choice] = field(default_factory=dict)
    finish_reason: str = ""
    usage: chat_pb2.Usage | None = None
    response_id: str = ""
    model_version: str = ""
    stop_sequence: str = ""
    service_tier: str = ""
    choice_finish_reasons: dict[int, str] = field(default_factory=dict)

    @property
    def first(self) -> Choice:
        return self.choices.setdefault(0, Choice())


async def collect_full(stream: AsyncIterator) -> FullReply:
    out = FullReply()
    async for batch in stream:
        assert not out.finish_reason, "a batch arrived after the one with the finish_reason"
        for delta in batch.deltas:
            assert delta != chat_pb2.Delta(choice=delta.choice), "empty delta"
            out.choices.setdefault(delta.choice, Choice()).add(delta)
        if batch.finish_reason:
            out.finish_reason = batch.finish_reason
            out.usage = batch.usage
            out.response_id = batch.response_id
            out.model_version = batch.model_version
            out.stop_sequence = batch.stop_sequence
            out.service_tier = batch.service_tier
            out.choice_finish_reasons = dict(batch.choice_finish_reasons)
    return out
