"""Thinking signed by one provider goes back to that provider only, through the real gateway and adapters:
a conversation Gemini answered (its signatures marked as Gemini's) continues on Claude without them, and
on Gemini with them as Gemini gave them; Claude's go to Claude and not to Gemini."""

from __future__ import annotations

from typing import Any

import anthropic

from tests.fakes.anthropic_server import AnthropicExtras
from tests.fakes.base import FakeReply
from tests.support.dialect_stack import DialectStack

READ = {"name": "Read", "description": "Read a file", "input_schema": {"type": "object"}}
THINK = {"type": "enabled", "budget_tokens": 1024}


async def _turn_one(
    dialects: DialectStack, sdk: anthropic.AsyncAnthropic, model: str
) -> list[dict[str, Any]]:
    """The first turn on `model`, a call with its thinking; the history to send the next turn with."""
    for fake in (dialects.anthropic, dialects.gemini):
        fake.reply = FakeReply(text="", tool_calls=[("Read", '{"file_path": "a.py"}')], reasoning_tokens=4)
    dialects.anthropic.extras = AnthropicExtras(thinking=("I should read it.", "EqQBCkYIBxgCKkA"))
    ask = [{"role": "user", "content": "Read a.py"}]
    reply = await sdk.messages.create(
        model=model, max_tokens=2048, messages=ask, tools=[READ], thinking=THINK
    )  # type: ignore[arg-type]
    said = [block.model_dump(exclude_none=True) for block in reply.content]
    call = next(block for block in said if block["type"] == "tool_use")
    result = {"type": "tool_result", "tool_use_id": call["id"], "content": "print(1)"}
    return [*ask, {"role": "assistant", "content": said}, {"role": "user", "content": [result]}]


async def _turn_two(
    dialects: DialectStack, sdk: anthropic.AsyncAnthropic, model: str, history: list[dict[str, Any]]
) -> None:
    for fake in (dialects.anthropic, dialects.gemini):
        fake.reply, fake.requests = FakeReply(), []
    dialects.anthropic.extras = AnthropicExtras()
    await sdk.messages.create(model=model, max_tokens=2048, messages=history, tools=[READ], thinking=THINK)  # type: ignore[arg-type]


async def test_gemini_thinking_goes_back_to_gemini_only(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    history = await _turn_one(dialects, anthropic_sdk, "gem")
    signatures = [b.get("signature", "") for b in history[1]["content"] if b["type"] == "thinking"]
    assert signatures and all(s.startswith("atp-gemini:") for s in signatures)
    await _turn_two(dialects, anthropic_sdk, "gem", history)
    [sent] = dialects.gemini.requests
    call = next(p for p in sent.body["contents"][1]["parts"] if "functionCall" in p)
    assert call["thoughtSignature"] == "ts0"  # as Gemini gave it
    await _turn_two(dialects, anthropic_sdk, "claude", history)
    [sent] = dialects.anthropic.requests
    assert [b["type"] for b in sent.body["messages"][1]["content"]] == ["tool_use"]


async def test_claude_thinking_goes_back_to_claude_only(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    history = await _turn_one(dialects, anthropic_sdk, "claude")
    assert any(b["type"] == "thinking" for b in history[1]["content"])
    await _turn_two(dialects, anthropic_sdk, "claude", history)
    [sent] = dialects.anthropic.requests
    assert sent.body["messages"][1]["content"] == history[1]["content"]
    await _turn_two(dialects, anthropic_sdk, "gem", history)
    [sent] = dialects.gemini.requests
    parts = sent.body["contents"][1]["parts"]
    assert not any(p.get("thought") for p in parts)
    assert (
        next(p for p in parts if "functionCall" in p)["thoughtSignature"]
        == "skip_thought_signature_validator"
    )


async def test_a_turn_of_only_the_other_models_reasoning_is_left_out(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    # A turn that is nothing but reasoning signed by the other provider says nothing the model can read;
    # sent as an empty turn, either API would refuse the request.
    for model, signature, fake in (
        ("claude", "atp-gemini:ts0", "anthropic"),
        ("gem", "EqQBCkYIBx", "gemini"),
    ):
        thought = {"type": "thinking", "thinking": "Hmm.", "signature": signature}
        history = [
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": [thought]},
            {"role": "user", "content": "Still there?"},
        ]
        await anthropic_sdk.messages.create(model=model, max_tokens=64, messages=history)  # type: ignore[arg-type]
        sent = getattr(dialects, fake).requests[-1].body
        turns = sent.get("messages") or sent["contents"]
        assert [turn["role"] for turn in turns] == ["user"]
