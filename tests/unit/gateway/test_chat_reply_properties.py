"""Generated typed replies reach chat clients whole and streamed: every text, refusal, reasoning, tool call,
logprob and citation of every choice, in replies the openai SDK's models accept in strict mode."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from atp.adapters.v1 import adapters_pb2
from atp.common.v1 import chat_pb2
from atp_common.errors import Unavailable
from atp_gateway.dialects.chat_reply import ChatEncoder
from tests.support.examples import property_settings

_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)


@st.composite
def _delta(draw: st.DrawFn, choices: int) -> chat_pb2.Delta:
    delta = chat_pb2.Delta(choice=draw(st.integers(0, choices - 1)))
    kind = draw(st.sampled_from(("content", "refusal", "reasoning", "tool", "logprob", "citation", "url")))
    if kind == "content":
        delta.content = draw(_TEXT)
    elif kind == "refusal":
        delta.refusal = draw(_TEXT)
    elif kind == "reasoning":
        delta.reasoning = draw(_TEXT)
    elif kind == "tool":
        index = draw(st.integers(0, 2))
        delta.tool_calls.add(
            index=index, id=f"call_{index}", type="function", function_name=f"f{index}", arguments=draw(_TEXT)
        )
    elif kind == "logprob":
        delta.logprobs.add(token=draw(_TEXT), logprob=-0.5, token_bytes=b"ab", has_bytes=True)
    elif kind == "citation":
        delta.annotations.add(type="char_location", cited_text=draw(_TEXT), start_index=0, end_index=1)
    else:
        delta.annotations.add(type="citation_source", url="https://c.test/" + str(draw(st.integers(0, 9))))
    return delta


@st.composite
def _reply(
    draw: st.DrawFn,
) -> tuple[adapters_pb2.GenerateHeader, list[list[chat_pb2.Delta]], adapters_pb2.GenerateCompletion]:
    choices = draw(st.integers(1, 3))
    batches = draw(st.lists(st.lists(_delta(choices), min_size=1, max_size=4), min_size=1, max_size=5))
    header = adapters_pb2.GenerateHeader(
        decision_id="d", model="m", created=1, system_fingerprint=draw(st.sampled_from(("", "fp")))
    )
    completion = adapters_pb2.GenerateCompletion(
        finish_reason=draw(st.sampled_from((1, 2, 3, 4))),
        usage=chat_pb2.Usage(prompt_tokens=3, completion_tokens=2),
    )
    return header, batches, completion


def _expected(batches: list[list[chat_pb2.Delta]]) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for delta in (d for batch in batches for d in batch):
        choice = out.setdefault(
            delta.choice,
            {
                "content": "",
                "refusal": "",
                "reasoning": "",
                "args": {},
                "tokens": [],
                "cited": [],
                "urls": [],
            },
        )
        choice["content"] += delta.content
        choice["refusal"] += delta.refusal
        choice["reasoning"] += delta.reasoning
        for call in delta.tool_calls:
            # Fragments of one index concatenate, names included (the ToolCallDelta contract).
            name, args = choice["args"].get(call.index, ("", ""))
            choice["args"][call.index] = (name + call.function_name, args + call.arguments)
        choice["tokens"] += [lp.token for lp in delta.logprobs]
        choice["cited"] += [a.cited_text for a in delta.annotations if not a.url]
        choice["urls"] += [a.url for a in delta.annotations if a.url]
    for choice in out.values():
        choice["args"] = [choice["args"][i] for i in sorted(choice["args"])]
    return out


def _seen(messages: dict[int, dict[str, Any]], logprobs: dict[int, list[str]]) -> dict[int, dict[str, Any]]:
    return {
        index: {
            "content": message.get("content") or "",
            "refusal": message.get("refusal") or "",
            "reasoning": message.get("reasoning_content") or "",
            "args": [
                (c["function"]["name"], c["function"]["arguments"]) for c in message.get("tool_calls") or ()
            ],
            "tokens": logprobs.get(index, []),
            "cited": [c["cited_text"] for c in message.get("citations") or ()],
            "urls": [a["url_citation"]["url"] for a in message.get("annotations") or ()],
        }
        for index, message in messages.items()
    }


@property_settings(200)
@given(_reply())
def test_whole_replies_carry_everything_and_validate(reply) -> None:
    header, batches, completion = reply
    message = adapters_pb2.GenerateResponse(header=header, completion=completion)
    for batch in batches:
        message.deltas.extend(batch)
    body = orjson.loads(ChatEncoder(False).whole(message))
    ChatCompletion.model_validate(body, strict=True)
    messages = {c["index"]: c["message"] for c in body["choices"]}
    logprobs = {
        c["index"]: [t["token"] for t in (c["logprobs"] or {}).get("content", [])] for c in body["choices"]
    }
    assert _seen(messages, logprobs) == _expected(batches)


def _merge_chunk(
    messages: dict[int, dict[str, Any]], logprobs: dict[int, list[str]], chunk: dict[str, Any]
) -> None:
    for choice in chunk["choices"]:
        message = messages.setdefault(choice["index"], {})
        delta = choice["delta"]
        for key in ("content", "refusal", "reasoning_content"):
            if delta.get(key):
                message[key] = message.get(key, "") + delta[key]
        for key in ("citations", "annotations"):
            message.setdefault(key, []).extend(delta.get(key) or ())
        calls = message.setdefault("calls", {})
        for call in delta.get("tool_calls") or ():
            merged = calls.setdefault(call["index"], {"function": {"name": "", "arguments": ""}})
            merged["function"]["name"] += call["function"].get("name", "")
            merged["function"]["arguments"] += call["function"].get("arguments", "")
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
        logprobs.setdefault(choice["index"], []).extend(
            t["token"] for t in (choice["logprobs"] or {}).get("content", [])
        )


@property_settings(200)
@given(_reply(), st.booleans())
def test_streamed_replies_carry_everything_and_validate(reply, broken: bool) -> None:
    header, batches, completion = reply
    encoder = ChatEncoder(include_usage=True)
    out = encoder.start(header) + b"".join(encoder.deltas(batch) for batch in batches)
    out += encoder.broken(Unavailable("cut")) if broken else encoder.finish(completion)
    events = [e for e in out.split(b"\n\n") if e]
    assert (events[-1] == b"data: [DONE]") is not broken
    messages: dict[int, dict[str, Any]] = {}
    logprobs: dict[int, list[str]] = {}
    finished: set[int] = set()
    for event in events[: None if broken else -1]:
        chunk = orjson.loads(event.removeprefix(b"data: "))
        if "error" in chunk:
            assert broken and event is events[-1]
            continue
        ChatCompletionChunk.model_validate(chunk, strict=True)
        _merge_chunk(messages, logprobs, chunk)
        finished |= {c["index"] for c in chunk["choices"] if c["finish_reason"]}
    for message in messages.values():
        if not message.get("tool_calls"):
            message.pop("tool_calls", None)
    expected = _expected(batches)
    assert _seen({i: m for i, m in messages.items() if i in expected}, logprobs) == expected
    if not broken:
        assert finished == set(messages)
