"""Generated replies reach Responses and Messages clients whole and streamed, strictly valid for the SDKs."""

from __future__ import annotations

from typing import Any

import orjson
from anthropic.types import Message, RawMessageStreamEvent
from hypothesis import given
from hypothesis import strategies as st
from openai.types.responses import Response, ResponseStreamEvent

from atp.adapters.v1 import adapters_pb2
from atp.common.v1 import chat_pb2
from atp_gateway.dialects.messages_reply import MessagesReply
from atp_gateway.dialects.responses_reply import ResponsesReply
from atp_gateway.dialects.responses_request import parse_responses_request
from tests.support.examples import property_settings
from tests.support.sdk_models import strict

HEADER = adapters_pb2.GenerateHeader(decision_id="d", request_id="r", model="m", created=1)
_TEXT = st.text(min_size=1, max_size=12)


@st.composite
def _deltas(draw: st.DrawFn) -> list[chat_pb2.Delta]:
    """A reply as providers stream it: thinking first, then text and refusal, then tool calls in order."""
    deltas = [chat_pb2.Delta(reasoning=t) for t in draw(st.lists(_TEXT, max_size=3))]
    if deltas and draw(st.booleans()):
        deltas.append(chat_pb2.Delta(reasoning_signature=draw(_TEXT)))
    if draw(st.booleans()):
        deltas.append(chat_pb2.Delta(redacted_reasoning=draw(_TEXT)))
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.integers(0, 4)) == 0:
            deltas.append(chat_pb2.Delta(refusal=draw(_TEXT)))
        else:
            deltas.append(chat_pb2.Delta(content=draw(_TEXT)))
    for index in range(draw(st.integers(0, 2))):
        pieces = draw(st.lists(st.sampled_from(['{"a":', "1", ',"b":"x"', "}"]), min_size=1, max_size=4))
        first = chat_pb2.ToolCallDelta(index=index, id=f"call_{index}", function_name=f"tool_{index}")
        deltas.append(chat_pb2.Delta(tool_calls=[first]))
        deltas += [
            chat_pb2.Delta(tool_calls=[chat_pb2.ToolCallDelta(index=index, arguments=p)]) for p in pieces
        ]
    return deltas


def _expected(deltas: list[chat_pb2.Delta]) -> dict[str, Any]:
    calls: dict[int, dict[str, str]] = {}
    for delta in deltas:
        for fragment in delta.tool_calls:
            call = calls.setdefault(fragment.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += fragment.id
            call["name"] += fragment.function_name
            call["arguments"] += fragment.arguments
    return {
        "text": "".join(d.content for d in deltas),
        "refusal": "".join(d.refusal for d in deltas),
        "reasoning": "".join(d.reasoning for d in deltas),
        "signature": "".join(d.reasoning_signature for d in deltas),
        "redacted": "".join(d.redacted_reasoning for d in deltas),
        "calls": [calls[i] for i in sorted(calls)],
    }


def _sse(data: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(b.split(b"data: ", 1)[1]) for b in data.split(b"\n\n") if b.strip()]


def _completion(deltas: list[chat_pb2.Delta]) -> adapters_pb2.GenerateCompletion:
    reason = adapters_pb2.FINISH_REASON_TOOL_CALLS if any(d.tool_calls for d in deltas) else 1
    return adapters_pb2.GenerateCompletion(finish_reason=reason, usage=chat_pb2.Usage(prompt_tokens=3))


def _responses_content(response: Response) -> dict[str, Any]:
    text = refusal = reasoning = signature = redacted = ""
    calls = []
    for item in response.output:
        if item.type == "message":
            text += "".join(p.text for p in item.content if p.type == "output_text")
            refusal += "".join(p.refusal for p in item.content if p.type == "refusal")
        elif item.type == "reasoning":
            reasoning += "".join(p.text for p in item.content or ())
            sealed = item.encrypted_content or ""
            if sealed.startswith("atp-redacted:"):
                redacted += sealed.removeprefix("atp-redacted:")
            else:
                signature += sealed
        elif item.type == "function_call":
            calls.append({"id": item.call_id, "name": item.name, "arguments": item.arguments})
    return {
        "text": text,
        "refusal": refusal,
        "reasoning": reasoning,
        "signature": signature,
        "redacted": redacted,
        "calls": calls,
    }


@property_settings(150)
@given(_deltas(), st.integers(1, 4))
def test_responses_carry_every_piece(deltas: list[chat_pb2.Delta], batch: int) -> None:
    _, options = parse_responses_request(b'{"model":"m","input":"x","stream":true}')
    expected = _expected(deltas)
    whole = ResponsesReply(options).whole(
        adapters_pb2.GenerateResponse(header=HEADER, deltas=deltas, completion=_completion(deltas))
    )
    assert _responses_content(strict(Response, orjson.loads(whole))) == expected
    streamed = ResponsesReply(options)
    data = streamed.start(HEADER)
    for i in range(0, len(deltas), batch):
        data += streamed.deltas(deltas[i : i + batch])
    events = [strict(ResponseStreamEvent, e) for e in _sse(data + streamed.finish(_completion(deltas)))]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert _responses_content(events[-1].response) == expected
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == expected["text"]
    added = [e.output_index for e in events if e.type == "response.output_item.added"]
    done = sorted(e.output_index for e in events if e.type == "response.output_item.done")
    assert added == done == list(range(len(events[-1].response.output)))


def _messages_content(message: Message) -> dict[str, Any]:
    text = reasoning = signature = redacted = ""
    calls = []
    for block in message.content:
        if block.type == "text":
            text += block.text
        elif block.type == "thinking":
            reasoning += block.thinking
            signature += block.signature
        elif block.type == "redacted_thinking":
            redacted += block.data
        elif block.type == "tool_use":
            calls.append(
                {"id": block.id, "name": block.name, "arguments": orjson.dumps(block.input).decode()}
            )
    return {
        "text": text,
        "reasoning": reasoning,
        "signature": signature,
        "redacted": redacted,
        "calls": calls,
    }


def _input(arguments: str) -> str:
    """The tool input Messages carries for `arguments`: the object, or the text kept whole when it is not one."""
    try:
        value = orjson.loads(arguments) if arguments else {}
    except orjson.JSONDecodeError:
        value = None
    return orjson.dumps(value if isinstance(value, dict) else {"_raw_arguments": arguments}).decode()


def _as_messages(expected: dict[str, Any]) -> dict[str, Any]:
    # Messages has no refusal block: the refusal is text, in reply order.
    calls = [{**c, "arguments": _input(c["arguments"])} for c in expected["calls"]]
    return {**{k: expected[k] for k in ("reasoning", "signature", "redacted")}, "calls": calls}


@property_settings(150)
@given(_deltas(), st.integers(1, 4))
def test_messages_carry_every_piece(deltas: list[chat_pb2.Delta], batch: int) -> None:
    expected = _expected(deltas)
    text = "".join(d.content or d.refusal for d in deltas)
    whole = MessagesReply(stream=False).whole(
        adapters_pb2.GenerateResponse(header=HEADER, deltas=deltas, completion=_completion(deltas))
    )
    got = _messages_content(strict(Message, orjson.loads(whole)))
    assert got.pop("text") == text
    assert got == _as_messages(expected)
    streamed = MessagesReply(stream=True)
    data = streamed.start(HEADER)
    for i in range(0, len(deltas), batch):
        data += streamed.deltas(deltas[i : i + batch])
    events = [strict(RawMessageStreamEvent, e) for e in _sse(data + streamed.finish(_completion(deltas)))]
    starts = [e.index for e in events if e.type == "content_block_start"]
    stops = [e.index for e in events if e.type == "content_block_stop"]
    assert starts == stops == list(range(len(starts)))
    streamed_text = "".join(
        e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )
    assert streamed_text == text
    arguments = "".join(
        e.delta.partial_json
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
    )
    assert arguments == "".join(c["arguments"] for c in expected["calls"])
    assert [e.type for e in events[-2:]] == ["message_delta", "message_stop"]
