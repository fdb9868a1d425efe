"""The Bedrock provider against a fake Bedrock Runtime that checks SigV4 and Converse's shapes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field

import orjson
import pytest

from atp.common.v1 import chat_pb2
from atp_adapters.providers import BedrockProvider, ProviderError, ProviderRequest
from atp_adapters.providers.cloud_auth import RefreshingCredential, aws_credential
from atp_common.config import HttpProvider
from tests.fakes import FakeReply, Faults
from tests.fakes.bedrock_server import ACCESS_KEY, SECRET_KEY, FakeBedrock, counted_bedrock_tokens

MODEL_ID = "anthropic.claude-sonnet-4-v1:0"
PNG = "data:image/png;base64,iVBORw0KGgo="


@dataclass
class Reply:
    text: str = ""
    reasoning: str = ""
    signature: str = ""
    calls: dict[int, list[str]] = field(default_factory=dict)
    finish: str = ""
    usage: chat_pb2.Usage | None = None


async def drain(provider: BedrockProvider, request: ProviderRequest) -> Reply:
    out = Reply()
    async with aclosing(provider.stream(request)) as batches:
        async for batch in batches:
            for delta in batch.deltas:
                out.text += delta.content
                out.reasoning += delta.reasoning
                out.signature += delta.reasoning_signature
                for call in delta.tool_calls:
                    entry = out.calls.setdefault(call.index, ["", "", ""])
                    entry[0] += call.id
                    entry[1] += call.function_name
                    entry[2] += call.arguments
            if batch.finish_reason:
                out.finish, out.usage = batch.finish_reason, batch.usage
    return out


@pytest.fixture
async def fake() -> AsyncIterator[FakeBedrock]:
    server = FakeBedrock(region="eu-west-1")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def credential(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RefreshingCredential]:
    # botocore's standard chain, fed from the environment as in a container.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    cred = aws_credential()
    await cred.start()
    yield cred
    await cred.close()


@pytest.fixture
async def provider(fake: FakeBedrock, credential: RefreshingCredential) -> AsyncIterator[BedrockProvider]:
    cfg = HttpProvider(type="bedrock", region="eu-west-1", base_url=fake.base_url, max_retries=0)
    client = BedrockProvider(cfg, credential, name="bedrock-eu")
    yield client
    await client.close()


def request(*messages: chat_pb2.ChatMessage, stream: bool = False, **params: object) -> ProviderRequest:
    return ProviderRequest(MODEL_ID, list(messages), chat_pb2.GenerationParams(**params), stream=stream)


def user(text: str) -> chat_pb2.ChatMessage:
    return chat_pb2.ChatMessage(role="user", content=text)


@pytest.mark.parametrize("stream", [False, True])
async def test_signed_text_exchange_with_usage(
    fake: FakeBedrock, provider: BedrockProvider, stream: bool
) -> None:
    fake.reply = FakeReply(
        text="Bonjour tout le monde.", prompt_tokens=30, cached_tokens=10, completion_tokens=5
    )
    system = chat_pb2.ChatMessage(role="system", content="be brief")
    reply = await drain(
        provider,
        request(system, user("hello"), stream=stream, max_tokens=64, temperature=0.2, stop=["END"]),
    )
    assert reply.text == "Bonjour tout le monde."
    assert reply.finish == "stop"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.cached_prompt_tokens) == (30, 10)
    assert reply.usage.completion_tokens == 5
    recorded = fake.requests[-1]
    assert recorded.path == f"/model/{MODEL_ID}/{'converse-stream' if stream else 'converse'}"
    assert recorded.body == {
        "messages": [{"role": "user", "content": [{"text": "hello"}]}],
        "system": [{"text": "be brief"}],
        "inferenceConfig": {"maxTokens": 64, "temperature": 0.2, "stopSequences": ["END"]},
    }


async def test_a_wrong_secret_is_refused_by_the_signature_check(
    fake: FakeBedrock,
    provider: BedrockProvider,
    credential: RefreshingCredential,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    other = aws_credential()
    await other.start()
    try:
        cfg = HttpProvider(type="bedrock", region="eu-west-1", base_url=fake.base_url, max_retries=0)
        wrong = BedrockProvider(cfg, other, name="bedrock-eu")
        with pytest.raises(ProviderError) as caught:
            await drain(wrong, request(user("hello")))
        await wrong.close()
    finally:
        await other.close()
    assert caught.value.status == 403
    assert "signature" in caught.value.message


async def test_stream_with_reasoning_and_a_tool_call(fake: FakeBedrock, provider: BedrockProvider) -> None:
    fake.reply = FakeReply(text="Let me look.", tool_calls=[("weather", '{"city": "Paris"}')])
    fake.reasoning = "The user wants weather."
    tool = chat_pb2.Tool(type="function", name="weather", parameters_json=b'{"type":"object"}')
    reply = await drain(provider, request(user("weather?"), stream=True, tools=[tool]))
    assert reply.reasoning == "The user wants weather."
    assert reply.signature == "sig"
    assert reply.calls == {0: ["tooluse_0", "weather", '{"city": "Paris"}']}
    assert reply.finish == "tool_calls"
    config = fake.requests[-1].body["toolConfig"]
    assert config == {
        "tools": [{"toolSpec": {"name": "weather", "inputSchema": {"json": {"type": "object"}}}}],
        "toolChoice": {"auto": {}},
    }


async def test_tool_round_trip_images_documents_and_cache_points(
    fake: FakeBedrock, provider: BedrockProvider
) -> None:
    cache = chat_pb2.CacheControl(type="ephemeral", ttl="1h")
    system = chat_pb2.ChatMessage(
        role="system", parts=[chat_pb2.ContentPart(text="rules", cache_control=cache)]
    )
    asking = chat_pb2.ChatMessage(
        role="user",
        parts=[
            chat_pb2.ContentPart(text="what is this?"),
            chat_pb2.ContentPart(image=chat_pb2.ImageContent(url=PNG)),
            chat_pb2.ContentPart(
                file=chat_pb2.FileContent(file_data="data:application/pdf;base64,JVBERi0=", filename="a.pdf")
            ),
        ],
    )
    calling = chat_pb2.ChatMessage(
        role="assistant",
        tool_calls=[chat_pb2.ToolCall(id="t1", type="function", function_name="look", arguments='{"x": 1}')],
    )
    results = [
        chat_pb2.ChatMessage(role="tool", tool_call_id="t1", parts=[chat_pb2.ContentPart(text="a cat")]),
        chat_pb2.ChatMessage(role="user", content="and now?"),
    ]
    tool = chat_pb2.Tool(type="function", name="look", cache_control=cache)
    await drain(provider, request(system, asking, calling, *results, tools=[tool]))
    body = fake.requests[-1].body
    assert body["system"] == [{"text": "rules"}, {"cachePoint": {"type": "default", "ttl": "1h"}}]
    assert body["messages"][0]["content"] == [
        {"text": "what is this?"},
        {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}},
        {"document": {"name": "a pdf", "source": {"bytes": "JVBERi0="}, "format": "pdf"}},
    ]
    assert body["messages"][1] == {
        "role": "assistant",
        "content": [{"toolUse": {"toolUseId": "t1", "name": "look", "input": {"x": 1}}}],
    }
    # The tool result and the next user turn share one user message: Converse wants turns to alternate.
    assert body["messages"][2]["content"] == [
        {"toolResult": {"toolUseId": "t1", "content": [{"text": "a cat"}]}},
        {"text": "and now?"},
    ]
    assert body["toolConfig"]["tools"][1] == {"cachePoint": {"type": "default", "ttl": "1h"}}


async def test_structured_output_reasoning_and_tier(fake: FakeBedrock, provider: BedrockProvider) -> None:
    params = {
        "response_format": chat_pb2.ResponseFormat(
            type="json_schema", name="answer", schema_json=b'{"type":"object"}'
        ),
        "reasoning": chat_pb2.Reasoning(effort="high", budget_tokens=2048),
        "top_k": 40,
        "service_tier": "flex",
        "user": "end-user-7",
        "metadata": {"team": "search"},
    }
    await drain(provider, request(user("json please"), **params))
    body = fake.requests[-1].body
    structure = {"jsonSchema": {"schema": '{"type":"object"}', "name": "answer"}}
    assert body["outputConfig"] == {
        "textFormat": {"type": "json_schema", "structure": structure},
        "effort": "high",
    }
    assert body["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "top_k": 40,
    }
    assert body["serviceTier"] == {"type": "flex"}
    assert body["requestMetadata"] == {"team": "search", "user": "end-user-7"}


async def test_counts_are_signed_and_count_what_converse_would_read(
    fake: FakeBedrock, provider: BedrockProvider
) -> None:
    system = chat_pb2.ChatMessage(role="system", content="be brief")
    weather = chat_pb2.Tool(type="function", name="weather", parameters_json=b'{"type":"object"}')
    ask = request(system, user("hello"), max_tokens=64, temperature=0.2, tools=[weather])
    tokens = await provider.count_tokens(ask)
    [sent] = fake.requests  # signed and checked by botocore's CountTokens shape
    assert sent.path == f"/model/{MODEL_ID}/count-tokens"
    converse = sent.body["input"]["converse"]
    assert set(converse) == {"messages", "system", "toolConfig"}
    assert tokens == counted_bedrock_tokens(converse) > 0


@pytest.mark.parametrize(
    ("reasoning", "thinking", "effort"),
    [
        (chat_pb2.Reasoning(budget_tokens=8192), {"type": "adaptive", "display": "omitted"}, "medium"),
        (
            chat_pb2.Reasoning(effort="high", include_thoughts=True, display="summarized"),
            {"type": "adaptive", "display": "summarized"},
            "high",
        ),
        (chat_pb2.Reasoning(adaptive=True), {"type": "adaptive"}, None),
    ],
)
async def test_an_adaptive_only_claude_on_bedrock_gets_adaptive_thinking(
    fake: FakeBedrock,
    provider: BedrockProvider,
    reasoning: chat_pb2.Reasoning,
    thinking: dict,
    effort: str | None,
) -> None:
    params = chat_pb2.GenerationParams(reasoning=reasoning, max_tokens=4000)
    await drain(
        provider, ProviderRequest(MODEL_ID, [user("hi")], params, stream=False, adaptive_thinking=True)
    )
    body = fake.requests[-1].body
    assert body["additionalModelRequestFields"]["thinking"] == thinking
    assert (body.get("outputConfig") or {}).get("effort") == effort


@pytest.mark.parametrize(("model", "sent"), [(MODEL_ID, True), ("meta.llama3-70b-instruct-v1:0", False)])
async def test_betas_reach_claude_on_bedrock_in_the_body_and_no_other_model(
    fake: FakeBedrock, provider: BedrockProvider, model: str, sent: bool
) -> None:
    betas = ["interleaved-thinking-2025-05-14", "context-1m-2025-08-07"]
    ask = ProviderRequest(model, [user("hi")], chat_pb2.GenerationParams(anthropic_betas=betas), stream=False)
    await drain(provider, ask)
    extra = fake.requests[-1].body.get("additionalModelRequestFields", {})
    assert extra.get("anthropic_beta") == (betas if sent else None)
    assert "anthropic-beta" not in {k.lower() for k in fake.requests[-1].headers}


async def test_an_openai_breakpoint_lifetime_is_the_claude_lifetime_that_keeps_it(
    fake: FakeBedrock, provider: BedrockProvider
) -> None:
    hint = chat_pb2.CacheControl(type="explicit", ttl="30m")
    message = chat_pb2.ChatMessage(role="user", parts=[chat_pb2.ContentPart(text="hi", cache_control=hint)])
    await drain(provider, request(message))
    assert fake.requests[-1].body["messages"][0]["content"][1] == {
        "cachePoint": {"type": "default", "ttl": "1h"}
    }


@pytest.mark.parametrize(
    ("model", "params", "point"),
    [
        (MODEL_ID, {"prompt_cache_key": "conv-1"}, {"type": "default"}),
        (
            MODEL_ID,
            {"prompt_cache_key": "conv-1", "prompt_cache_retention": "24h"},
            {"type": "default", "ttl": "1h"},
        ),
        # Other models cache only where told, if at all; OpenAI's default verbosity is theirs too.
        ("meta.llama3-70b-instruct-v1:0", {"prompt_cache_key": "conv-1", "verbosity": "medium"}, None),
    ],
)
async def test_an_openai_cache_key_caches_claudes_prompt_on_bedrock(
    fake: FakeBedrock, provider: BedrockProvider, model: str, params: dict, point: dict | None
) -> None:
    ask = ProviderRequest(model, [user("hi")], chat_pb2.GenerationParams(**params), stream=False)
    await drain(provider, ask)
    content = fake.requests[-1].body["messages"][-1]["content"]
    assert content[1:] == ([{"cachePoint": point}] if point else [])


@pytest.mark.parametrize(
    ("message", "params", "path"),
    [
        (
            chat_pb2.ChatMessage(
                role="user", parts=[chat_pb2.ContentPart(image=chat_pb2.ImageContent(url="https://x/y.png"))]
            ),
            {},
            "messages[0].content[0]",
        ),
        (user("hi"), {"seed": 3}, "seed"),
        (user("hi"), {"cache_control": chat_pb2.CacheControl(type="explicit", ttl="12h")}, "cache_control"),
        (
            chat_pb2.ChatMessage(
                role="user",
                parts=[
                    chat_pb2.ContentPart(
                        text="hi", cache_control=chat_pb2.CacheControl(type="explicit", ttl="12h")
                    )
                ],
            ),
            {},
            "messages[0].content[0].cache_control",
        ),
        (user("hi"), {"logit_bias": {"50256": -100}}, "logit_bias"),
        (user("hi"), {"openai_options": {"web_search_options": b"{}"}}, "web_search_options"),
    ],
)
async def test_what_converse_cannot_carry_is_refused_by_name(
    fake: FakeBedrock, provider: BedrockProvider, message: chat_pb2.ChatMessage, params: dict, path: str
) -> None:
    with pytest.raises(ProviderError) as caught:
        await drain(provider, request(message, **params))
    assert caught.value.kind == "unsupported"
    assert caught.value.param == path
    assert not fake.requests


async def test_an_exception_inside_the_stream_is_a_typed_error(
    fake: FakeBedrock, provider: BedrockProvider
) -> None:
    fake.stream_exception = "throttlingException"
    # One frame per read, so text reaches the caller before the exception does.
    fake.faults = Faults(chunk_delay_s=0.01)
    with pytest.raises(ProviderError) as caught:
        await drain(provider, request(user("hello"), stream=True))
    assert caught.value.status == 429
    assert not caught.value.before_first_token


async def test_a_broken_frame_is_malformed(fake: FakeBedrock, provider: BedrockProvider) -> None:
    fake.faults = Faults(malformed_after_chunks=2)
    with pytest.raises(ProviderError) as caught:
        await drain(provider, request(user("hello"), stream=True))
    assert caught.value.kind == "malformed"


async def test_the_fake_checks_converse_shapes(fake: FakeBedrock, provider: BedrockProvider) -> None:
    # Two assistant turns in a row merge; a conversation that starts with the assistant is refused by
    # Bedrock, and so by the fake.
    with pytest.raises(ProviderError) as caught:
        await drain(provider, request(chat_pb2.ChatMessage(role="assistant", content="hi")))
    assert caught.value.status == 400
    assert "start with a user message" in caught.value.message
    assert orjson.dumps(fake.requests[-1].body)


# Claude's document citations through Bedrock: in its reply (Anthropic's form kept) and sent back.
PAGE = {"documentPage": {"documentIndex": 1, "start": 3, "end": 4}}
CHAR = {"documentChar": {"documentIndex": 0, "start": 10, "end": 24}}
FOUND = {"searchResultLocation": {"searchResultIndex": 2, "start": 0, "end": 1}}
# The same three citations in Anthropic's form: what a Messages client reads, and sends back.
PAGE_CITED = {
    "type": "page_location",
    "cited_text": "page four text",
    "document_index": 1,
    "document_title": "Manual",
    "start_page_number": 3,
    "end_page_number": 4,
}
CHAR_CITED = {
    "type": "char_location",
    "cited_text": "chars",
    "document_index": 0,
    "document_title": None,
    "start_char_index": 10,
    "end_char_index": 24,
}
FOUND_CITED = {
    "type": "search_result_location",
    "cited_text": "sunny",
    "search_result_index": 2,
    "source": "https://kb.example/rome",
    "title": "Rome",
    "start_block_index": 0,
    "end_block_index": 1,
}


async def _annotations(provider: BedrockProvider, stream: bool) -> list[chat_pb2.Annotation]:
    messages = [chat_pb2.ChatMessage(role="user", content="where?")]
    found: list[chat_pb2.Annotation] = []
    request = ProviderRequest(MODEL_ID, messages, chat_pb2.GenerationParams(), stream=stream)
    async for batch in provider.stream(request):
        for delta in batch.deltas:
            found.extend(delta.annotations)
    return found


@pytest.mark.parametrize("stream", [False, True])
async def test_document_and_search_result_citations_reach_the_reply_in_anthropics_form(
    fake: FakeBedrock, provider: BedrockProvider, stream: bool
) -> None:
    fake.reply = FakeReply(text="On page four.")
    fake.citations = [
        {"title": "Manual", "sourceContent": [{"text": "page four text"}], "location": PAGE},
        {"sourceContent": [{"text": "chars"}], "location": CHAR},
        {
            "title": "Rome",
            "source": "https://kb.example/rome",
            "sourceContent": [{"text": "sunny"}],
            "location": FOUND,
        },
    ]
    page, char, found = await _annotations(provider, stream)
    assert page.type == "page_location" and page.cited_text == "page four text"
    assert orjson.loads(page.anthropic_json) == PAGE_CITED
    assert orjson.loads(char.anthropic_json) == CHAR_CITED
    assert orjson.loads(found.anthropic_json) == FOUND_CITED
    assert found.url == "https://kb.example/rome"


def _history(citations: list[dict]) -> list[chat_pb2.ChatMessage]:
    return [
        chat_pb2.ChatMessage(role="user", content="where?"),
        chat_pb2.ChatMessage(
            role="assistant",
            parts=[chat_pb2.ContentPart(text="On page four.", citations_json=orjson.dumps(citations))],
        ),
        chat_pb2.ChatMessage(role="user", content="and then?"),
    ]


async def test_citations_sent_back_become_a_citations_content_block(
    fake: FakeBedrock, provider: BedrockProvider
) -> None:
    chunk = {
        "type": "content_block_location",
        "cited_text": "b",
        "document_index": 0,
        "start_block_index": 2,
        "end_block_index": 3,
    }
    messages = _history([PAGE_CITED, chunk, FOUND_CITED])
    async for _ in provider.stream(ProviderRequest(MODEL_ID, messages, chat_pb2.GenerationParams())):
        pass
    # The fake held the body to botocore's Converse model before answering.
    assert fake.requests[-1].body["messages"][1]["content"] == [
        {
            "citationsContent": {
                "content": [{"text": "On page four."}],
                "citations": [
                    {"sourceContent": [{"text": "page four text"}], "location": PAGE, "title": "Manual"},
                    {
                        "sourceContent": [{"text": "b"}],
                        "location": {"documentChunk": {"documentIndex": 0, "start": 2, "end": 3}},
                    },
                    {
                        "sourceContent": [{"text": "sunny"}],
                        "location": FOUND,
                        "title": "Rome",
                        "source": "https://kb.example/rome",
                    },
                ],
            }
        }
    ]


async def test_a_citation_converse_has_no_place_for_is_refused_by_name(
    fake: FakeBedrock, provider: BedrockProvider
) -> None:
    web = {"type": "web_search_result_location", "cited_text": "w", "url": "https://w.test", "title": "W"}
    with pytest.raises(ProviderError) as caught:
        async for _ in provider.stream(
            ProviderRequest(MODEL_ID, _history([web]), chat_pb2.GenerationParams())
        ):
            pass
    assert caught.value.kind == "unsupported" and caught.value.param.endswith(".citations[0]")
    assert not fake.requests


async def test_search_results_and_text_block_documents_become_converse_blocks(
    fake: FakeBedrock, provider: BedrockProvider
) -> None:
    found = chat_pb2.SearchResultContent(
        source="https://kb.example/rome", title="Rome", content=["Sunny.", "25 degrees."], citations=True
    )
    document = chat_pb2.FileContent(
        title="Contract", content=["Clause 1.", "Clause 2."], context="2026", citations=True
    )
    asking = chat_pb2.ChatMessage(
        role="user",
        parts=[
            chat_pb2.ContentPart(search_result=found),
            chat_pb2.ContentPart(file=document),
            chat_pb2.ContentPart(text="weather?"),
        ],
    )
    calling = chat_pb2.ChatMessage(
        role="assistant",
        tool_calls=[chat_pb2.ToolCall(id="t1", type="function", function_name="look", arguments="{}")],
    )
    result = chat_pb2.ChatMessage(
        role="tool", tool_call_id="t1", parts=[chat_pb2.ContentPart(search_result=found)]
    )
    await drain(
        provider, request(asking, calling, result, tools=[chat_pb2.Tool(type="function", name="look")])
    )
    # The fake held the body to botocore's Converse model before answering.
    body = fake.requests[-1].body
    converse_result = {
        "searchResult": {
            "source": "https://kb.example/rome",
            "title": "Rome",
            "content": [{"text": "Sunny."}, {"text": "25 degrees."}],
            "citations": {"enabled": True},
        }
    }
    assert body["messages"][0]["content"][:2] == [
        converse_result,
        {
            "document": {
                "name": "Contract",
                "source": {"content": [{"text": "Clause 1."}, {"text": "Clause 2."}]},
                "context": "2026",
                "citations": {"enabled": True},
            }
        },
    ]
    assert body["messages"][2]["content"][0]["toolResult"]["content"] == [converse_result]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_full_context_window_keeps_claudes_own_stop_reason(
    fake: FakeBedrock, provider: BedrockProvider, stream: bool
) -> None:
    fake.reply = FakeReply(text="Cut")
    fake.stop_reason = "model_context_window_exceeded"
    batches = [b async for b in provider.stream(request(user("long"), stream=stream))]
    last = batches[-1]
    assert last.finish_reason == "length"
    assert orjson.loads(last.provider_fields["stop"]) == {"stop_reason": "model_context_window_exceeded"}
    fake.stop_reason = ""
    plain = [b async for b in provider.stream(request(user("short"), stream=stream))]
    assert plain[-1].finish_reason == "stop" and not plain[-1].provider_fields


async def test_thinking_history_audio_and_s3_media_in_converse_terms(
    fake: FakeBedrock, provider: BedrockProvider
) -> None:
    asking = chat_pb2.ChatMessage(
        role="user",
        parts=[
            chat_pb2.ContentPart(audio=chat_pb2.AudioContent(data="UklGRg==", format="wav")),
            chat_pb2.ContentPart(image=chat_pb2.ImageContent(url="s3://bucket/cat.jpg")),
            chat_pb2.ContentPart(
                file=chat_pb2.FileContent(
                    url="s3://bucket/a.pdf", media_type="application/pdf", filename="a.pdf"
                )
            ),
        ],
    )
    thought = chat_pb2.ChatMessage(
        role="assistant",
        parts=[
            chat_pb2.ContentPart(thinking=chat_pb2.ThinkingContent(thinking="hm", signature="sig-1")),
            chat_pb2.ContentPart(thinking=chat_pb2.ThinkingContent(redacted_data="b3BhcXVl")),
            chat_pb2.ContentPart(text="A cat."),
        ],
    )
    await drain(provider, request(asking, thought, user("and?")))
    # The fake held the body to botocore's Converse model before answering.
    body = fake.requests[-1].body
    assert body["messages"][0]["content"] == [
        {"audio": {"format": "wav", "source": {"bytes": "UklGRg=="}}},
        {"image": {"format": "jpeg", "source": {"s3Location": {"uri": "s3://bucket/cat.jpg"}}}},
        {
            "document": {
                "name": "a pdf",
                "source": {"s3Location": {"uri": "s3://bucket/a.pdf"}},
                "format": "pdf",
            }
        },
    ]
    assert body["messages"][1]["content"] == [
        {"reasoningContent": {"reasoningText": {"text": "hm", "signature": "sig-1"}}},
        {"reasoningContent": {"redactedContent": "b3BhcXVl"}},
        {"text": "A cat."},
    ]


@pytest.mark.parametrize(
    ("part", "why"),
    [
        (chat_pb2.ContentPart(audio=chat_pb2.AudioContent(data="x", format="aiff")), "audio format"),
        (chat_pb2.ContentPart(image=chat_pb2.ImageContent(url="s3://bucket/cat.bmp")), "s3:// image"),
        (chat_pb2.ContentPart(image=chat_pb2.ImageContent(url="https://x.test/a.png")), "base64 data: URLs"),
        (chat_pb2.ContentPart(image=chat_pb2.ImageContent(url="data:image/tiff;base64,AAAA")), "image type"),
        (chat_pb2.ContentPart(file=chat_pb2.FileContent(file_id="file-1")), "inline data or s3://"),
        (
            chat_pb2.ContentPart(file=chat_pb2.FileContent(file_data="QQ==", media_type="video/mp4")),
            "document type",
        ),
    ],
)
async def test_media_converse_cannot_take_is_refused_by_path(
    fake: FakeBedrock, provider: BedrockProvider, part: chat_pb2.ContentPart, why: str
) -> None:
    message = chat_pb2.ChatMessage(role="user", parts=[chat_pb2.ContentPart(text="see"), part])
    with pytest.raises(ProviderError) as caught:
        await drain(provider, request(message))
    assert caught.value.kind == "unsupported" and caught.value.param == "messages[0].content[1]"
    assert why in caught.value.message
    assert not fake.requests


async def test_gemini_reasoning_reaches_no_model_on_bedrock(
    fake: FakeBedrock, provider: BedrockProvider
) -> None:
    # Signed for Gemini: Claude would refuse the signature. A turn of nothing else is left out whole.
    thought = chat_pb2.ContentPart(
        thinking=chat_pb2.ThinkingContent(thinking="Hmm.", signature="atp-gemini:ts0")
    )
    said = chat_pb2.ContentPart(text="Hello!")
    await drain(
        provider,
        request(
            user("hi"),
            chat_pb2.ChatMessage(role="assistant", parts=[thought, said]),
            user("and?"),
            chat_pb2.ChatMessage(role="assistant", parts=[thought]),
            user("still there?"),
        ),
    )
    turns = fake.requests[-1].body["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"] == [{"text": "Hello!"}]


@pytest.mark.parametrize(
    ("model", "params", "sent"),
    [
        # Claude refuses temperature and topP together: a value at Claude's default is left out.
        (MODEL_ID, {"temperature": 0.3, "top_p": 1.0}, {"temperature": 0.3}),
        (MODEL_ID, {"temperature": 1.0, "top_p": 0.8}, {"topP": pytest.approx(0.8)}),
        (MODEL_ID, {"temperature": 0.3, "top_p": 0.8}, {"temperature": 0.3, "topP": pytest.approx(0.8)}),
        # Another model's defaults differ (Llama's top_p is 0.9): both go as sent.
        (
            "meta.llama3-70b-instruct-v1:0",
            {"temperature": 0.3, "top_p": 1.0},
            {"temperature": 0.3, "topP": 1.0},
        ),
    ],
)
async def test_claude_gets_one_sampler_when_the_other_is_its_default(
    fake: FakeBedrock, provider: BedrockProvider, model: str, params: dict, sent: dict
) -> None:
    ask = ProviderRequest(model, [user("hi")], chat_pb2.GenerationParams(**params), stream=False)
    await drain(provider, ask)
    assert fake.requests[-1].body["inferenceConfig"] == pytest.approx(sent)


async def test_tool_ids_bedrock_refuses_are_rewritten_alike(
    fake: FakeBedrock, provider: BedrockProvider
) -> None:
    long_id = "call/" + "x" * 80  # Bedrock's ids: at most 64 of letters, digits and _.:-
    call = chat_pb2.ToolCall(id=long_id, type="function", function_name="f", arguments="{}")
    messages = [
        user("go"),
        chat_pb2.ChatMessage(role="assistant", tool_calls=[call]),
        chat_pb2.ChatMessage(role="tool", tool_call_id=long_id, content="done"),
    ]
    params = chat_pb2.GenerationParams(tools=[chat_pb2.Tool(name="f", parameters_json=b"{}")])
    await drain(provider, ProviderRequest(MODEL_ID, messages, params, stream=False))
    sent = fake.requests[-1].body["messages"]
    used, answered = (
        sent[1]["content"][0]["toolUse"]["toolUseId"],
        sent[2]["content"][0]["toolResult"]["toolUseId"],
    )
    assert used == answered and len(used) <= 64 and "/" not in used
