"""Every typed request field to Gemini terms and every candidate back, against the checking fake; images
given by URL fetched within their limits."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from atp.common.v1 import chat_pb2
from atp_adapters.providers import GeminiProvider, ProviderError, ProviderRequest
from atp_adapters.providers.base import GEMINI_SIGNED, EmbedCall
from atp_common.config import HttpProvider
from tests.fakes import FakeGemini, FakeReply, Faults, running_fake_gemini
from tests.fakes.image_server import PNG_BYTES, ImageServer, running_image_server
from tests.support.full_reply import collect_full

PNG = "data:image/png;base64,iVBORw0KGgo="
PDF = base64.b64encode(b"%PDF-1.4 fake").decode()
Part = chat_pb2.ContentPart


@pytest.fixture
async def fake() -> AsyncIterator[FakeGemini]:
    async with running_fake_gemini() as server:
        yield server


@pytest.fixture
async def images() -> AsyncIterator[ImageServer]:
    async with running_image_server(big_size=4096, slow_s=3.0) as server:
        yield server


def make_provider(fake: FakeGemini, **limits) -> GeminiProvider:
    cfg = HttpProvider(type="gemini", base_url=fake.base_url, image_fetch_private_hosts=True, **limits)
    return GeminiProvider(cfg, api_key="g", name="gem")


@pytest.fixture
async def provider(fake: FakeGemini) -> AsyncIterator[GeminiProvider]:
    client = make_provider(fake, image_fetch_max_bytes=2048, image_fetch_timeout_s=1.0)
    yield client
    await client.close()


def conversation(image_url: str) -> list[chat_pb2.ChatMessage]:
    call = chat_pb2.ToolCall(id="c1", type="function", function_name="weather", arguments='{"city":"Rome"}')
    call2 = chat_pb2.ToolCall(id="c2", type="function", function_name="snap", arguments="{}")
    return [
        chat_pb2.ChatMessage(role="system", content="be brief"),
        chat_pb2.ChatMessage(role="developer", parts=[Part(text="rules")]),
        chat_pb2.ChatMessage(
            role="user",
            parts=[
                Part(text="look"),
                Part(image=chat_pb2.ImageContent(url=PNG)),
                Part(image=chat_pb2.ImageContent(url=image_url)),
                Part(audio=chat_pb2.AudioContent(data="UklGRg==", format="wav")),
                Part(file=chat_pb2.FileContent(file_data=PDF, media_type="application/pdf")),
                Part(file=chat_pb2.FileContent(url="gs://b/doc.pdf", media_type="application/pdf")),
            ],
        ),
        chat_pb2.ChatMessage(
            role="assistant",
            parts=[
                Part(thinking=chat_pb2.ThinkingContent(thinking="hmm", signature=GEMINI_SIGNED + "s0")),
                # Another model's reasoning (Claude's signature): nothing Gemini can read, so not sent.
                Part(thinking=chat_pb2.ThinkingContent(thinking="claude's", signature="EqQBCkYIBx")),
                Part(thinking=chat_pb2.ThinkingContent(redacted_data="claude-redacted")),
                Part(text="Checking."),
                Part(refusal="not that"),
                Part(thinking=chat_pb2.ThinkingContent(signature=GEMINI_SIGNED + "ts1")),
            ],
            tool_calls=[call, call2],
        ),
        chat_pb2.ChatMessage(role="tool", tool_call_id="c1", content='{"temp": 21}'),
        chat_pb2.ChatMessage(
            role="tool",
            tool_call_id="c2",
            is_error=True,
            parts=[Part(text="lens "), Part(text="broken"), Part(image=chat_pb2.ImageContent(url=PNG))],
        ),
    ]


def every_param() -> chat_pb2.GenerationParams:
    return chat_pb2.GenerationParams(
        max_tokens=300,
        temperature=0.5,
        top_p=0.9,
        top_k=20,
        stop=["END"],
        seed=7,
        presence_penalty=0.1,
        frequency_penalty=0.2,
        n=2,
        logprobs=True,
        top_logprobs=2,
        tools=[
            chat_pb2.Tool(
                type="function", name="weather", description="now", parameters_json=b'{"type":"object"}'
            )
        ],
        tool_choice=chat_pb2.ToolChoice(mode="function", name="weather"),
        response_format=chat_pb2.ResponseFormat(type="json_schema", schema_json=b'{"type":"object"}'),
        reasoning=chat_pb2.Reasoning(budget_tokens=512, include_thoughts=True),
        user="u1",
        cache_control=chat_pb2.CacheControl(type="ephemeral"),
    )


async def sent_body(fake: FakeGemini, provider: GeminiProvider, images: ImageServer) -> dict:
    """The body of the request with every field; the fake checked it as Gemini does and answered 200."""
    request = ProviderRequest("gem-x", conversation(images.url("ok.png")), every_param(), stream=False)
    await collect_full(provider.stream(request))
    return fake.requests[0].body


async def test_every_message_part_in_gemini_terms(
    fake: FakeGemini, provider: GeminiProvider, images: ImageServer
) -> None:
    body = await sent_body(fake, provider, images)
    assert body["systemInstruction"] == {"parts": [{"text": "be brief"}, {"text": "rules"}]}
    user, model, results = body["contents"]
    fetched = base64.b64encode(PNG_BYTES).decode()
    assert user == {
        "role": "user",
        "parts": [
            {"text": "look"},
            {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
            {"inlineData": {"mimeType": "image/png", "data": fetched}},
            {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
            {"inlineData": {"mimeType": "application/pdf", "data": PDF}},
            {"fileData": {"mimeType": "application/pdf", "fileUri": "gs://b/doc.pdf"}},
        ],
    }
    assert model == {
        "role": "model",
        "parts": [
            {"text": "hmm", "thought": True, "thoughtSignature": "s0"},
            {"text": "Checking."},
            {"text": "not that"},
            {"functionCall": {"name": "weather", "args": {"city": "Rome"}}, "thoughtSignature": "ts1"},
            {"functionCall": {"name": "snap", "args": {}}},
        ],
    }
    assert results == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "weather", "response": {"temp": 21}}},
            {"functionResponse": {"name": "snap", "response": {"error": "lens broken"}}},
            {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        ],
    }


async def test_a_tool_result_that_is_not_a_json_object_stays_the_text_it_was(
    fake: FakeGemini, provider: GeminiProvider
) -> None:
    call = chat_pb2.ToolCall(id="c1", type="function", function_name="count", arguments="{}")
    messages = [
        chat_pb2.ChatMessage(role="user", content="how many?"),
        chat_pb2.ChatMessage(role="assistant", tool_calls=[call]),
        chat_pb2.ChatMessage(role="tool", tool_call_id="c1", content="42"),
    ]
    request = ProviderRequest("gem-x", messages, chat_pb2.GenerationParams(), stream=False)
    await collect_full(provider.stream(request))
    part = fake.requests[0].body["contents"][-1]["parts"][0]
    assert part == {"functionResponse": {"name": "count", "response": {"output": "42"}}}


async def test_every_parameter_in_gemini_terms(
    fake: FakeGemini, provider: GeminiProvider, images: ImageServer
) -> None:
    body = await sent_body(fake, provider, images)
    assert body["generationConfig"] == {
        "temperature": 0.5,
        "topP": 0.9,
        "topK": 20,
        "maxOutputTokens": 300,
        "seed": 7,
        "presencePenalty": 0.1,
        "frequencyPenalty": 0.2,
        "candidateCount": 2,
        "logprobs": 2,
        "stopSequences": ["END"],
        "responseLogprobs": True,
        "responseMimeType": "application/json",
        "responseJsonSchema": {"type": "object"},
        "thinkingConfig": {"thinkingBudget": 512, "includeThoughts": True},
    }
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {"name": "weather", "description": "now", "parametersJsonSchema": {"type": "object"}}
            ]
        }
    ]
    assert body["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}
    }


@pytest.mark.parametrize(
    ("params", "config"),
    [
        ({"reasoning": chat_pb2.Reasoning(effort="low")}, {"thinkingConfig": {"thinkingLevel": "LOW"}}),
        ({"reasoning": chat_pb2.Reasoning(effort="xhigh")}, {"thinkingConfig": {"thinkingLevel": "HIGH"}}),
        ({"reasoning": chat_pb2.Reasoning(disabled=True)}, {"thinkingConfig": {"thinkingBudget": 0}}),
        ({"reasoning": chat_pb2.Reasoning(effort="none")}, {"thinkingConfig": {"thinkingBudget": 0}}),
        (
            {"response_format": chat_pb2.ResponseFormat(type="json_object")},
            {"responseMimeType": "application/json"},
        ),
    ],
)
async def test_reasoning_and_json_mode(fake: FakeGemini, provider: GeminiProvider, params, config) -> None:
    messages = [chat_pb2.ChatMessage(role="user", content="hi")]
    await collect_full(
        provider.stream(ProviderRequest("gem-x", messages, chat_pb2.GenerationParams(**params)))
    )
    assert fake.requests[0].body["generationConfig"] == config


def _with(part: chat_pb2.ContentPart, role: str = "user") -> list[chat_pb2.ChatMessage]:
    return [
        chat_pb2.ChatMessage(role="user", content="hi"),
        chat_pb2.ChatMessage(role=role, parts=[Part(text="a"), part]),
    ]


HI = [chat_pb2.ChatMessage(role="user", content="hi")]


@pytest.mark.parametrize(
    ("messages", "params", "path"),
    [
        (_with(Part(file=chat_pb2.FileContent(file_id="file-1"))), {}, "messages[1].content[1]"),
        (
            _with(
                Part(file=chat_pb2.FileContent(file_data=PDF, media_type="application/pdf", citations=True))
            ),
            {},
            "messages[1].content[1]",
        ),
        (_with(Part(audio=chat_pb2.AudioContent(data="AAA=", format="opus"))), {}, "messages[1].content[1]"),
        (_with(Part(image=chat_pb2.ImageContent(url="ftp://x/y.png"))), {}, "messages[1].content[1]"),
        (_with(Part(image=chat_pb2.ImageContent(url=PNG)), "system"), {}, "messages[1].content[1]"),
        ([chat_pb2.ChatMessage(role="user", content="hi", name="ann")], {}, "messages[0].name"),
        (
            [*HI, chat_pb2.ChatMessage(role="tool", tool_call_id="nope", content="x")],
            {},
            "messages[1].tool_call_id",
        ),
        (HI, {"tools": [chat_pb2.Tool(type="custom", name="g")]}, "tools[0]"),
        (HI, {"service_tier": "flex"}, "service_tier"),
        (HI, {"parallel_tool_calls": False}, "parallel_tool_calls"),
        (HI, {"logit_bias": {"1": 2}}, "logit_bias"),
        (HI, {"reasoning": chat_pb2.Reasoning(effort="max")}, "reasoning_effort"),
    ],
)
async def test_what_gemini_cannot_express_is_refused_by_path(
    fake: FakeGemini, provider: GeminiProvider, messages, params, path: str
) -> None:
    request = ProviderRequest("gem-x", messages, chat_pb2.GenerationParams(**params))
    with pytest.raises(ProviderError) as info:
        await collect_full(provider.stream(request))
    assert info.value.kind == "unsupported" and info.value.param == path
    assert fake.requests == []


@pytest.mark.parametrize("stream", [True, False])
async def test_every_candidate_is_a_choice_with_logprobs(
    fake: FakeGemini, provider: GeminiProvider, stream: bool
) -> None:
    fake.reply = FakeReply(text="Sunny and mild.")
    params = chat_pb2.GenerationParams(n=2, logprobs=True, top_logprobs=2)
    reply = await collect_full(provider.stream(ProviderRequest("gem-x", HI, params, stream=stream)))
    assert sorted(reply.choices) == [0, 1]
    assert reply.choices[0].text == "Sunny and mild." and reply.choices[1].text == "[1] Sunny and mild."
    assert reply.choices[0].role == reply.choices[1].role == "assistant"
    assert reply.choice_finish_reasons == {0: "stop", 1: "stop"} and reply.finish_reason == "stop"
    assert reply.choices[1].finish_reason == "stop"
    first = reply.choices[0].logprobs[0]
    assert first.token == (fake.reply.pieces()[0] if stream else "Sunny and mild.")
    assert first.logprob == -0.5 and first.has_bytes and first.token_bytes == first.token.encode()
    assert [t.token for t in first.top_logprobs] == [first.token, "x"]
    assert "".join(t.token for t in reply.choices[1].logprobs) == "[1] Sunny and mild."


@pytest.mark.parametrize("stream", [True, False])
async def test_citations_and_safety_stops_reach_the_reply(
    fake: FakeGemini, provider: GeminiProvider, stream: bool
) -> None:
    source = {"startIndex": 0, "endIndex": 5, "uri": "https://src.example/a", "license": "mit"}
    fake.citations = [source]
    fake.reply = FakeReply(text="Sunny today.")
    reply = await collect_full(
        provider.stream(ProviderRequest("gem-x", HI, chat_pb2.GenerationParams(), stream=stream))
    )
    assert list(reply.first.annotations) == [
        chat_pb2.Annotation(type="citation_source", url="https://src.example/a", start_index=0, end_index=5)
    ]
    fake.citations = []
    fake.reply = FakeReply(text="", finish_reason="content_filter")
    fake.finish_message = "blocked: dangerous content"
    reply = await collect_full(
        provider.stream(ProviderRequest("gem-x", HI, chat_pb2.GenerationParams(), stream=stream))
    )
    assert reply.finish_reason == "content_filter" and reply.first.refusal == "blocked: dangerous content"


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("big.png", "bytes exceed 2048"),
        ("stream.png", "more than 2048 bytes"),
        ("page.html", "is not an image"),
        ("missing.png", "HTTP 404"),
        ("slow.png", "no complete answer within 1s"),
    ],
)
async def test_image_fetch_limits_refuse_by_part_path(
    fake: FakeGemini, provider: GeminiProvider, images: ImageServer, name: str, why: str
) -> None:
    messages = [
        *HI,
        chat_pb2.ChatMessage(
            role="user", parts=[Part(text="see"), Part(image=chat_pb2.ImageContent(url=images.url(name)))]
        ),
    ]
    started = time.monotonic()
    with pytest.raises(ProviderError) as info:
        await collect_full(provider.stream(ProviderRequest("gem-x", messages, chat_pb2.GenerationParams())))
    assert info.value.kind == "unsupported" and info.value.param == "messages[1].content[1]"
    # The slow server answers after 3 s: the fetch gave up at its own timeout.
    assert why in info.value.message and time.monotonic() - started < 2.5
    assert images.requests == [name] and fake.requests == []


async def test_image_fetch_follows_redirects_and_keeps_the_deadline(
    fake: FakeGemini, provider: GeminiProvider, images: ImageServer
) -> None:
    messages = [
        chat_pb2.ChatMessage(
            role="user", parts=[Part(image=chat_pb2.ImageContent(url=images.url("hop.png")))]
        )
    ]
    reply = await collect_full(
        provider.stream(ProviderRequest("gem-x", messages, chat_pb2.GenerationParams()))
    )
    assert reply.finish_reason == "stop" and images.requests == ["hop.png", "ok.png"]
    assert fake.requests[0].body["contents"][0]["parts"][0]["inlineData"]["mimeType"] == "image/png"
    # The request's own deadline is shorter than the fetch timeout: it wins.
    messages[0].parts[0].image.url = images.url("slow.png")
    request = ProviderRequest("gem-x", messages, chat_pb2.GenerationParams(), deadline=time.monotonic() + 0.1)
    with pytest.raises(ProviderError) as info:
        await collect_full(provider.stream(request))
    # What was left of the request's 0.1 s when the fetch started (less on a loaded host), not the
    # fetch's own timeout of seconds.
    waited = re.search(r"within ([0-9.e-]+)s", info.value.message)
    assert waited is not None and 0 < float(waited.group(1)) <= 0.1, info.value.message


async def test_image_fetch_refuses_private_hosts_by_default(fake: FakeGemini, images: ImageServer) -> None:
    provider = GeminiProvider(HttpProvider(type="gemini", base_url=fake.base_url), api_key="g", name="gem")
    for url in (images.url("ok.png"), f"http://localhost:{images.port}/ok.png"):
        messages = [chat_pb2.ChatMessage(role="user", parts=[Part(image=chat_pb2.ImageContent(url=url))])]
        with pytest.raises(ProviderError) as info:
            await collect_full(
                provider.stream(ProviderRequest("gem-x", messages, chat_pb2.GenerationParams()))
            )
        assert info.value.param == "messages[0].content[0]"
    await provider.close()
    assert images.requests == [] and fake.requests == []


async def test_embeddings_through_batch_embed_contents(fake: FakeGemini, provider: GeminiProvider) -> None:
    result = await provider.embed(
        EmbedCall("emb-1", ["hello", "hi"], dimensions=3, deadline=time.monotonic() + 5)
    )
    assert result.vectors == [[5.0, 0.0, 0.5], [2.0, 1.0, 0.5]] and result.usage is None
    sent = fake.requests[0]
    assert sent.path == "/v1beta/models/emb-1:batchEmbedContents"
    assert sent.body == {
        "requests": [
            {"model": "models/emb-1", "content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 3},
            {"model": "models/emb-1", "content": {"parts": [{"text": "hi"}]}, "outputDimensionality": 3},
        ]
    }
    with pytest.raises(ProviderError) as info:
        await provider.embed(EmbedCall("emb-1", ["a", [1, 2]]))
    assert info.value.kind == "unsupported" and info.value.param == "input[1]"
    fake.faults = Faults(status=429, retry_after="1", times=1)
    with pytest.raises(ProviderError) as info:
        await provider.embed(EmbedCall("emb-1", ["a"]))
    assert info.value.status == 429 and info.value.retryable and info.value.retry_after == 1


async def test_a_requests_images_together_stay_within_the_total(
    fake: FakeGemini, provider: GeminiProvider, images: ImageServer
) -> None:
    provider.images.limits = replace(provider.images.limits, max_total_bytes=2 * len(PNG_BYTES))
    urls = [images.url("ok.png")] * 3
    messages = [
        chat_pb2.ChatMessage(role="user", parts=[Part(image=chat_pb2.ImageContent(url=u)) for u in urls])
    ]
    with pytest.raises(ProviderError) as info:
        await collect_full(provider.stream(ProviderRequest("gem-x", messages, chat_pb2.GenerationParams())))
    assert info.value.param in {f"messages[0].content[{j}]" for j in range(3)}
    assert "together" in info.value.message and fake.requests == []


async def test_defaults_ask_nothing_and_top_logprobs_alone_turn_logprobs_on(
    fake: FakeGemini, provider: GeminiProvider
) -> None:
    params = chat_pb2.GenerationParams(service_tier="default", logprobs=False, store=False, top_logprobs=3)
    await collect_full(provider.stream(ProviderRequest("gem-x", HI, params, stream=False)))
    assert fake.requests[0].body["generationConfig"] == {"responseLogprobs": True, "logprobs": 3}


@pytest.mark.parametrize("stream", [True, False])
async def test_audio_prompt_tokens_reach_the_usage(
    fake: FakeGemini, provider: GeminiProvider, stream: bool
) -> None:
    fake.audio_tokens = 7
    fake.reply = FakeReply(text="heard", prompt_tokens=20)
    audio = Part(audio=chat_pb2.AudioContent(data="UklGRg==", format="wav"))
    messages = [chat_pb2.ChatMessage(role="user", parts=[audio])]
    reply = await collect_full(
        provider.stream(ProviderRequest("gem-x", messages, chat_pb2.GenerationParams(), stream=stream))
    )
    assert reply.usage is not None and (reply.usage.prompt_tokens, reply.usage.prompt_audio_tokens) == (20, 7)
