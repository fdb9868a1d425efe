"""The local echo provider: deterministic text, pacing, limits, tools and exact usage."""

from __future__ import annotations

import time

import orjson
import pytest

from atp.common.v1 import chat_pb2
from atp_adapters.providers import LocalProvider, ProviderError, ProviderRequest, count_prompt_tokens
from atp_adapters.providers.base import EmbedCall
from atp_common.config import LocalProvider as LocalConfig
from tests.support.collect import collect

MESSAGES = [
    chat_pb2.ChatMessage(role="system", content="be brief"),
    chat_pb2.ChatMessage(role="user", content="first question"),
    chat_pb2.ChatMessage(role="assistant", content="first answer"),
    chat_pb2.ChatMessage(role="user", content="tell me  about\tthe sea"),
]


def request(stream: bool = True, **params) -> ProviderRequest:
    return ProviderRequest("echo", MESSAGES, chat_pb2.GenerationParams(**params), stream=stream)


async def test_echoes_the_last_user_message_identically_streamed_or_not() -> None:
    provider = LocalProvider(LocalConfig(reply_prefix="echo: "))
    whole = await collect(provider.stream(request(stream=False)))
    streamed = await collect(provider.stream(request(stream=True)))
    assert whole.text == streamed.text == "echo: tell me  about\tthe sea"
    assert whole.batches == streamed.batches == 1  # no pacing: everything at once
    assert whole.roles == ["assistant"]
    assert whole.finish_reason == "stop"
    assert whole.usage == chat_pb2.Usage(prompt_tokens=count_prompt_tokens(MESSAGES), completion_tokens=6)
    # Words plus 3 per message: 2+2+2+5 words, 4 messages.
    assert count_prompt_tokens(MESSAGES) == 11 + 12


async def test_pacing_yields_one_token_per_batch_at_the_configured_rate() -> None:
    provider = LocalProvider(LocalConfig(latency_ms=50, tokens_per_second=100, reply_prefix=""))
    started = time.monotonic()
    first_at = None
    sizes = []
    async for batch in provider.stream(request()):
        first_at = first_at or time.monotonic() - started
        sizes.append(len(batch.deltas))
        if batch.finish_reason:
            assert batch.usage.completion_tokens == 5
    elapsed = time.monotonic() - started
    assert sizes == [1, 1, 1, 1, 1]
    assert 0.045 <= first_at < 0.2
    assert 0.05 + 4 * 0.01 <= elapsed < 0.5
    paced = await collect(provider.stream(request()))
    assert paced.text == (await collect(provider.stream(request(stream=False)))).text


async def test_max_tokens_truncates_with_finish_length_and_stop_cuts() -> None:
    provider = LocalProvider(LocalConfig(tokens_per_second=1000))
    short = await collect(provider.stream(request(max_tokens=3)))
    assert short.text == "echo: tell me"
    assert short.finish_reason == "length"
    assert short.usage.completion_tokens == 3
    assert short.batches == 3
    stopped = await collect(provider.stream(request(stop=["about"])))
    assert stopped.text == "echo: tell me  "
    assert stopped.finish_reason == "stop"


async def test_json_response_format_and_forced_tool_call() -> None:
    provider = LocalProvider(LocalConfig())
    as_json = await collect(
        provider.stream(request(response_format=chat_pb2.ResponseFormat(type="json_object")))
    )
    assert orjson.loads(as_json.text) == {"echo": "echo: tell me  about\tthe sea"}
    tools = [chat_pb2.Tool(type="function", name="lookup", parameters_json=b"{}")]
    called = await collect(
        provider.stream(request(tools=tools, tool_choice=chat_pb2.ToolChoice(mode="required")))
    )
    assert called.finish_reason == "tool_calls"
    assert called.text == ""
    assert called.tool_calls == {0: ["call_local_0", "lookup", '{"text":"tell me  about\\tthe sea"}']}
    auto = await collect(provider.stream(request(tools=tools, tool_choice=chat_pb2.ToolChoice(mode="auto"))))
    assert auto.finish_reason == "stop" and not auto.tool_calls


async def test_deadline_shorter_than_latency_is_a_timeout() -> None:
    provider = LocalProvider(LocalConfig(latency_ms=5000))
    req = request()
    req.deadline = time.monotonic() + 0.05
    started = time.monotonic()
    with pytest.raises(ProviderError) as info:
        await collect(provider.stream(req))
    assert info.value.kind == "timeout"
    assert type(info.value.to_atp()).__name__ == "DeadlineExceeded"
    assert time.monotonic() - started < 1.0


async def _batches(provider: LocalProvider, req: ProviderRequest) -> list:
    return [batch async for batch in provider.stream(req)]


async def test_n_choices_logprobs_and_reasoning_are_honoured_deterministically() -> None:
    provider = LocalProvider(LocalConfig(reply_prefix=""))
    req = request(
        stream=False,
        n=2,
        logprobs=True,
        top_logprobs=2,
        reasoning=chat_pb2.Reasoning(effort="low"),
        max_tokens=2,
    )
    (batch,) = await _batches(provider, req)
    by_choice: dict[int, list[chat_pb2.Delta]] = {}
    for delta in batch.deltas:
        by_choice.setdefault(delta.choice, []).append(delta)
    assert sorted(by_choice) == [0, 1]
    for deltas in by_choice.values():
        reasoning, answer = deltas
        assert (
            reasoning.reasoning == "thinking about: tell me  about\tthe sea" and reasoning.role == "assistant"
        )
        assert answer.content == "tell me" and answer.finish_reason == "length"
        assert [(lp.token, lp.logprob, len(lp.top_logprobs)) for lp in answer.logprobs] == [
            ("tell", 0.0, 2),
            (" me", 0.0, 2),
        ]
        assert answer.logprobs[0].top_logprobs[0].token == "tell"
    assert batch.choice_finish_reasons == {0: "length", 1: "length"}
    assert batch.usage.reasoning_tokens == 7 and batch.usage.completion_tokens == 2 * 2 + 7


async def test_custom_tools_media_parts_and_embeddings() -> None:
    provider = LocalProvider(LocalConfig(reply_prefix=""))
    tools = [chat_pb2.Tool(type="custom", name="sql")]
    called = await collect(
        provider.stream(request(tools=tools, tool_choice=chat_pb2.ToolChoice(mode="custom", name="sql")))
    )
    assert called.tool_calls == {0: ["call_local_0", "sql", "tell me  about\tthe sea"]}
    parts = [
        chat_pb2.ContentPart(text="see"),
        chat_pb2.ContentPart(image=chat_pb2.ImageContent(url="https://x.test/a.png")),
        chat_pb2.ContentPart(audio=chat_pb2.AudioContent(data="AA==", format="wav")),
        chat_pb2.ContentPart(file=chat_pb2.FileContent(filename="a.pdf", file_data="AA==")),
    ]
    media = ProviderRequest(
        "echo", [chat_pb2.ChatMessage(role="user", parts=parts)], chat_pb2.GenerationParams()
    )
    assert (await collect(provider.stream(media))).text == "see [image] [audio wav] [file a.pdf]"
    vectors = await provider.embed(EmbedCall("echo-embed", ["a b", "a b", [1, 2]], dimensions=8))
    assert vectors.vectors[0] == vectors.vectors[1] != vectors.vectors[2] and len(vectors.vectors[0]) == 8
    assert vectors.usage.prompt_tokens == 2 + 2 + 2
    with pytest.raises(ProviderError) as info:
        await provider.embed(EmbedCall("echo-embed", ["x"], dimensions=100_000))
    assert info.value.param == "dimensions"


_ANSWER_SCHEMA = {
    "$defs": {
        "Step": {
            "type": "object",
            "properties": {
                "explanation": {"type": "string"},
                "next": {"anyOf": [{"$ref": "#/$defs/Step"}, {"type": "null"}]},
            },
            "required": ["explanation", "next"],
        }
    },
    "type": "object",
    "properties": {
        "answer": {"type": "string", "maxLength": 8},
        "confidence": {"type": "number", "minimum": 0.5, "maximum": 1},
        "count": {"type": "integer", "exclusiveMinimum": 2},
        "mood": {"enum": ["calm", "wild"]},
        "kind": {"const": "reply"},
        "ok": {"type": ["boolean", "null"]},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        "code": {"type": "string", "minLength": 40},
        "steps": {"type": "array", "items": {"$ref": "#/$defs/Step"}, "minItems": 1},
        "optional": {"type": "string"},
    },
    "required": ["answer", "confidence", "count", "mood", "kind", "ok", "tags", "code", "steps"],
    "additionalProperties": False,
}


async def test_a_json_schema_gets_its_smallest_instance_with_the_echo_in_its_strings() -> None:
    provider = LocalProvider(LocalConfig())
    schema = chat_pb2.ResponseFormat(type="json_schema", name="a", schema_json=orjson.dumps(_ANSWER_SCHEMA))
    reply = orjson.loads((await collect(provider.stream(request(response_format=schema)))).text)
    echo = "echo: tell me  about\tthe sea"
    assert reply["answer"] == echo[:8]
    assert (reply["confidence"], reply["count"], reply["mood"], reply["kind"]) == (0.5, 3, "calm", "reply")
    assert reply["ok"] is False
    assert reply["tags"] == [echo, echo]
    assert reply["code"] == echo.ljust(40, ".")
    # The recursive definition ends at the depth bound: a chain of steps, the last one's `next` null.
    step, depth = reply["steps"][0], 1
    while step["next"] is not None:
        assert step["explanation"] == echo
        step, depth = step["next"], depth + 1
    assert 1 < depth < 10
    assert "optional" not in reply


async def test_schemas_that_shape_nothing_keep_the_plain_echo() -> None:
    provider = LocalProvider(LocalConfig())
    echo = "echo: tell me  about\tthe sea"
    for schema_json in (b"", b"not json", b"[1]", b"{}", b'{"type": "object"}', b'{"description": "x"}'):
        schema = chat_pb2.ResponseFormat(type="json_schema", schema_json=schema_json)
        reply = await collect(provider.stream(request(response_format=schema)))
        assert orjson.loads(reply.text) == {"echo": echo}, schema_json
    closed = chat_pb2.ResponseFormat(
        type="json_schema", schema_json=b'{"type": "object", "additionalProperties": false}'
    )
    assert orjson.loads((await collect(provider.stream(request(response_format=closed)))).text) == {}
    # A reference that leads nowhere says nothing of the shape: any JSON value fits, the echo as a string.
    bad_ref = chat_pb2.ResponseFormat(type="json_schema", schema_json=b'{"$ref": "https://elsewhere/x"}')
    assert orjson.loads((await collect(provider.stream(request(response_format=bad_ref)))).text) == echo


async def test_a_forced_tool_call_gets_an_instance_of_its_parameters() -> None:
    provider = LocalProvider(LocalConfig())
    parameters = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
    }
    tools = [chat_pb2.Tool(type="function", name="weather", parameters_json=orjson.dumps(parameters))]
    called = await collect(
        provider.stream(request(tools=tools, tool_choice=chat_pb2.ToolChoice(mode="required")))
    )
    assert orjson.loads(called.tool_calls[0][2]) == {"city": "tell me  about\tthe sea", "days": 1}
