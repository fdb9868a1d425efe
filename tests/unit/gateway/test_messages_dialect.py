"""The Messages dialect's translation: request bodies to GenerateRequest, replies to SDK-valid Messages."""

from __future__ import annotations

import base64
import typing
from typing import Any

import orjson
import pytest
from anthropic.types import Message, RawMessageStreamEvent, message_create_params
from anthropic.types.shared import ErrorResponse

from atp.adapters.v1 import adapters_pb2
from atp.common.v1 import chat_pb2
from atp_common.errors import (
    BudgetExceeded,
    InvalidArgument,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthenticated,
    Unavailable,
)
from atp_gateway.dialects.messages_errors import messages_error_reply
from atp_gateway.dialects.messages_reply import MessagesReply
from atp_gateway.dialects.messages_request import PARAMETERS, parse_messages_request
from tests.support.sdk_models import strict

HEADER = adapters_pb2.GenerateHeader(decision_id="d1", request_id="r1", model="m-1", created=1700000000)


def _parse(**body: Any) -> adapters_pb2.GenerateRequest:
    body.setdefault("model", "auto")
    body.setdefault("max_tokens", 256)
    body.setdefault("messages", [{"role": "user", "content": "Hi"}])
    return parse_messages_request(orjson.dumps(body))[0]


def _refused(body: dict[str, Any]) -> InvalidArgument:
    body.setdefault("model", "auto")
    body.setdefault("max_tokens", 256)
    body.setdefault("messages", [{"role": "user", "content": "Hi"}])
    with pytest.raises(InvalidArgument) as caught:
        parse_messages_request(orjson.dumps(body))
    return caught.value


def test_every_sdk_parameter_has_a_mapping() -> None:
    # The SDK's params omit the sampling parameters the API still takes; ATP accepts those too.
    sdk = set(typing.get_type_hints(message_create_params.MessageCreateParamsBase))
    assert sdk | {"temperature", "top_p", "top_k", "stream"} <= {name for name, _ in PARAMETERS}


def test_system_blocks_and_cache_hints() -> None:
    request = _parse(
        system=[
            {"type": "text", "text": "You are terse."},
            {"type": "text", "text": "Long context", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        ],
        cache_control={"type": "ephemeral"},
    )
    system = request.messages[0]
    assert system.role == "system" and [p.text for p in system.parts] == ["You are terse.", "Long context"]
    assert not system.parts[0].HasField("cache_control")
    assert (system.parts[1].cache_control.type, system.parts[1].cache_control.ttl) == ("ephemeral", "1h")
    assert request.params.cache_control.type == "ephemeral"


def test_user_blocks_of_every_kind() -> None:
    request = _parse(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://img.test/a.png"}},
                    {
                        "type": "document",
                        "title": "T",
                        "context": "C",
                        "citations": {"enabled": True},
                        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
                    },
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": "plain"},
                    },
                ],
            }
        ]
    )
    text, image, image_url, pdf, plain = request.messages[0].parts
    assert text.text == "Look"
    assert image.image.url == "data:image/png;base64,iVBO" and image_url.image.url == "https://img.test/a.png"
    assert (pdf.file.media_type, pdf.file.file_data, pdf.file.title, pdf.file.context) == (
        "application/pdf",
        "JVBE",
        "T",
        "C",
    )
    assert pdf.file.citations is True
    assert base64.b64decode(plain.file.file_data) == b"plain" and plain.file.media_type == "text/plain"


def test_assistant_blocks_and_tool_results() -> None:
    request = _parse(
        messages=[
            {"role": "user", "content": "Go"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "text", "text": "Calling."},
                    {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": 1}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "is_error": True,
                        "content": [{"type": "text", "text": "boom"}],
                        "cache_control": {"type": "ephemeral"},
                    },
                    {"type": "text", "text": "Go on"},
                ],
            },
        ]
    )
    _, assistant, result, failed, follow_up = request.messages
    thinking, redacted, said = assistant.parts
    assert (thinking.thinking.thinking, thinking.thinking.signature) == ("hmm", "sig")
    assert redacted.thinking.redacted_data == "opaque" and said.text == "Calling."
    call = assistant.tool_calls[0]
    assert (call.id, call.function_name, orjson.loads(call.arguments)) == ("toolu_1", "lookup", {"q": 1})
    assert (result.role, result.tool_call_id, result.content, result.is_error) == (
        "tool",
        "toolu_1",
        "42",
        False,
    )
    assert (
        failed.is_error
        and failed.parts[0].text == "boom"
        and failed.parts[0].cache_control.type == "ephemeral"
    )
    assert (follow_up.role, follow_up.parts[0].text) == ("user", "Go on")


def test_parameters_map_to_the_internal_request() -> None:
    request = _parse(
        max_tokens=4096,
        temperature=0.3,
        top_p=0.8,
        top_k=40,
        stop_sequences=["END"],
        metadata={"user_id": "u-7"},
        service_tier="standard_only",
        thinking={"type": "enabled", "budget_tokens": 2048},
        output_config={"format": {"type": "json_schema", "schema": {"type": "object"}}, "effort": "high"},
        tools=[
            {
                "name": "lookup",
                "description": "d",
                "input_schema": {"type": "object"},
                "cache_control": {"type": "ephemeral"},
            }
        ],
        tool_choice={"type": "tool", "name": "lookup", "disable_parallel_tool_use": True},
        stream=True,
    )
    params = request.params
    assert (params.max_tokens, params.temperature, params.top_p, params.top_k) == (4096, 0.3, 0.8, 40)
    assert list(params.stop) == ["END"] and params.user == "u-7" and params.service_tier == "default"
    assert params.reasoning.budget_tokens == 2048 and params.reasoning.include_thoughts
    assert params.reasoning.effort == "high"
    assert params.response_format.type == "json_schema"
    assert orjson.loads(params.response_format.schema_json) == {"type": "object"}
    tool = params.tools[0]
    assert (tool.type, tool.name, tool.description) == ("function", "lookup", "d")
    assert orjson.loads(tool.parameters_json) == {"type": "object"} and tool.cache_control.type == "ephemeral"
    assert (params.tool_choice.mode, params.tool_choice.name) == ("function", "lookup")
    assert params.parallel_tool_calls is False
    assert request.stream and request.include_usage


def test_the_betas_output_format_is_output_config_format_under_its_earlier_name() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    beta = _parse(output_format={"type": "json_schema", "schema": schema})
    current = _parse(output_config={"format": {"type": "json_schema", "schema": schema}})
    assert beta.params.response_format == current.params.response_format
    assert orjson.loads(beta.params.response_format.schema_json) == schema
    counted, _ = parse_messages_request(
        orjson.dumps(
            {
                "model": "auto",
                "messages": [{"role": "user", "content": "Hi"}],
                "output_format": {"type": "json_schema", "schema": schema},
            }
        ),
        counting=True,
    )
    assert counted.params.response_format.type == "json_schema"
    twice = _refused(
        {
            "output_format": {"type": "json_schema", "schema": schema},
            "output_config": {"format": {"type": "json_schema", "schema": schema}},
        }
    )
    assert twice.param == "output_format" and "once" in str(twice)
    # With effort alone in output_config, the beta's format still applies.
    both = _parse(output_config={"effort": "low"}, output_format={"type": "json_schema", "schema": schema})
    assert both.params.reasoning.effort == "low" and both.params.response_format.type == "json_schema"
    assert _refused({"output_format": {"type": "text", "schema": {}}}).param == "output_format.type"


def test_thinking_disabled_and_tool_choice_any() -> None:
    request = _parse(
        thinking={"type": "disabled"}, tools=[{"name": "f", "input_schema": {}}], tool_choice={"type": "any"}
    )
    assert request.params.reasoning.disabled
    assert request.params.tool_choice.mode == "required" and not request.params.HasField(
        "parallel_tool_calls"
    )


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"messages": [{"role": "user", "content": [{"type": "video"}]}]}, "messages[0].content[0].type"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}],
                    }
                ]
            },
            "messages[0].content[0].source.type",
        ),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
        ({"thinking": {"type": "auto"}}, "thinking.type"),
        ({"thinking": {"type": "enabled", "budget_tokens": 4096}}, "thinking.budget_tokens"),
        ({"temperature": 1.5}, "temperature"),
        ({"container": "c1"}, "container"),
        ({"metadata": {"user_id": "u", "other": 1}}, "metadata.other"),
        ({"unknown": True}, "unknown"),
        (
            {"system": [{"type": "text", "text": "x", "cache_control": {"type": "persistent"}}]},
            "system[0].cache_control.type",
        ),
        ({"messages": []}, "messages"),
    ],
)
def test_refusals_name_the_json_path(body: dict[str, Any], param: str) -> None:
    assert _refused(body).param == param


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (InvalidArgument("bad", param="messages[0].content"), 400, "invalid_request_error"),
        (Unauthenticated("no key"), 401, "authentication_error"),
        (NotFound("no model", param="model"), 404, "not_found_error"),
        (PayloadTooLarge("big"), 413, "invalid_request_error"),
        (RateLimited("slow down"), 429, "rate_limit_error"),
        (BudgetExceeded("spent"), 429, "billing_error"),
        (Unavailable("busy"), 529, "overloaded_error"),
    ],
)
def test_errors_have_anthropics_shape(error: Exception, status: int, kind: str) -> None:
    reply = messages_error_reply(error)  # type: ignore[arg-type]
    body = strict(ErrorResponse, orjson.loads(reply.body))
    assert reply.status == status and body.error.type == kind
    if error.param:  # type: ignore[attr-defined]
        assert error.param in body.error.message  # type: ignore[attr-defined]


DELTAS = [
    chat_pb2.Delta(reasoning="Let me think."),
    chat_pb2.Delta(reasoning_signature="sig"),
    chat_pb2.Delta(redacted_reasoning="opaque"),
    chat_pb2.Delta(content="Hel"),
    chat_pb2.Delta(
        content="lo",
        annotations=[
            chat_pb2.Annotation(type="url_citation", url="https://a.test", title="A", cited_text="Hello")
        ],
    ),
    chat_pb2.Delta(
        tool_calls=[chat_pb2.ToolCallDelta(index=0, id="toolu_9", function_name="f", arguments='{"a"')]
    ),
    chat_pb2.Delta(tool_calls=[chat_pb2.ToolCallDelta(index=0, arguments=":1}")]),
]
COMPLETION = adapters_pb2.GenerateCompletion(
    finish_reason=adapters_pb2.FINISH_REASON_TOOL_CALLS,
    usage=chat_pb2.Usage(
        prompt_tokens=100, completion_tokens=7, cached_prompt_tokens=40, cache_write_tokens=10
    ),
)


def test_whole_reply_is_an_sdk_message() -> None:
    body = MessagesReply(stream=False).whole(
        adapters_pb2.GenerateResponse(header=HEADER, deltas=DELTAS, completion=COMPLETION)
    )
    message = strict(Message, orjson.loads(body))
    assert message.id == "msg_d1" and message.model == "m-1" and message.stop_reason == "tool_use"
    thinking, redacted, text, tool = message.content
    assert (thinking.type, thinking.thinking, thinking.signature) == ("thinking", "Let me think.", "sig")
    assert (redacted.type, redacted.data) == ("redacted_thinking", "opaque")
    assert text.text == "Hello" and text.citations[0].url == "https://a.test"
    assert (tool.type, tool.id, tool.name, tool.input) == ("tool_use", "toolu_9", "f", {"a": 1})
    usage = message.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (
        50,
        40,
        10,
    )
    assert usage.output_tokens == 7


def test_stop_sequence_and_refusal() -> None:
    stopped = adapters_pb2.GenerateCompletion(
        finish_reason=adapters_pb2.FINISH_REASON_STOP, stop_sequence="END"
    )
    body = MessagesReply(stream=False).whole(
        adapters_pb2.GenerateResponse(header=HEADER, deltas=[chat_pb2.Delta(content="x")], completion=stopped)
    )
    message = strict(Message, orjson.loads(body))
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "END")
    refused = adapters_pb2.GenerateCompletion(finish_reason=adapters_pb2.FINISH_REASON_STOP)
    body = MessagesReply(stream=False).whole(
        adapters_pb2.GenerateResponse(
            header=HEADER, deltas=[chat_pb2.Delta(refusal="I can't.")], completion=refused
        )
    )
    message = strict(Message, orjson.loads(body))
    assert message.stop_reason == "refusal" and message.content[0].text == "I can't."


def _events(data: bytes) -> list[Any]:
    events = []
    for block in data.split(b"\n\n"):
        if block:
            name, payload = block.split(b"\n", 1)
            event = strict(RawMessageStreamEvent, orjson.loads(payload.removeprefix(b"data: ")))
            assert name == b"event: " + event.type.encode()
            events.append(event)
    return events


def test_stream_is_anthropics_event_sequence() -> None:
    reply = MessagesReply(stream=True)
    data = (
        reply.start(HEADER) + reply.deltas(DELTAS[:4]) + reply.deltas(DELTAS[4:]) + reply.finish(COMPLETION)
    )
    events = _events(data)
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds.count("content_block_start") == kinds.count("content_block_stop") == 4
    deltas = [e.delta.type for e in events if e.type == "content_block_delta"]
    for needed in ("thinking_delta", "signature_delta", "text_delta", "citations_delta", "input_json_delta"):
        assert needed in deltas
    assert events[-2].delta.stop_reason == "tool_use" and events[-2].usage.output_tokens == 7
    # Each block's events carry its index, in order.
    starts = [e.index for e in events if e.type == "content_block_start"]
    assert starts == [0, 1, 2, 3]


def test_broken_stream_ends_with_an_error_event() -> None:
    reply = MessagesReply(stream=True)
    data = reply.start(HEADER) + reply.deltas(DELTAS[3:4]) + reply.broken(Unavailable("gone"))
    payload = data.rsplit(b"\n\n", 2)[-2]
    assert payload.startswith(b"event: error\n")
    error = strict(ErrorResponse, orjson.loads(payload.split(b"data: ", 1)[1]))
    assert error.error.type == "overloaded_error" and error.error.message == "gone"


def test_internal_paths_become_paths_of_the_body() -> None:
    from atp_gateway.dialects.json_fields import MESSAGE_SOURCES, dialect_path
    from atp_gateway.dialects.messages_errors import RENAMES

    request, sources = parse_messages_request(
        orjson.dumps(
            {
                "model": "auto",
                "max_tokens": 10,
                "system": [{"type": "text", "text": "s"}],
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                    },
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
                    },
                    {
                        "role": "user",
                        "content": [
                            {"type": "tool_result", "tool_use_id": "t", "content": "r"},
                            {"type": "text", "text": "c"},
                        ],
                    },
                ],
            }
        )
    )
    assert [m.role for m in request.messages] == ["system", "user", "assistant", "tool", "user"]
    token = MESSAGE_SOURCES.set(tuple(sources))
    try:
        assert dialect_path("messages[0].content[0]", RENAMES) == "system[0]"
        assert dialect_path("messages[1].content[1]", RENAMES) == "messages[0].content[1]"
        assert dialect_path("messages[2].tool_calls[0]", RENAMES) == "messages[1]"
        assert dialect_path("messages[4].content[0]", RENAMES) == "messages[2]"
        assert dialect_path("response_format", RENAMES) == "output_config.format"
        assert dialect_path("parallel_tool_calls", RENAMES) == "tool_choice.disable_parallel_tool_use"
        assert dialect_path("temperature", RENAMES) == "temperature"
    finally:
        MESSAGE_SOURCES.reset(token)
