"""Properties of reply translation: whatever a provider sends (Anthropic blocks, Gemini candidates, OpenAI
choices), whole or streamed, every text, tool call, reasoning, refusal and annotation reaches the batches."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from atp.common.v1 import chat_pb2
from atp_adapters.providers import ProviderRequest
from atp_adapters.providers.base import ProviderBatch
from tests.support.property_support import PROVIDERS, SETTINGS, words


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


@st.composite
def openai_choices(draw: Any) -> list[dict[str, Any]]:
    """Per choice, what its message holds."""
    choices = []
    for _ in range(draw(st.integers(1, 3))):
        calls = [(f"call_{w}", w, orjson.dumps({"a": w}).decode()) for w in draw(st.lists(words, max_size=2))]
        choices.append(
            {
                "reasoning": draw(st.one_of(st.none(), words)),
                "content": draw(st.one_of(st.none(), words)),
                "refusal": draw(st.one_of(st.none(), words)),
                "calls": calls,
                "urls": [f"https://{w}.example" for w in draw(st.lists(words, max_size=2))],
            }
        )
    return choices


def openai_message(choice: dict[str, Any], whole: bool) -> list[dict[str, Any]]:
    """The message of one choice, whole, or as the deltas that stream it (a tool call's arguments in two)."""
    pieces: list[dict[str, Any]] = []
    if choice["reasoning"]:
        pieces.append({"reasoning_content": choice["reasoning"]})
    if choice["content"]:
        pieces.append({"content": choice["content"]})
    if choice["refusal"]:
        pieces.append({"refusal": choice["refusal"]})
    for k, (call_id, name, args) in enumerate(choice["calls"]):
        head = {
            "index": k,
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": args[:3]},
        }
        pieces.append({"tool_calls": [head]})
        pieces.append({"tool_calls": [{"index": k, "function": {"arguments": args[3:]}}]})
    if choice["urls"]:
        notes = [{"type": "url_citation", "url_citation": {"url": u, "title": "t"}} for u in choice["urls"]]
        pieces.append({"annotations": notes})
    if not whole:
        return pieces
    message: dict[str, Any] = {"role": "assistant", "content": choice["content"]}
    for piece in pieces:
        if "tool_calls" in piece:
            call = piece["tool_calls"][0]
            if "id" in call:
                message.setdefault("tool_calls", []).append({**call, "function": dict(call["function"])})
            else:
                message["tool_calls"][-1]["function"]["arguments"] += call["function"]["arguments"]
        else:
            message.update(piece)
    return [message]


@SETTINGS
@given(choices=openai_choices(), stream=st.booleans(), kind=st.sampled_from(["openai", "azure"]))
def test_every_openai_choice_field_reaches_its_choice(
    choices: list[dict[str, Any]], stream: bool, kind: str
) -> None:
    def finish(choice: dict[str, Any]) -> str:
        return "tool_calls" if choice["calls"] else "stop"

    if stream:
        events = []
        for k, choice in enumerate(choices):
            for piece in openai_message(choice, whole=False):
                chunk = {"id": "c1", "choices": [{"index": k, "delta": piece, "finish_reason": None}]}
                events.append((b"", orjson.dumps(chunk)))
            done = {"id": "c1", "choices": [{"index": k, "delta": {}, "finish_reason": finish(choice)}]}
            events.append((b"", orjson.dumps(done)))
        batches = run_stream(kind, [*events, (b"", b"[DONE]")])
    else:
        body = {
            "id": "c1",
            "choices": [
                {"index": k, "message": openai_message(c, whole=True)[0], "finish_reason": finish(c)}
                for k, c in enumerate(choices)
            ],
        }
        batches = [PROVIDERS[kind].decode_full(body)]
    for k, choice in enumerate(choices):
        deltas = [d for b in batches for d in b.deltas if d.choice == k]
        assert "".join(d.content for d in deltas) == (choice["content"] or "")
        assert "".join(d.reasoning for d in deltas) == (choice["reasoning"] or "")
        assert "".join(d.refusal for d in deltas) == (choice["refusal"] or "")
        assert [a.url for d in deltas for a in d.annotations] == choice["urls"]
        calls: dict[int, list[str]] = {}
        for call in (c for d in deltas for c in d.tool_calls):
            entry = calls.setdefault(call.index, ["", "", ""])
            entry[0] += call.id
            entry[1] += call.function_name
            entry[2] += call.arguments
        assert [tuple(c) for c in calls.values()] == choice["calls"]
    if len(choices) > 1:
        assert batches[-1].choice_finish_reasons == {k: finish(c) for k, c in enumerate(choices)}
    assert batches[-1].finish_reason == finish(choices[0]) and batches[-1].response_id == "c1"
