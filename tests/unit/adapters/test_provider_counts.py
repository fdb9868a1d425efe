"""Providers' token counts against fakes that check each count endpoint's body as the real one does:
OpenAI's responses/input_tokens from the chat request, Gemini's and Vertex's countTokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from atp.common.v1 import chat_pb2
from atp_adapters.providers import (
    OpenAIProvider,
    ProviderError,
    ProviderRequest,
    VertexAnthropicProvider,
    VertexGeminiProvider,
)
from atp_adapters.providers.cloud_auth import google_credential
from atp_common.config import HttpProvider
from tests.fakes import FakeOpenAI
from tests.fakes.anthropic_checks import counted_tokens
from tests.fakes.base import Faults
from tests.fakes.cloud_tokens import FakeGoogleOAuth, FakeVertexAnthropic, FakeVertexGemini
from tests.fakes.gemini_checks import counted_gemini_tokens
from tests.fakes.openai_checks import counted_openai_tokens

PROJECT, LOCATION = "atp-project", "europe-west4"
GRAMMAR = {"type": "grammar", "grammar": {"definition": "start: WORD", "syntax": "lark"}}


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    server = FakeOpenAI()
    server.api_key = "sk-count"
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def provider(fake: FakeOpenAI) -> AsyncIterator[OpenAIProvider]:
    cfg = HttpProvider(type="openai", base_url=fake.base_url, max_retries=0)
    client = OpenAIProvider(cfg, "sk-count")
    yield client
    await client.close()


def _request(messages: list[chat_pb2.ChatMessage], **params: object) -> ProviderRequest:
    return ProviderRequest("gpt-up", messages, chat_pb2.GenerationParams(**params), stream=False)


def _every_kind() -> ProviderRequest:
    """A conversation with each part and item kind OpenAI's count takes, and each shaping parameter."""
    user = chat_pb2.ChatMessage(
        role="user",
        parts=[
            chat_pb2.ContentPart(text="Look:"),
            chat_pb2.ContentPart(image=chat_pb2.ImageContent(url="https://example.com/a.png")),
            chat_pb2.ContentPart(file=chat_pb2.FileContent(file_id="file-1")),
        ],
    )
    calls = [
        chat_pb2.ToolCall(id="c1", type="function", function_name="lookup", arguments="{}"),
        chat_pb2.ToolCall(id="c2", type="custom", function_name="shell", arguments="ls"),
    ]
    messages = [
        chat_pb2.ChatMessage(role="developer", content="Be exact."),
        user,
        chat_pb2.ChatMessage(role="assistant", content="Checking.", tool_calls=calls),
        chat_pb2.ChatMessage(role="tool", tool_call_id="c1", content="nothing", is_error=True),
        chat_pb2.ChatMessage(role="tool", tool_call_id="c2", content="a.txt"),
        chat_pb2.ChatMessage(role="assistant", refusal="I cannot help with that."),
    ]
    tools = [
        chat_pb2.Tool(type="function", name="lookup"),
        chat_pb2.Tool(type="custom", name="shell", format_json=orjson.dumps(GRAMMAR)),
    ]
    return _request(
        messages,
        tools=tools,
        tool_choice=chat_pb2.ToolChoice(
            mode="allowed_tools", allowed=["lookup", "shell"], allowed_mode="auto"
        ),
        response_format=chat_pb2.ResponseFormat(
            type="json_schema", name="answer", schema_json=b'{"type":"object"}', strict=True
        ),
        reasoning=chat_pb2.Reasoning(effort="high"),
    )


async def test_openai_counts_every_item_and_part_kind_in_the_responses_terms(
    fake: FakeOpenAI, provider: OpenAIProvider
) -> None:
    tokens = await provider.count_tokens(_every_kind())
    [sent] = fake.requests  # the fake checked the body against the SDK's InputTokenCountParams
    body = sent.body
    assert sent.path == "/v1/responses/input_tokens" and tokens == counted_openai_tokens(body)
    items = body["input"]
    assert [i["type"] for i in items] == [
        "message",
        "message",
        "message",
        "function_call",
        "custom_tool_call",
        "function_call_output",
        "function_call_output",
        "message",
    ]
    assert [p["type"] for p in items[1]["content"]] == ["input_text", "input_image", "input_file"]
    assert items[4] == {"type": "custom_tool_call", "call_id": "c2", "name": "shell", "input": "ls"}
    assert items[5]["output"] == "Error: nothing"
    assert items[7] == {"type": "message", "role": "assistant", "content": "I cannot help with that."}
    assert body["tools"][0] == {"type": "function", "name": "lookup", "parameters": None, "strict": None}
    assert body["tools"][1]["format"] == {"type": "grammar", "definition": "start: WORD", "syntax": "lark"}
    assert body["tool_choice"] == {
        "type": "allowed_tools",
        "mode": "auto",
        "tools": [{"type": "function", "name": "lookup"}, {"type": "custom", "name": "shell"}],
    }
    assert body["text"]["format"] == {
        "type": "json_schema",
        "name": "answer",
        "schema": {"type": "object"},
        "strict": True,
    }
    assert body["reasoning"] == {"effort": "high"}


AUDIO = chat_pb2.ContentPart(audio=chat_pb2.AudioContent(data="UklGRg==", format="wav"))


@pytest.mark.parametrize(
    ("message", "named"),
    [
        (chat_pb2.ChatMessage(role="user", content="hi", name="alice"), "messages[0].name"),
        (chat_pb2.ChatMessage(role="user", parts=[AUDIO]), "messages[0].content[0]: a input_audio part"),
    ],
)
async def test_what_the_count_has_no_place_for_makes_the_provider_unable_to_count(
    fake: FakeOpenAI, provider: OpenAIProvider, message: chat_pb2.ChatMessage, named: str
) -> None:
    with pytest.raises(ProviderError) as caught:
        await provider.count_tokens(_request([message]))
    assert caught.value.kind == "unsupported" and named in caught.value.message
    assert not fake.requests


async def test_a_server_without_the_endpoint_cannot_count_and_other_failures_stay_failures(
    fake: FakeOpenAI, provider: OpenAIProvider
) -> None:
    hello = _request([chat_pb2.ChatMessage(role="user", content="hi")])
    fake.faults = Faults(status=404)
    with pytest.raises(ProviderError) as missing:
        await provider.count_tokens(hello)
    assert missing.value.kind == "unsupported" and "responses/input_tokens" in missing.value.message
    fake.faults = Faults(status=500)
    with pytest.raises(ProviderError) as broken:
        await provider.count_tokens(hello)
    assert (broken.value.kind, broken.value.status) == ("http", 500)


async def test_gemini_on_vertex_counts_with_the_request_fields_at_the_top(tmp_path: Path) -> None:
    oauth = FakeGoogleOAuth()
    await oauth.start()
    key_file = tmp_path / "service-account.json"
    key_file.write_bytes(orjson.dumps(oauth.service_account_info()))
    fake = FakeVertexGemini(oauth, PROJECT, LOCATION)
    await fake.start()
    credential = google_credential(str(key_file))
    await credential.start()
    cfg = HttpProvider(
        type="vertex", project=PROJECT, location=LOCATION, base_url=fake.base_url, max_retries=0
    )
    provider = VertexGeminiProvider(cfg, credential)
    try:
        messages = [
            chat_pb2.ChatMessage(role="system", content="Be brief."),
            chat_pb2.ChatMessage(role="user", content="hello"),
        ]
        tokens = await provider.count_tokens(ProviderRequest("gem-1", messages, chat_pb2.GenerationParams()))
    finally:
        await provider.close()
        await credential.close()
        await fake.stop()
        await oauth.stop()
    [sent] = fake.requests
    assert sent.path.endswith("/publishers/google/models/gem-1:countTokens")
    assert sent.headers["Authorization"].startswith("Bearer ")
    assert "generateContentRequest" not in sent.body and sent.body["systemInstruction"]
    assert tokens == counted_gemini_tokens(sent.body) > 0


async def test_claude_on_vertex_counts_at_vertexs_one_count_endpoint(tmp_path: Path) -> None:
    oauth = FakeGoogleOAuth()
    await oauth.start()
    key_file = tmp_path / "service-account.json"
    key_file.write_bytes(orjson.dumps(oauth.service_account_info()))
    fake = FakeVertexAnthropic(oauth, PROJECT, LOCATION)
    await fake.start()
    credential = google_credential(str(key_file))
    await credential.start()
    cfg = HttpProvider(
        type="vertex", project=PROJECT, location=LOCATION, publisher="anthropic", base_url=fake.base_url
    )
    provider = VertexAnthropicProvider(cfg, credential)
    try:
        params = chat_pb2.GenerationParams(max_tokens=64, anthropic_betas=["context-1m-2025-08-07"])
        ask = ProviderRequest(
            "claude-sonnet-4@20250514", [chat_pb2.ChatMessage(role="user", content="hi")], params
        )
        tokens = await provider.count_tokens(ask)
    finally:
        await provider.close()
        await credential.close()
        await fake.stop()
        await oauth.stop()
    [sent] = fake.requests  # checked as Anthropic checks a count body, with Vertex's anthropic_version
    assert sent.path.endswith("/publishers/anthropic/models/count-tokens:rawPredict")
    assert sent.body["model"] == "claude-sonnet-4@20250514" and "max_tokens" not in sent.body
    assert sent.headers["anthropic-beta"] == "context-1m-2025-08-07"
    assert tokens == counted_tokens({k: v for k, v in sent.body.items() if k != "anthropic_version"}) > 0
