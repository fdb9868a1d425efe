"""Properties of translation: whatever valid typed request is generated, every provider type's encoder puts
each text, image, tool call and tool result into its body or refuses naming a path that exists in the
request; whatever reply a provider sends, every piece of it reaches the batches."""

from __future__ import annotations

import base64
import re
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from atp.common.v1 import chat_pb2
from atp_adapters.providers import ProviderError, ProviderRequest, build_provider
from atp_adapters.providers.base import ProviderBatch
from atp_common.config import HttpProvider

from .fakes.anthropic_checks import check_messages_request
from .fakes.gemini_checks import check_generate_request

PROVIDER_TYPES = ("openai", "azure", "anthropic", "gemini")
PROVIDERS = {
    kind: build_provider(kind, HttpProvider(type=kind, base_url="http://127.0.0.1:9"), lambda _ref: "k")
    for kind in PROVIDER_TYPES
}
Part = chat_pb2.ContentPart
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Marker words: never valid JSON (a provider may parse a tool result), never empty, easy to find.
words = st.from_regex(r"w[a-z0-9]{1,10}", fullmatch=True)
images = st.one_of(
    st.binary(min_size=1, max_size=12).map(lambda b: "data:image/png;base64," + base64.b64encode(b).decode()),
    words.map(lambda w: f"https://img.example/{w}.png"),
)
cache_hints = st.one_of(st.none(), st.sampled_from([chat_pb2.CacheControl(type="ephemeral")]))


@st.composite
def parts(draw: Any, role: str) -> Part:
    kinds = ["text", "image"]
    if role == "user":
        kinds += ["audio", "file"]
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
    elif kind == "refusal":
        part = Part(refusal=draw(words))
    else:
        part = Part(thinking=chat_pb2.ThinkingContent(thinking=draw(words), signature=draw(words)))
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


# Replies.


def drain(batches: list[ProviderBatch]) -> dict[str, Any]:
    """Everything the batches carry, concatenated per field (choice 0 and others alike)."""
    out: dict[str, Any] = {"text": "", "reasoning": "", "signature": "", "redacted": "", "refusal": ""}
    out["calls"] = {}
    out["annotations"] = []
    for batch in batches:
        for delta in batch.deltas:
            out["text"] += delta.content
            out["reasoning"] += delta.reasoning
            out["signature"] += delta.reasoning_signature
            out["redacted"] += delta.redacted_reasoning
            out["refusal"] += delta.refusal
            out["annotations"].extend(a.cited_text for a in delta.annotations)
            for call in delta.tool_calls:
                entry = out["calls"].setdefault((delta.choice, call.index), ["", "", ""])
                entry[0] += call.id
                entry[1] += call.function_name
                entry[2] += call.arguments
    return out


def collapse(kinds: list[str]) -> list[str]:
    return [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k]


def delta_kinds(batches: list[ProviderBatch]) -> list[str]:
    """The kind of each delta in order (each carries one kind of piece besides annotations and refusals)."""
    kinds = []
    for delta in (d for b in batches for d in b.deltas):
        if delta.reasoning or delta.reasoning_signature:
            kinds.append("thinking")
        if delta.redacted_reasoning:
            kinds.append("redacted_thinking")
        if delta.content:
            kinds.append("text")
        if any(c.id for c in delta.tool_calls):
            kinds.append("tool_use")
    return kinds


def run_stream(kind: str, events: list[tuple[bytes, bytes]]) -> list[ProviderBatch]:
    """The batches a stream of these SSE events makes, one network read per event."""
    provider = PROVIDERS[kind]
    state = provider.stream_state(ProviderRequest("model-x", [], chat_pb2.GenerationParams()))
    batches = []
    for name, data in events:
        done = state.event(name, data)
        batches.append(ProviderBatch(state.deltas.take()))
        if done:
            break
    batches.append(state.last_batch(state.deltas.take()))
    return batches


@st.composite
def anthropic_blocks(draw: Any) -> list[dict[str, Any]]:
    blocks = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["text", "thinking", "redacted_thinking", "tool_use"]))
        if kind == "text":
            cites = [{"type": "char_location", "cited_text": w} for w in draw(st.lists(words, max_size=2))]
            blocks.append({"type": "text", "text": draw(words), "citations": cites})
        elif kind == "thinking":
            blocks.append({"type": "thinking", "thinking": draw(words), "signature": draw(words)})
        elif kind == "redacted_thinking":
            blocks.append({"type": "redacted_thinking", "data": draw(words)})
        else:
            blocks.append(
                {"type": "tool_use", "id": draw(words), "name": draw(words), "input": {"a": draw(words)}}
            )
    return blocks


def anthropic_events(blocks: list[dict[str, Any]], stop: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    def event(kind: str, **payload: Any) -> tuple[bytes, bytes]:
        return kind.encode(), orjson.dumps({"type": kind, **payload})

    events = [event("message_start", message={"id": "msg_1", "usage": {"input_tokens": 3}})]
    for index, block in enumerate(blocks):
        kind = block["type"]
        opening = {**block, "text": ""} if kind == "text" else block
        if kind == "tool_use":
            opening = {**block, "input": {}}
        elif kind == "thinking":
            opening = {"type": "thinking", "thinking": "", "signature": ""}
        events.append(event("content_block_start", index=index, content_block={**opening, "citations": None}))
        deltas: list[dict[str, Any]] = []
        if kind == "text":
            deltas = [{"type": "citations_delta", "citation": c} for c in block["citations"]]
            deltas.append({"type": "text_delta", "text": block["text"]})
        elif kind == "thinking":
            deltas = [{"type": "thinking_delta", "thinking": block["thinking"]}]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        elif kind == "tool_use":
            deltas = [{"type": "input_json_delta", "partial_json": orjson.dumps(block["input"]).decode()}]
        events.extend(event("content_block_delta", index=index, delta=d) for d in deltas)
        events.append(event("content_block_stop", index=index))
    events.append(event("message_delta", delta=stop, usage={"output_tokens": 5}))
    events.append(event("message_stop"))
    return events


@SETTINGS
@given(
    blocks=anthropic_blocks(),
    refusal=st.one_of(st.none(), words),
    stream=st.booleans(),
)
def test_every_anthropic_block_reaches_the_batches(
    blocks: list[dict[str, Any]], refusal: str | None, stream: bool
) -> None:
    stop: dict[str, Any] = {"stop_reason": "end_turn", "stop_sequence": None}
    if refusal is not None:
        stop = {
            "stop_reason": "refusal",
            "stop_sequence": None,
            "stop_details": {"type": "refusal", "explanation": refusal},
        }
    if stream:
        batches = run_stream("anthropic", anthropic_events(blocks, stop))
    else:
        message = {"id": "msg_1", "content": blocks, "usage": {"input_tokens": 3, "output_tokens": 5}, **stop}
        batches = [PROVIDERS["anthropic"].decode_full(message)]
    reply = drain(batches)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for block in blocks:
        by_kind.setdefault(block["type"], []).append(block)
    assert reply["text"] == "".join(b["text"] for b in by_kind.get("text", []))
    assert reply["reasoning"] == "".join(b["thinking"] for b in by_kind.get("thinking", []))
    assert reply["signature"] == "".join(b["signature"] for b in by_kind.get("thinking", []))
    assert reply["redacted"] == "".join(b["data"] for b in by_kind.get("redacted_thinking", []))
    assert reply["annotations"] == [c["cited_text"] for b in by_kind.get("text", []) for c in b["citations"]]
    calls = [[b["id"], b["name"], orjson.dumps(b["input"]).decode()] for b in by_kind.get("tool_use", [])]
    assert list(reply["calls"].values()) == calls
    assert reply["refusal"] == (refusal or "")
    # Blocks keep their order: a thinking block after a tool call stays after it.
    assert collapse(delta_kinds(batches)) == collapse([b["type"] for b in blocks])
    assert batches[-1].finish_reason == ("content_filter" if refusal is not None else "stop")
    assert batches[-1].response_id == "msg_1"


@st.composite
def gemini_candidates(draw: Any) -> list[list[dict[str, Any]]]:
    """Per candidate, its parts."""
    candidates = []
    for _ in range(draw(st.integers(1, 3))):
        parts = []
        for _ in range(draw(st.integers(1, 4))):
            kind = draw(st.sampled_from(["text", "thought", "call"]))
            if kind == "text":
                parts.append({"text": draw(words)})
            elif kind == "thought":
                parts.append({"text": draw(words), "thought": True})
            else:
                parts.append({"functionCall": {"name": draw(words), "args": {"a": draw(words)}}})
        candidates.append(parts)
    return candidates


@SETTINGS
@given(candidates=gemini_candidates(), stream=st.booleans())
def test_every_gemini_part_reaches_its_choice(candidates: list[list[dict[str, Any]]], stream: bool) -> None:
    def response(parts_by_index: dict[int, list[dict[str, Any]]], finished: set[int]) -> dict[str, Any]:
        out = []
        for k, parts in parts_by_index.items():
            candidate: dict[str, Any] = {"index": k, "content": {"role": "model", "parts": parts}}
            if k in finished:
                candidate["finishReason"] = "STOP"
            out.append(candidate)
        return {"candidates": out, "responseId": "r1"}

    if stream:
        # One chunk per part, candidates interleaved, each finishing with its own last part.
        events = []
        for step in range(max(len(p) for p in candidates)):
            chunk = {k: [p[step]] for k, p in enumerate(candidates) if step < len(p)}
            finished = {k for k, p in enumerate(candidates) if step == len(p) - 1}
            events.append((b"", orjson.dumps(response(chunk, finished))))
        batches = run_stream("gemini", events)
    else:
        every = set(range(len(candidates)))
        batches = [PROVIDERS["gemini"].decode_full(response(dict(enumerate(candidates)), every))]
    for k, parts in enumerate(candidates):
        texts = "".join(p["text"] for p in parts if "text" in p and not p.get("thought"))
        thoughts = "".join(p["text"] for p in parts if p.get("thought"))
        deltas = [d for b in batches for d in b.deltas if d.choice == k]
        assert "".join(d.content for d in deltas) == texts
        assert "".join(d.reasoning for d in deltas) == thoughts
        calls = [(c.function_name, c.arguments) for d in deltas for c in d.tool_calls]
        expected_calls = [
            (p["functionCall"]["name"], orjson.dumps(p["functionCall"]["args"]).decode())
            for p in parts
            if "functionCall" in p
        ]
        assert calls == expected_calls
        has_calls = bool(expected_calls)
        assert batches[-1].choice_finish_reasons[k] == ("tool_calls" if has_calls else "stop")
    assert batches[-1].response_id == "r1"
