"""Properties of request translation: whatever valid typed request is generated, every provider type's
encoder puts each text, image, tool call and tool result into a body its API accepts, or refuses naming a
path that exists in the request. Replies: test_reply_properties.py."""

from __future__ import annotations

import base64
import re
from typing import Any

import orjson
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from atp.common.v1 import chat_pb2
from atp_adapters.providers import ProviderError, ProviderRequest
from tests.fakes.anthropic_checks import check_messages_request
from tests.fakes.gemini_checks import check_generate_request
from tests.support.property_support import PROVIDER_TYPES, PROVIDERS, SETTINGS, words

Part = chat_pb2.ContentPart
images = st.one_of(
    st.binary(min_size=1, max_size=12).map(lambda b: "data:image/png;base64," + base64.b64encode(b).decode()),
    words.map(lambda w: f"https://img.example/{w}.png"),
)
cache_hints = st.one_of(st.none(), st.sampled_from([chat_pb2.CacheControl(type="ephemeral")]))


@st.composite
def parts(draw: Any, role: str) -> Part:
    kinds = ["text", "image"]
    if role == "user":
        kinds += ["audio", "file", "search_result", "text_document"]
    if role == "assistant":
        kinds += ["refusal", "thinking"]
    kind = draw(st.sampled_from(kinds))
    if kind == "text":
        part = Part(text=draw(words))
    elif kind == "image":
        part = Part(image=chat_pb2.ImageContent(url=draw(images)))
    elif kind == "audio":
        part = Part(
            audio=chat_pb2.AudioContent(data="UklGRg==", format=draw(st.sampled_from(["wav", "mp3"])))
        )
    elif kind == "file":
        part = Part(
            file=draw(
                st.sampled_from(
                    [
                        chat_pb2.FileContent(file_data="JVBERg==", media_type="application/pdf"),
                        chat_pb2.FileContent(url="https://docs.example/a.pdf", media_type="application/pdf"),
                        chat_pb2.FileContent(file_id="file-1"),
                    ]
                )
            )
        )
    elif kind == "search_result":
        texts = draw(st.lists(words, min_size=1, max_size=2))
        found = chat_pb2.SearchResultContent(source=draw(words), title=draw(words), content=texts)
        part = Part(search_result=found)
    elif kind == "text_document":
        part = Part(
            file=chat_pb2.FileContent(
                title=draw(words), content=draw(st.lists(words, min_size=1, max_size=2))
            )
        )
    elif kind == "refusal":
        part = Part(refusal=draw(words))
    else:
        part = Part(thinking=chat_pb2.ThinkingContent(thinking=draw(words), signature=draw(words)))
    if kind == "text" and role == "assistant" and draw(st.booleans()):
        # An earlier reply's text sent back with its document citations.
        cited = {"type": "char_location", "cited_text": draw(words), "document_index": 0}
        part.citations_json = orjson.dumps([{**cited, "start_char_index": 0, "end_char_index": 1}])
    hint = draw(cache_hints)
    if hint is not None and kind in ("text", "image"):
        part.cache_control.CopyFrom(hint)
    return part


def content(draw: Any, message: chat_pb2.ChatMessage, role: str) -> None:
    if draw(st.booleans()):
        message.content = draw(words)
    else:
        message.parts.extend(draw(st.lists(parts(role), min_size=1, max_size=3)))


@st.composite
def conversations(draw: Any) -> list[chat_pb2.ChatMessage]:
    """Valid conversations: tool results answer calls made earlier, a user turn comes first."""
    messages: list[chat_pb2.ChatMessage] = []
    if draw(st.booleans()):
        system = chat_pb2.ChatMessage(role=draw(st.sampled_from(["system", "developer"])))
        if draw(st.booleans()):
            system.content = draw(words)
        else:
            system.parts.extend([Part(text=w) for w in draw(st.lists(words, min_size=1, max_size=2))])
        messages.append(system)
    for turn in range(draw(st.integers(1, 3))):
        user = chat_pb2.ChatMessage(role="user")
        content(draw, user, "user")
        messages.append(user)
        assistant = chat_pb2.ChatMessage(role="assistant")
        if draw(st.booleans()):
            content(draw, assistant, "assistant")
        calls = draw(st.lists(st.tuples(words, words), max_size=2, unique_by=lambda c: c[0]))
        for k, (name, value) in enumerate(calls):
            arguments = orjson.dumps({"arg": value}).decode()
            assistant.tool_calls.add(
                id=f"call_{turn}_{k}", type="function", function_name=name, arguments=arguments
            )
        if not assistant.parts and not assistant.content and not calls:
            assistant.content = draw(words)
        messages.append(assistant)
        for k in range(len(calls)):
            result = chat_pb2.ChatMessage(role="tool", tool_call_id=f"call_{turn}_{k}")
            if draw(st.booleans()):
                result.content = draw(words)
            else:
                result.parts.extend(
                    draw(st.lists(st.one_of(words.map(lambda w: Part(text=w))), min_size=1, max_size=2))
                )
                if draw(st.booleans()):
                    result.parts.append(Part(image=chat_pb2.ImageContent(url=draw(images))))
            messages.append(result)
    return messages


@st.composite
def generation(draw: Any) -> chat_pb2.GenerationParams:
    params = chat_pb2.GenerationParams(max_tokens=draw(st.integers(1, 2000)))
    for name in draw(st.lists(words, max_size=2, unique=True)):
        tool = params.tools.add(type="function", name=name, parameters_json=b'{"type":"object"}')
        hint = draw(cache_hints)
        if hint is not None:
            tool.cache_control.CopyFrom(hint)
    if params.tools and draw(st.booleans()):
        params.tool_choice.mode = draw(st.sampled_from(["auto", "none", "required"]))
    return params


def strings_and_objects(value: Any, out: tuple[list[str], list[Any]]) -> tuple[list[str], list[Any]]:
    """Every string and every object (dict) anywhere in a decoded JSON body."""
    if isinstance(value, str):
        out[0].append(value)
    elif isinstance(value, dict):
        out[1].append(value)
        for item in value.values():
            strings_and_objects(item, out)
    elif isinstance(value, list):
        for item in value:
            strings_and_objects(item, out)
    return out


def expected(messages: list[chat_pb2.ChatMessage]) -> list[tuple[str, Any]]:
    """What must reach the body: texts and image data or URLs (as strings), tool call arguments."""
    found: list[tuple[str, Any]] = []
    for message in messages:
        if message.content:
            found.append(("text", message.content))
        for part in message.parts:
            kind = part.WhichOneof("kind")
            if kind in ("text", "refusal"):
                found.append(("text", getattr(part, kind)))
            elif kind == "image":
                url = part.image.url
                found.append(("text", url.partition(",")[2] if url.startswith("data:") else url))
            elif kind == "search_result":
                found += [("text", text) for text in part.search_result.content]
                found.append(("text", part.search_result.title))
            elif kind == "file":
                found += [("text", text) for text in part.file.content]
            if kind == "text" and part.citations_json:
                found += [("text", c["cited_text"]) for c in orjson.loads(part.citations_json)]
        for call in message.tool_calls:
            found.append(("text", call.function_name))
            found.append(("arguments", call.arguments))
    return found


_PATH = re.compile(r"^messages\[(\d+)\](?:\.(content|tool_calls)\[(\d+)\])?(?:\..*)?$")


def path_exists(path: str, messages: list[chat_pb2.ChatMessage], params: chat_pb2.GenerationParams) -> bool:
    """Whether a refusal's JSON path names something the request has."""
    match = _PATH.match(path)
    if match is None:
        tool = re.match(r"^tools\[(\d+)\]", path)
        return bool(tool and int(tool.group(1)) < len(params.tools)) or path in (
            "tool_choice",
            "cache_control",
        )
    index, field, item = match.groups()
    if int(index) >= len(messages):
        return False
    message = messages[int(index)]
    if field == "content":
        return int(item) < len(message.parts)
    if field == "tool_calls":
        return int(item) < len(message.tool_calls)
    return True


@pytest.mark.parametrize("kind", PROVIDER_TYPES)
@SETTINGS
@given(messages=conversations(), params=generation())
def test_every_input_reaches_the_body_or_is_refused_by_its_path(
    kind: str, messages: list[chat_pb2.ChatMessage], params: chat_pb2.GenerationParams
) -> None:
    request = ProviderRequest("model-x", messages, params, stream=False)
    try:
        body = orjson.loads(PROVIDERS[kind].encode(request))
    except ProviderError as exc:
        event("refused")
        assert exc.kind == "unsupported" and exc.param, exc
        assert path_exists(exc.param, messages, params), (exc.param, exc.message)
        return
    event("encoded")
    strings, objects = strings_and_objects(body, ([], []))
    for what, value in expected(messages):
        if what == "text":
            assert any(value in s for s in strings), (kind, value)
        else:  # arguments: as the JSON text (OpenAI) or as the object it encodes (the others)
            assert value in strings or orjson.loads(value) in objects, (kind, value)
    # The body is one the provider's API accepts (the fakes' copies of its checks).
    if kind == "anthropic":
        check_messages_request(body)
    if kind == "gemini":
        check_generate_request(body)
    if kind == "anthropic":
        hints = sum(p.HasField("cache_control") for m in messages for p in m.parts)
        hints += sum(t.HasField("cache_control") for t in params.tools)
        assert orjson.dumps(body).count(b'"cache_control"') == hints
