"""Generated valid chat requests (mixed roles, part types and tools) reach the typed request whole: every
text, image, audio, file, tool call and tool result of the input is in it, in order."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from atp.common.v1 import chat_pb2
from atp_gateway.dialects.chat import parse
from tests.support.examples import property_settings

_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=10)
_NAME = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True)
_TEXT_PART = st.builds(lambda t: {"type": "text", "text": t}, _TEXT)
_USER_PART = st.one_of(
    _TEXT_PART,
    st.builds(lambda n: {"type": "image_url", "image_url": {"url": f"https://i.test/{n}.png"}}, _NAME),
    st.builds(lambda n: {"type": "input_audio", "input_audio": {"data": n + "==", "format": "wav"}}, _NAME),
    st.builds(lambda n: {"type": "file", "file": {"file_id": "file-" + n}}, _NAME),
)


def _content(parts: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[Any]:
    return st.one_of(_TEXT, st.lists(parts, min_size=1, max_size=3))


_CALL = st.builds(
    lambda i, n, a: {"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": a}},
    st.integers(0, 99),
    _NAME,
    _TEXT,
)
_MESSAGE = st.one_of(
    st.builds(
        lambda r, c: {"role": r, "content": c}, st.sampled_from(("system", "developer")), _content(_TEXT_PART)
    ),
    st.builds(lambda c: {"role": "user", "content": c}, _content(_USER_PART)),
    st.builds(lambda c: {"role": "assistant", "content": c}, _TEXT),
    st.builds(
        lambda calls: {"role": "assistant", "tool_calls": calls}, st.lists(_CALL, min_size=1, max_size=2)
    ),
    st.builds(
        lambda i, c: {"role": "tool", "tool_call_id": f"call_{i}", "content": c},
        st.integers(0, 99),
        _content(_TEXT_PART),
    ),
)
_TOOL = st.builds(
    lambda n: {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}, _NAME
)


def _pieces_in(raw: dict[str, Any]) -> list[Any]:
    """What the client sent in one message, as comparable pieces."""
    content = raw.get("content")
    pieces: list[Any] = []
    if isinstance(content, str):
        pieces.append(("text", content))
    for part in content if isinstance(content, list) else ():
        kind = part["type"]
        value = {
            "text": lambda p: p["text"],
            "image_url": lambda p: p["image_url"]["url"],
            "input_audio": lambda p: p["input_audio"]["data"],
            "file": lambda p: p["file"]["file_id"],
        }[kind](part)
        pieces.append((kind, value))
    pieces += [
        ("call", c["id"], c["function"]["name"], c["function"]["arguments"])
        for c in raw.get("tool_calls") or ()
    ]
    if raw["role"] == "tool":
        pieces.append(("result_for", raw["tool_call_id"]))
    return pieces


def _pieces_out(message: chat_pb2.ChatMessage) -> list[Any]:
    pieces: list[Any] = []
    if not message.parts and (
        message.content or message.role not in ("assistant",) or not message.tool_calls
    ):
        pieces.append(("text", message.content))
    for part in message.parts:
        kind = part.WhichOneof("kind")
        value = {
            "text": part.text,
            "image": part.image.url,
            "audio": part.audio.data,
            "file": part.file.file_id,
        }[kind]
        pieces.append(({"image": "image_url", "audio": "input_audio"}.get(kind, kind), value))
    pieces += [("call", c.id, c.function_name, c.arguments) for c in message.tool_calls]
    if message.role == "tool":
        pieces.append(("result_for", message.tool_call_id))
    return pieces


@property_settings(300)
@given(
    st.lists(_MESSAGE, min_size=1, max_size=6),
    st.lists(_TOOL, max_size=3, unique_by=lambda t: t["function"]["name"]),
)
def test_every_piece_of_the_input_reaches_the_typed_request(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]]
) -> None:
    body: dict[str, Any] = {"model": "auto", "messages": messages}
    if tools:
        body["tools"] = tools
    request, _ = parse(orjson.dumps(body), None)  # type: ignore[arg-type]
    assert [m.role for m in request.messages] == [m["role"] for m in messages]
    for raw, typed in zip(messages, request.messages, strict=True):
        assert _pieces_out(typed) == _pieces_in(raw), raw
    assert [t.name for t in request.params.tools] == [t["function"]["name"] for t in tools]
    for raw_tool, typed_tool in zip(tools, request.params.tools, strict=True):
        assert orjson.loads(typed_tool.parameters_json) == raw_tool["function"]["parameters"]
