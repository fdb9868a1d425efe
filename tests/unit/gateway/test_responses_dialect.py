"""The Responses dialect's translation: request bodies to GenerateRequest, replies to SDK-valid Responses."""

from __future__ import annotations

import typing
from typing import Any

import orjson
import pytest
from openai.types.responses import Response, ResponseStreamEvent, response_create_params

from atp.adapters.v1 import adapters_pb2
from atp.common.v1 import chat_pb2
from atp_common.errors import InvalidArgument, Unavailable
from atp_gateway.dialects.responses_reply import ResponsesReply
from atp_gateway.dialects.responses_request import PARAMETERS, parse_responses_request
from tests.support.sdk_models import strict

HEADER = adapters_pb2.GenerateHeader(decision_id="d1", request_id="r1", model="m-1", created=1700000000)


def _parse(**body: Any) -> adapters_pb2.GenerateRequest:
    body.setdefault("model", "auto")
    return parse_responses_request(orjson.dumps(body))[0]


def _refused(body: dict[str, Any]) -> InvalidArgument:
    body.setdefault("model", "auto")
    with pytest.raises(InvalidArgument) as caught:
        parse_responses_request(orjson.dumps(body))
    return caught.value


def test_every_sdk_parameter_has_a_mapping() -> None:
    # A new SDK release that adds a parameter fails here until ATP says what it does with it.
    sdk = set(typing.get_type_hints(response_create_params.ResponseCreateParamsBase)) | {"stream"}
    assert sdk == {name for name, _ in PARAMETERS}


def test_string_input_and_instructions() -> None:
    request = _parse(input="Hello", instructions="Be brief.", max_output_tokens=64, temperature=0.5)
    assert [(m.role, m.content) for m in request.messages] == [("system", "Be brief."), ("user", "Hello")]
    assert request.params.max_tokens == 64
    assert request.params.temperature == 0.5
    assert not request.stream


def test_items_become_one_conversation() -> None:
    request = _parse(
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Look", "prompt_cache_breakpoint": {"mode": "explicit"}},
                    {"type": "input_image", "image_url": "https://img.test/a.png", "detail": "low"},
                    {
                        "type": "input_file",
                        "file_data": "data:application/pdf;base64,QQ==",
                        "filename": "a.pdf",
                    },
                    {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}},
                ],
            },
            {
                "type": "reasoning",
                "id": "rs_1",
                "summary": [],
                "encrypted_content": "sig-1",
                "content": [{"type": "reasoning_text", "text": "thinking"}],
            },
            {
                "type": "message",
                "role": "assistant",
                "id": "msg_1",
                "status": "completed",
                "content": [{"type": "output_text", "text": "Calling.", "annotations": []}],
            },
            {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": '{"q":1}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "42"},
            {
                "type": "function_call_output",
                "call_id": "call_2",
                "output": [{"type": "input_text", "text": "part"}],
            },
        ]
    )
    user, assistant, tool, tool_parts = request.messages
    assert [p.WhichOneof("kind") for p in user.parts] == ["text", "image", "file", "audio"]
    assert user.parts[0].cache_control.type == "explicit"
    assert user.parts[1].image.url == "https://img.test/a.png" and user.parts[1].image.detail == "low"
    assert user.parts[2].file.filename == "a.pdf"
    assert user.parts[3].audio.format == "wav"
    assert assistant.parts[0].thinking.thinking == "thinking"
    assert assistant.parts[0].thinking.signature == "sig-1"
    assert assistant.parts[1].text == "Calling."
    assert (assistant.tool_calls[0].id, assistant.tool_calls[0].arguments) == ("call_1", '{"q":1}')
    assert (tool.role, tool.tool_call_id, tool.content) == ("tool", "call_1", "42")
    assert tool_parts.parts[0].text == "part"


def test_parameters_map_to_the_internal_request() -> None:
    request = _parse(
        input="x",
        tools=[
            {
                "type": "function",
                "name": "f",
                "description": "d",
                "parameters": {"type": "object"},
                "strict": True,
            },
            {"type": "custom", "name": "g", "format": {"type": "text"}},
        ],
        tool_choice={"type": "function", "name": "f"},
        parallel_tool_calls=False,
        text={
            "format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True},
            "verbosity": "low",
        },
        reasoning={"effort": "high", "summary": "auto"},
        metadata={"team": "a"},
        user="u-1",
        safety_identifier="s-1",
        service_tier="flex",
        top_p=0.9,
        top_logprobs=3,
        include=["message.output_text.logprobs", "reasoning.encrypted_content"],
        prompt_cache_key="k",
        store=False,
        stream=True,
    )
    params = request.params
    assert [(t.type, t.name) for t in params.tools] == [("function", "f"), ("custom", "g")]
    assert orjson.loads(params.tools[0].parameters_json) == {"type": "object"} and params.tools[0].strict
    assert (params.tool_choice.mode, params.tool_choice.name) == ("function", "f")
    assert params.parallel_tool_calls is False
    assert params.response_format.type == "json_schema" and params.response_format.name == "out"
    assert params.verbosity == "low"
    assert params.reasoning.effort == "high" and params.reasoning.include_thoughts
    assert params.reasoning.display == "summarized"  # Claude shows it whatever its default
    assert dict(params.metadata) == {"team": "a"}
    assert (params.user, params.safety_identifier, params.service_tier) == ("u-1", "s-1", "flex")
    assert params.logprobs and params.top_logprobs == 3
    assert params.prompt_cache_key == "k" and params.store is False
    assert request.stream and request.include_usage


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x", "previous_response_id": "resp_1"}, "previous_response_id"),
        ({"input": "x", "store": True}, "store"),
        ({"input": "x", "conversation": "conv_1"}, "conversation"),
        ({"input": "x", "background": True}, "background"),
        (
            {"input": "x", "tools": [{"type": "function", "name": "f"}, {"type": "web_search"}]},
            "tools[1].type",
        ),
        ({"input": "x", "tool_choice": {"type": "file_search"}}, "tool_choice.type"),
        ({"input": "x", "unknown": 1}, "unknown"),
        ({"input": [{"role": "user", "content": [{"type": "input_video"}]}]}, "input[0].content[0].type"),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
        ({"input": [{"role": "user", "content": "x", "extra": 1}]}, "input[0].extra"),
        ({"input": "x", "temperature": "hot"}, "temperature"),
        ({"input": "x", "max_output_tokens": 0}, "max_output_tokens"),
        ({"input": "x", "include": ["file_search_call.results"]}, "include[0]"),
        ({"input": "x", "truncation": "auto"}, "truncation"),
        ({"input": 3}, "input"),
        ({"input": "x", "text": {"format": {"type": "json_schema", "schema": {}}}}, "text.format.name"),
        (
            {
                "input": "x",
                "tools": [{"type": "function", "name": "f"}],
                "tool_choice": {"type": "function", "name": "g"},
            },
            "tool_choice.name",
        ),
    ],
)
def test_refusals_name_the_json_path(body: dict[str, Any], param: str) -> None:
    assert _refused(body).param == param


def test_store_refusal_says_why() -> None:
    assert "does not store responses" in _refused({"input": "x", "store": True}).message


def _reply(stream: bool) -> tuple[ResponsesReply, list[Any]]:
    _, options = parse_responses_request(
        orjson.dumps(
            {
                "model": "auto",
                "input": "x",
                "stream": stream,
                "instructions": "i",
                "tools": [{"type": "function", "name": "f", "parameters": {}}],
                "metadata": {"a": "b"},
            }
        )
    )
    reply = ResponsesReply(options)
    deltas = [
        chat_pb2.Delta(reasoning="Let me think."),
        chat_pb2.Delta(reasoning_signature="sig"),
        chat_pb2.Delta(
            content="Hel",
            logprobs=[chat_pb2.TokenLogprob(token="Hel", logprob=-0.5, token_bytes=b"Hel", has_bytes=True)],
        ),
        chat_pb2.Delta(
            content="lo",
            annotations=[
                chat_pb2.Annotation(
                    type="url_citation", url="https://a.test", title="A", start_index=0, end_index=5
                )
            ],
        ),
        chat_pb2.Delta(refusal="No."),
        chat_pb2.Delta(
            tool_calls=[chat_pb2.ToolCallDelta(index=0, id="call_9", function_name="f", arguments='{"a"')]
        ),
        chat_pb2.Delta(tool_calls=[chat_pb2.ToolCallDelta(index=0, arguments=":1}")]),
        chat_pb2.Delta(redacted_reasoning="opaque"),
    ]
    return reply, deltas


COMPLETION = adapters_pb2.GenerateCompletion(
    finish_reason=adapters_pb2.FINISH_REASON_TOOL_CALLS,
    usage=chat_pb2.Usage(
        prompt_tokens=10,
        completion_tokens=7,
        cached_prompt_tokens=4,
        reasoning_tokens=3,
        cache_write_tokens=2,
    ),
)


def test_whole_reply_is_an_sdk_response() -> None:
    reply, deltas = _reply(stream=False)
    body = reply.whole(adapters_pb2.GenerateResponse(header=HEADER, deltas=deltas, completion=COMPLETION))
    response = strict(Response, orjson.loads(body))
    assert response.id == "resp_d1" and response.model == "m-1" and response.status == "completed"
    assert response.output_text == "Hello"
    reasoning, message, call, redacted = response.output
    assert reasoning.type == "reasoning" and reasoning.content[0].text == "Let me think."
    assert reasoning.encrypted_content == "sig"
    assert message.type == "message"
    text, refusal = message.content
    assert text.type == "output_text" and text.annotations[0].url == "https://a.test"
    assert text.logprobs[0].bytes == list(b"Hel")
    assert refusal.type == "refusal" and refusal.refusal == "No."
    assert (call.type, call.call_id, call.name, call.arguments) == ("function_call", "call_9", "f", '{"a":1}')
    assert redacted.encrypted_content == "atp-redacted:opaque"
    assert response.usage.input_tokens_details.cached_tokens == 4
    assert response.usage.input_tokens_details.cache_write_tokens == 2
    assert response.usage.output_tokens_details.reasoning_tokens == 3
    assert response.instructions == "i" and response.metadata == {"a": "b"}


def test_redacted_reasoning_round_trips() -> None:
    request = _parse(
        input=[
            {"type": "reasoning", "id": "rs", "summary": [], "encrypted_content": "atp-redacted:opaque"},
            {"role": "user", "content": "go on"},
        ]
    )
    assert request.messages[0].parts[0].thinking.redacted_data == "opaque"


def _events(data: bytes) -> list[Any]:
    events = []
    for block in data.split(b"\n\n"):
        if block:
            name, payload = block.split(b"\n", 1)
            event = strict(ResponseStreamEvent, orjson.loads(payload.removeprefix(b"data: ")))
            assert name == b"event: " + event.type.encode()
            events.append(event)
    return events


def test_stream_events_are_sdk_events_in_order() -> None:
    reply, deltas = _reply(stream=True)
    data = (
        reply.start(HEADER) + reply.deltas(deltas[:4]) + reply.deltas(deltas[4:]) + reply.finish(COMPLETION)
    )
    events = _events(data)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    for needed in (
        "response.reasoning_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.output_text.annotation.added",
        "response.refusal.delta",
        "response.content_part.done",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
    ):
        assert needed in kinds
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Hello"
    added = [e.item.type for e in events if e.type == "response.output_item.added"]
    done = [e.item.type for e in events if e.type == "response.output_item.done"]
    assert sorted(added) == sorted(done) == ["function_call", "message", "reasoning", "reasoning"]
    assert events[-1].response.output_text == "Hello"


def test_length_makes_an_incomplete_response() -> None:
    reply, deltas = _reply(stream=True)
    completion = adapters_pb2.GenerateCompletion(finish_reason=adapters_pb2.FINISH_REASON_LENGTH)
    events = _events(reply.start(HEADER) + reply.deltas(deltas[2:3]) + reply.finish(completion))
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"


def test_broken_stream_ends_failed() -> None:
    reply, deltas = _reply(stream=True)
    events = _events(reply.start(HEADER) + reply.deltas(deltas[2:3]) + reply.broken(Unavailable("gone")))
    assert [e.type for e in events[-2:]] == ["error", "response.failed"]
    assert events[-1].response.error.message == "gone"


def test_an_image_without_detail_is_served_at_the_default_detail() -> None:
    # OpenAI's own examples send input_image without `detail` (it defaults to auto); so must ATP.
    request = _parse(
        input=[{"role": "user", "content": [{"type": "input_image", "image_url": "https://img.test/a.png"}]}]
    )
    (image,) = request.messages[0].parts
    assert image.image.url == "https://img.test/a.png" and image.image.detail == ""


def test_a_call_resumed_after_the_next_began_keeps_its_whole_arguments() -> None:
    # No provider interleaves calls; if one did, the done events are early but the response is whole.
    reply, _ = _reply(stream=True)
    tool = chat_pb2.ToolCallDelta
    deltas = [
        chat_pb2.Delta(tool_calls=[tool(index=0, id="call_1", function_name="f", arguments='{"a"')]),
        chat_pb2.Delta(tool_calls=[tool(index=1, id="call_2", function_name="f", arguments="{}")]),
        chat_pb2.Delta(tool_calls=[tool(index=0, arguments=":1}")]),
    ]
    events = _events(reply.start(HEADER) + reply.deltas(deltas) + reply.finish(COMPLETION))
    output = events[-1].response.output
    assert [(item.call_id, item.arguments) for item in output] == [("call_1", '{"a":1}'), ("call_2", "{}")]


@pytest.mark.parametrize(
    ("form", "param"),
    [
        ({"type": "grammar", "syntax": "lark"}, "tools[0].format.definition"),
        ({"type": "grammar", "syntax": "peg", "definition": "x"}, "tools[0].format.syntax"),
        ({"type": "json"}, "tools[0].format.type"),
        ({"type": "text", "extra": 1}, "tools[0].format.extra"),
    ],
)
def test_a_custom_tool_format_is_checked_by_path(form: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        _parse(input="x", tools=[{"type": "custom", "name": "g", "format": form}])
    assert caught.value.param == param
