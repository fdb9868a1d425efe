"""Conversations written for other providers reach Claude and Gemini in their terms, through the real
gateway and adapters: tool call ids Claude's pattern refuses (Kimi's `functions.get_weather:0`) are
rewritten alike in the call and its result, and an empty text part beside an image (a picture sent
without words) is left out, since both APIs refuse an empty text block."""

from __future__ import annotations

import openai

from tests.support.dialect_stack import DialectStack

TOOLS = [
    {
        "type": "function",
        "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
    }
]
PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def _called(call_id: str) -> list:
    return [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
                {
                    "id": "call_ok-2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_ok-2", "content": "rain"},
    ]


async def test_a_foreign_tool_call_id_reaches_claude_rewritten_alike_in_call_and_result(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI
) -> None:
    await openai_sdk.chat.completions.create(
        model="claude", messages=_called("functions.get_weather:0"), tools=TOOLS
    )
    [sent] = dialects.anthropic.requests
    uses = [b["id"] for b in sent.body["messages"][1]["content"]]
    results = [b["tool_use_id"] for b in sent.body["messages"][2]["content"]]
    assert uses == results and uses[1] == "call_ok-2"  # a valid id goes as sent
    assert uses[0].startswith("functions_get_weather_0_") and uses[0] != "functions_get_weather_0"


async def test_two_foreign_ids_that_read_alike_stay_apart(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI
) -> None:
    messages = _called("a.b")
    messages[1]["tool_calls"][1]["id"] = messages[3]["tool_call_id"] = "a:b"
    await openai_sdk.chat.completions.create(model="claude", messages=messages, tools=TOOLS)
    [sent] = dialects.anthropic.requests
    first, second = (b["id"] for b in sent.body["messages"][1]["content"])
    assert first != second


async def test_an_image_sent_without_words_reaches_claude_and_gemini_without_an_empty_text(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI
) -> None:
    content = [{"type": "text", "text": ""}, {"type": "image_url", "image_url": {"url": PNG}}]
    for model in ("claude", "gem"):
        await openai_sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": content}])
    [claude] = dialects.anthropic.requests
    assert [b["type"] for b in claude.body["messages"][0]["content"]] == ["image"]
    [gemini] = dialects.gemini.requests
    assert [list(p) for p in gemini.body["contents"][0]["parts"]] == [["inlineData"]]


async def test_an_id_longer_than_openai_takes_is_fitted_alike_in_call_and_result(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI
) -> None:
    long_id = "toolu_framework-session-0042-call-0007-abcdef"  # 46 characters; OpenAI takes 40
    await openai_sdk.chat.completions.create(model="gpt", messages=_called(long_id), tools=TOOLS)
    [sent] = dialects.openai.requests
    calls = [c["id"] for c in sent.body["messages"][1]["tool_calls"]]
    results = [m["tool_call_id"] for m in sent.body["messages"][2:4]]
    assert calls == results and calls[1] == "call_ok-2"
    assert len(calls[0]) == 40 and calls[0].startswith("toolu_framework-session-004_")


async def test_a_summary_after_tool_calls_offers_claude_the_called_tools_but_no_call(
    dialects: DialectStack, openai_sdk: openai.AsyncOpenAI
) -> None:
    # An agent loop's closing summary: the history holds tool calls, the request offers no tools.
    messages = [*_called("call_1"), {"role": "user", "content": "Summarise."}]
    await openai_sdk.chat.completions.create(model="claude", messages=messages)
    [sent] = dialects.anthropic.requests
    assert [t["name"] for t in sent.body["tools"]] == ["get_weather"]
    assert sent.body["tool_choice"] == {"type": "none"}
    await openai_sdk.chat.completions.create(model="gpt", messages=messages)
    [plain] = dialects.openai.requests
    assert "tools" not in plain.body and "tool_choice" not in plain.body
