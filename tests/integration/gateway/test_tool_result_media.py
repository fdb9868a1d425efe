"""A tool result's image reaches OpenAI, whose tool messages take text only, as a user message after the
run of tool results (through the real gateway and adapters, the anthropic SDK as Claude Code sends it)."""

from __future__ import annotations

import anthropic

from tests.support.dialect_stack import DialectStack

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
READ = {"name": "Read", "description": "Read a file", "input_schema": {"type": "object"}}


def _call(call_id: str) -> dict[str, object]:
    return {"type": "tool_use", "id": call_id, "name": "Read", "input": {"file_path": f"{call_id}.png"}}


async def test_tool_result_images_follow_the_tool_messages(
    dialects: DialectStack, anthropic_sdk: anthropic.AsyncAnthropic
) -> None:
    messages = [
        {"role": "user", "content": "Look at both."},
        {"role": "assistant", "content": [_call("t1"), _call("t2")]},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "t1",
                    "content": [{"type": "text", "text": "a.png"}, IMAGE],
                },
                {"type": "tool_result", "tool_use_id": "t2", "content": [IMAGE]},
                {"type": "text", "text": "Compare them."},
            ],
        },
    ]
    await anthropic_sdk.messages.create(model="gpt", max_tokens=64, messages=messages, tools=[READ])  # type: ignore[arg-type]
    [sent] = dialects.openai.requests
    tail = sent.body["messages"][2:]
    assert [m["role"] for m in tail] == ["tool", "tool", "user", "user"]
    assert tail[0]["content"] == [{"type": "text", "text": "a.png"}]
    assert tail[1]["content"] == "The result is in the next message."
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    assert tail[2]["content"] == [
        {"type": "text", "text": "Result of tool call t1:"},
        image,
        {"type": "text", "text": "Result of tool call t2:"},
        image,
    ]
    assert tail[3]["content"] == [{"type": "text", "text": "Compare them."}]
