"""Every field of an OpenAI reply, whole and streamed, reaches the GenerateResponse."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from atp.adapters.v1 import adapters_pb2
from atp.common.v1 import chat_pb2
from tests.support.fidelity_stack import Suite, running_stack


@pytest.fixture
async def suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Suite]:
    async with running_stack(tmp_path, monkeypatch) as stack:
        yield stack


def _logprob(token: str, value: float, top: list[tuple[str, float]] | None = None) -> dict[str, Any]:
    return {
        "token": token,
        "logprob": value,
        "bytes": list(token.encode()),
        "top_logprobs": [{"token": t, "logprob": v, "bytes": None} for t, v in top or []],
    }


CITATION = {
    "type": "url_citation",
    "url_citation": {"url": "https://x.test", "title": "X", "start_index": 0, "end_index": 5},
}
AUDIO = {
    "id": "audio_9",
    "data": base64.b64encode(b"RIFF").decode(),
    "transcript": "hello",
    "expires_at": 1900000000,
}
USAGE = {
    "prompt_tokens": 20,
    "completion_tokens": 30,
    "total_tokens": 50,
    "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 2},
    "completion_tokens_details": {
        "reasoning_tokens": 5,
        "audio_tokens": 6,
        "accepted_prediction_tokens": 7,
        "rejected_prediction_tokens": 8,
    },
}
REPLY_META = {"id": "chatcmpl-42", "system_fingerprint": "fp_abc", "service_tier": "flex"}


def _whole() -> dict[str, Any]:
    return {
        **REPLY_META,
        "object": "chat.completion",
        "created": 1,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello",
                    "reasoning_content": "thinking",
                    "annotations": [CITATION],
                    "audio": AUDIO,
                },
                "logprobs": {"content": [_logprob("Hello", -0.1, [("Hello", -0.1), ("Hi", -2.5)])]},
                "finish_reason": "stop",
            },
            {
                "index": 1,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "refusal": "No.",
                    "tool_calls": [
                        {"id": "c9", "type": "custom", "custom": {"name": "sql", "input": "SELECT 1"}}
                    ],
                },
                "logprobs": {"content": None, "refusal": [_logprob("No.", -0.3)]},
                "finish_reason": "length",
            },
        ],
        "usage": USAGE,
    }


def _chunks() -> list[dict[str, Any]]:
    def chunk(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {**REPLY_META, "object": "chat.completion.chunk", "created": 1, "choices": choices, **extra}

    return [
        chunk(
            [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "reasoning_content": "thinking"},
                    "finish_reason": None,
                }
            ]
        ),
        chunk(
            [
                {
                    "index": 0,
                    "delta": {"content": "Hello", "annotations": [CITATION], "audio": AUDIO},
                    "logprobs": {"content": [_logprob("Hello", -0.1, [("Hello", -0.1), ("Hi", -2.5)])]},
                    "finish_reason": None,
                },
                {
                    "index": 1,
                    "delta": {"role": "assistant", "refusal": "No."},
                    "logprobs": {"content": None, "refusal": [_logprob("No.", -0.3)]},
                    "finish_reason": None,
                },
            ]
        ),
        chunk(
            [
                {
                    "index": 1,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "c9",
                                "type": "custom",
                                "custom": {"name": "sql", "input": "SELECT 1"},
                            }
                        ]
                    },
                    "finish_reason": None,
                }
            ]
        ),
        chunk(
            [
                {"index": 0, "delta": {}, "finish_reason": "stop"},
                {"index": 1, "delta": {}, "finish_reason": "length"},
            ]
        ),
        chunk([], usage=USAGE),
    ]


def _merged(responses: list[adapters_pb2.GenerateResponse]) -> dict[int, dict[str, Any]]:
    """The deltas per choice, concatenated the way a client adds them up."""
    out: dict[int, dict[str, Any]] = {}
    for response in responses:
        for delta in response.deltas:
            choice = out.setdefault(
                delta.choice,
                {"content": "", "reasoning": "", "refusal": "", "logprobs": [], "refusal_logprobs": []},
            )
            choice["content"] += delta.content
            choice["reasoning"] += delta.reasoning
            choice["refusal"] += delta.refusal
            choice["logprobs"] += [
                (lp.token, lp.logprob, lp.token_bytes, len(lp.top_logprobs)) for lp in delta.logprobs
            ]
            choice["refusal_logprobs"] += [(lp.token, lp.logprob) for lp in delta.refusal_logprobs]
            for annotation in delta.annotations:
                choice.setdefault("annotations", []).append(annotation)
            if delta.HasField("audio"):
                choice["audio"] = delta.audio
            for call in delta.tool_calls:
                choice.setdefault("tools", []).append(
                    (call.id, call.type, call.function_name, call.arguments)
                )
            if delta.role:
                choice["role"] = delta.role
            if delta.finish_reason:
                choice["finish"] = delta.finish_reason
    return out


@pytest.mark.parametrize("stream", [False, True])
async def test_every_reply_field_reaches_the_generate_response(suite: Suite, stream: bool) -> None:
    suite.fake.completion = _whole()
    suite.fake.chunks = _chunks()
    request = adapters_pb2.GenerateRequest(
        tenant="acme",
        model="gpt",
        messages=[chat_pb2.ChatMessage(role="user", content="hi")],
        params=chat_pb2.GenerationParams(n=2, logprobs=True, top_logprobs=2),
        stream=stream,
    )
    responses = [r async for r in suite.stub.Generate(request, timeout=10)]
    header = responses[0].header
    assert (header.provider_response_id, header.system_fingerprint, header.service_tier) == (
        "chatcmpl-42",
        "fp_abc",
        "flex",
    )
    completion = responses[-1].completion
    assert completion.finish_reason == adapters_pb2.FINISH_REASON_STOP
    assert list(completion.choice_finish_reasons) == [
        adapters_pb2.FINISH_REASON_STOP,
        adapters_pb2.FINISH_REASON_LENGTH,
    ]
    assert completion.usage == chat_pb2.Usage(
        prompt_tokens=20,
        completion_tokens=30,
        cached_prompt_tokens=4,
        reasoning_tokens=5,
        prompt_audio_tokens=2,
        completion_audio_tokens=6,
        accepted_prediction_tokens=7,
        rejected_prediction_tokens=8,
    )
    choices = _merged(responses)
    first, second = choices[0], choices[1]
    assert first["role"] == second["role"] == "assistant"
    assert (first["content"], first["reasoning"]) == ("Hello", "thinking")
    assert first["logprobs"] == [("Hello", -0.1, b"Hello", 2)]
    assert [(a.type, a.url, a.title, a.start_index, a.end_index) for a in first["annotations"]] == [
        ("url_citation", "https://x.test", "X", 0, 5)
    ]
    audio = first["audio"]
    assert (audio.id, audio.data, audio.transcript, audio.expires_at) == (
        "audio_9",
        AUDIO["data"],
        "hello",
        1900000000,
    )
    assert second["refusal"] == "No." and second["refusal_logprobs"] == [("No.", -0.3)]
    assert second["tools"] == [("c9", "custom", "sql", "SELECT 1")]
    assert (first["finish"], second["finish"]) == ("stop", "length")


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_compatible_servers_reasoning_fields_become_reasoning(suite: Suite, field: str) -> None:
    suite.fake.chunks = [
        {
            "id": "r1",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {field: "step 1; "}}],
        },
        {
            "id": "r1",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {field: "step 2"}}],
        },
        {
            "id": "r1",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": "42"}}],
        },
        {
            "id": "r1",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        },
    ]
    request = adapters_pb2.GenerateRequest(
        tenant="acme", model="gpt", messages=[chat_pb2.ChatMessage(role="user", content="hi")], stream=True
    )
    responses = [r async for r in suite.stub.Generate(request, timeout=10)]
    choice = _merged(responses)[0]
    assert (choice["reasoning"], choice["content"]) == ("step 1; step 2", "42")
    assert responses[0].header.provider_response_id == "r1"
    assert not responses[-1].completion.choice_finish_reasons, "one choice: no per-choice reasons"
