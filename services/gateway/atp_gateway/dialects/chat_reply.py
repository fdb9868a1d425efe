"""The typed reply as OpenAI chat.completion objects and chat.completion.chunk SSE events."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from atp.adapters.v1 import adapters_pb2
from atp.common.v1 import chat_pb2
from atp_common.errors import AtpError
from atp_gateway.dialects.chat_extra import extras_of, fill, merge_whole
from atp_gateway.errors import openai_error

__all__ = [
    "ChatEncoder",
    "Choice",
    "completion_json",
    "custom_shape",
    "merge_deltas",
    "sse_error",
    "usage_json",
]

FINISH_REASONS = {
    adapters_pb2.FINISH_REASON_UNSPECIFIED: "stop",
    adapters_pb2.FINISH_REASON_STOP: "stop",
    adapters_pb2.FINISH_REASON_LENGTH: "length",
    adapters_pb2.FINISH_REASON_TOOL_CALLS: "tool_calls",
    adapters_pb2.FINISH_REASON_CONTENT_FILTER: "content_filter",
}


def usage_json(usage: chat_pb2.Usage) -> dict[str, Any]:
    """OpenAI's usage object, with every detail the provider reported."""
    prompt_details: dict[str, Any] = {
        "cached_tokens": usage.cached_prompt_tokens,
        "audio_tokens": usage.prompt_audio_tokens,
    }
    if usage.cache_write_tokens:
        # Anthropic's cache_creation_input_tokens; OpenAI has no field for it.
        prompt_details["cache_write_tokens"] = usage.cache_write_tokens
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": {
            "reasoning_tokens": usage.reasoning_tokens,
            "audio_tokens": usage.completion_audio_tokens,
            "accepted_prediction_tokens": usage.accepted_prediction_tokens,
            "rejected_prediction_tokens": usage.rejected_prediction_tokens,
        },
    }


def _logprobs(items: Iterable[chat_pb2.TokenLogprob]) -> list[dict[str, Any]]:
    return [
        {
            "token": item.token,
            "logprob": item.logprob,
            "bytes": list(item.token_bytes) if item.has_bytes else None,
            "top_logprobs": [
                {
                    "token": top.token,
                    "logprob": top.logprob,
                    "bytes": list(top.token_bytes) if top.has_bytes else None,
                }
                for top in item.top_logprobs
            ],
        }
        for item in items
    ]


def _url_citation(annotation: chat_pb2.Annotation) -> dict[str, Any]:
    """A citation with a URL (OpenAI's url_citation, Gemini's citation sources) in OpenAI's shape."""
    return {
        "type": "url_citation",
        "url_citation": {
            "url": annotation.url,
            "title": annotation.title,
            "start_index": annotation.start_index,
            "end_index": annotation.end_index,
        },
    }


def _citation(annotation: chat_pb2.Annotation) -> dict[str, Any]:
    """A citation without a URL (Anthropic's document citations): OpenAI's annotations are URL citations
    only, so these go in the message's `citations`, in the provider's own kind."""
    return {
        "type": annotation.type,
        "title": annotation.title,
        "cited_text": annotation.cited_text,
        "start_index": annotation.start_index,
        "end_index": annotation.end_index,
    }


def _merge_tool_calls(into: dict[int, dict[str, Any]], fragments: Iterable[chat_pb2.ToolCallDelta]) -> None:
    # Fragments with the same index concatenate (OpenAI's streaming rule); ids and names come once.
    for fragment in fragments:
        call = into.get(fragment.index)
        if call is None:
            call = into[fragment.index] = {"index": fragment.index, "function": {}}
        if fragment.id:
            call["id"] = fragment.id
        if fragment.type:
            call["type"] = fragment.type
        function = call["function"]
        if fragment.function_name:
            function["name"] = function.get("name", "") + fragment.function_name
        if fragment.arguments or "arguments" not in function:
            function["arguments"] = function.get("arguments", "") + fragment.arguments


class Choice:
    """One choice's reply as it accumulates (all of it, or one Generate message's share of it)."""

    __slots__ = (
        "annotations",
        "audio",
        "content",
        "finish_reason",
        "logprobs",
        "reasoning",
        "redacted",
        "refusal",
        "refusal_logprobs",
        "signature",
        "tool_calls",
    )

    def __init__(self) -> None:
        self.content: list[str] = []
        self.refusal: list[str] = []
        self.reasoning: list[str] = []
        self.signature = ""
        self.redacted: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.logprobs: list[chat_pb2.TokenLogprob] = []
        self.refusal_logprobs: list[chat_pb2.TokenLogprob] = []
        self.annotations: list[chat_pb2.Annotation] = []
        self.audio: dict[str, Any] | None = None
        self.finish_reason = ""

    def add(self, delta: chat_pb2.Delta) -> None:
        if delta.content:
            self.content.append(delta.content)
        if delta.refusal:
            self.refusal.append(delta.refusal)
        if delta.reasoning:
            self.reasoning.append(delta.reasoning)
        if delta.reasoning_signature:
            self.signature += delta.reasoning_signature
        if delta.redacted_reasoning:
            self.redacted.append(delta.redacted_reasoning)
        if delta.tool_calls:
            _merge_tool_calls(self.tool_calls, delta.tool_calls)
        if delta.logprobs:
            self.logprobs.extend(delta.logprobs)
        if delta.refusal_logprobs:
            self.refusal_logprobs.extend(delta.refusal_logprobs)
        if delta.annotations:
            self.annotations.extend(delta.annotations)
        if delta.HasField("audio"):
            self._add_audio(delta.audio)
        if delta.finish_reason:
            self.finish_reason = delta.finish_reason

    def _add_audio(self, audio: chat_pb2.AudioDelta) -> None:
        if self.audio is None:
            self.audio = {"id": "", "data": "", "expires_at": 0, "transcript": ""}
        if audio.id:
            self.audio["id"] = audio.id
        if audio.expires_at:
            self.audio["expires_at"] = audio.expires_at
        self.audio["data"] += audio.data
        self.audio["transcript"] += audio.transcript

    def logprobs_json(self) -> dict[str, Any] | None:
        if not self.logprobs and not self.refusal_logprobs:
            return None
        return {"content": _logprobs(self.logprobs), "refusal": _logprobs(self.refusal_logprobs)}

    def fields(self, legacy_functions: bool) -> dict[str, Any]:
        """The non-empty fields of a message or a chunk delta (content and refusal go in by the caller)."""
        out: dict[str, Any] = {}
        if self.tool_calls:
            calls = [self.tool_calls[i] for i in sorted(self.tool_calls)]
            if legacy_functions:
                out["function_call"] = calls[0]["function"]
            else:
                out["tool_calls"] = calls
        if self.reasoning:
            out["reasoning_content"] = "".join(self.reasoning)
        if self.signature:
            out["reasoning_signature"] = self.signature
        if self.redacted:
            out["redacted_reasoning"] = self.redacted
        if self.annotations:
            if with_url := [_url_citation(a) for a in self.annotations if a.url]:
                out["annotations"] = with_url
            if without := [_citation(a) for a in self.annotations if not a.url]:
                out["citations"] = without
        if self.audio is not None:
            out["audio"] = self.audio
        return out


def _choices(deltas: Iterable[chat_pb2.Delta], into: dict[int, Choice] | None = None) -> dict[int, Choice]:
    choices: dict[int, Choice] = {} if into is None else into
    for delta in deltas:
        choice = choices.get(delta.choice)
        if choice is None:
            choice = choices[delta.choice] = Choice()
        choice.add(delta)
    return choices


def _finish(reason: str, legacy_functions: bool) -> str:
    return "function_call" if legacy_functions and reason == "tool_calls" else reason


def completion_json(
    reply: adapters_pb2.GenerateResponse, *, legacy_functions: bool = False
) -> dict[str, Any]:
    """The chat.completion object for a whole reply (header, every delta, the completion)."""
    header, completion = reply.header, reply.completion
    choices = _choices(reply.deltas) or {0: Choice()}
    out = []
    for index in sorted(choices):
        choice = choices[index]
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(choice.content) if choice.content or not choice.tool_calls else None,
            "refusal": "".join(choice.refusal) if choice.refusal else None,
        }
        message.update(choice.fields(legacy_functions))
        if "tool_calls" in message:
            for call in message["tool_calls"]:
                del call["index"]
                call.setdefault("type", "function")
                if call["type"] == "custom":
                    function = call.pop("function")
                    call["custom"] = {"name": function.get("name", ""), "input": function["arguments"]}
        reason = choice.finish_reason or _choice_finish(completion, index)
        out.append(
            {
                "index": index,
                "message": message,
                "logprobs": choice.logprobs_json(),
                "finish_reason": _finish(reason, legacy_functions),
            }
        )
    whole = {
        "id": "chatcmpl-" + (header.decision_id or header.request_id),
        "object": "chat.completion",
        "created": header.created,
        "model": header.model,
        "system_fingerprint": header.system_fingerprint or None,
        "service_tier": header.service_tier or None,
        "choices": out,
        "usage": usage_json(completion.usage),
    }
    extras = extras_of(completion)
    if extras is not None:
        merge_whole(whole, extras)
    return whole


def _plain_completion(reply: adapters_pb2.GenerateResponse) -> dict[str, Any]:
    """completion_json for a reply of choice 0's text only, without the per-choice bookkeeping."""
    header, completion = reply.header, reply.completion
    return {
        "id": "chatcmpl-" + (header.decision_id or header.request_id),
        "object": "chat.completion",
        "created": header.created,
        "model": header.model,
        "system_fingerprint": header.system_fingerprint or None,
        "service_tier": header.service_tier or None,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "".join([d.content for d in reply.deltas]),
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": FINISH_REASONS.get(completion.finish_reason, "stop"),
            }
        ],
        "usage": usage_json(completion.usage),
    }


def _choice_finish(completion: adapters_pb2.GenerateCompletion, index: int) -> str:
    if index and index < len(completion.choice_finish_reasons):
        return FINISH_REASONS.get(completion.choice_finish_reasons[index], "stop")
    return FINISH_REASONS.get(completion.finish_reason, "stop")


def merge_deltas(deltas: Sequence[chat_pb2.Delta], legacy_functions: bool = False) -> list[dict[str, Any]]:
    """The chunk choices for the deltas of one Generate message (they arrived together), choice by
    choice; empty when they carry nothing."""
    out = []
    for index, choice in sorted(_choices(deltas).items()):
        delta: dict[str, Any] = {}
        if choice.content:
            delta["content"] = "".join(choice.content)
        if choice.refusal:
            delta["refusal"] = "".join(choice.refusal)
        delta.update(choice.fields(legacy_functions))
        if not delta and not choice.finish_reason and not choice.logprobs:
            continue
        out.append(
            {
                "index": index,
                "delta": delta,
                "logprobs": choice.logprobs_json(),
                "finish_reason": _finish(choice.finish_reason, legacy_functions)
                if choice.finish_reason
                else None,
            }
        )
    return out


def custom_shape(custom: set[tuple[int, int]], choice: int, call: dict[str, Any]) -> None:
    """A streamed custom tool call's fragment in OpenAI's shape (`custom` with `name` and `input`);
    `custom` remembers which (choice, index) are custom, since later fragments do not repeat the type."""
    key = (choice, call["index"])
    if call.get("type") == "custom":
        custom.add(key)
    if key in custom:
        function = call.pop("function")
        call["custom"] = {"input": function["arguments"]}
        if "name" in function:
            call["custom"]["name"] = function["name"]


def sse_error(error: dict[str, Any]) -> bytes:
    """The terminal error event of a stream that broke after output; no [DONE] follows it."""
    return b"data: " + orjson.dumps({"error": error}) + b"\n\n"


class ChatEncoder:
    """The chat dialect's ReplyEncoder: a chat.completion, or chat.completion.chunk events with only the
    choices serialized per event (the envelope is encoded once)."""

    __slots__ = ("_custom", "_envelope", "_finished", "_head", "_include_usage", "_legacy", "_seen", "_tail")

    def __init__(self, include_usage: bool, legacy_functions: bool = False):
        self._include_usage = include_usage
        self._legacy = legacy_functions
        # The stream's state is set up by start(): a non-streamed reply needs none of it.
        self._head = b""
        self._tail = b""
        self._envelope: dict[str, Any] = {}
        self._seen: set[int] = set()
        self._finished: set[int] = set()
        # (choice, tool call index) of custom tool calls: their later fragments do not repeat the type.
        self._custom: set[tuple[int, int]] = set()

    def whole(self, reply: adapters_pb2.GenerateResponse) -> bytes:
        if reply.completion.provider_fields:
            return orjson.dumps(completion_json(reply, legacy_functions=self._legacy))
        for delta in reply.deltas:
            if not _plain(delta):
                return orjson.dumps(completion_json(reply, legacy_functions=self._legacy))
        return orjson.dumps(_plain_completion(reply))

    def start(self, header: adapters_pb2.GenerateHeader) -> bytes:
        """The first event: the assistant role, as OpenAI sends it."""
        self._tail = b',"logprobs":null,"finish_reason":null}]}\n\n'
        self._seen.add(0)
        self._envelope = {
            "id": "chatcmpl-" + (header.decision_id or header.request_id),
            "object": "chat.completion.chunk",
            "created": header.created,
            "model": header.model,
            "system_fingerprint": header.system_fingerprint or None,
            "service_tier": header.service_tier or None,
        }
        self._head = _head(self._envelope, self._include_usage)
        return (
            self._head + b'{"index":0,"delta":{"role":"assistant","content":"","refusal":null}' + self._tail
        )

    def deltas(self, deltas: Sequence[chat_pb2.Delta]) -> bytes:
        # The common case, choice 0's text only, is serialized without building a dict per choice.
        texts = []
        for delta in deltas:
            text = delta.content
            if not _plain_text(delta, len(text)):
                return self._general(deltas)
            texts.append(text)
        text = texts[0] if len(texts) == 1 else "".join(texts)
        if not text:
            return b""
        return self._head + b'{"index":0,"delta":' + orjson.dumps({"content": text}) + self._tail

    def _general(self, deltas: Sequence[chat_pb2.Delta]) -> bytes:
        choices = merge_deltas(deltas, self._legacy)
        if not choices:
            return b""
        for choice in choices:
            self._seen.add(choice["index"])
            if choice["finish_reason"] is not None:
                self._finished.add(choice["index"])
            for call in choice["delta"].get("tool_calls", ()):
                custom_shape(self._custom, choice["index"], call)
        return self._head + orjson.dumps(choices)[1:] + b"}\n\n"

    def finish(self, completion: adapters_pb2.GenerateCompletion) -> bytes:
        """The finish event of every unfinished choice, the usage event when asked for, and [DONE].

        A server's own chunk fields (see chat_extra) ride on these last events, or on one of their own."""
        extras = extras_of(completion)
        envelope, head = self._envelope, self._head
        if extras is not None and extras.get("reply"):
            envelope = dict(envelope)
            fill(envelope, extras["reply"])
            head = _head(envelope, self._include_usage)
        choices: list[dict[str, Any]] = [
            {
                "index": index,
                "delta": {},
                "logprobs": None,
                "finish_reason": _finish(_choice_finish(completion, index), self._legacy),
            }
            for index in sorted(self._seen - self._finished)
        ]
        out = head + orjson.dumps(choices)[1:] + b"}\n\n" if choices else b""
        if self._include_usage:
            usage = {**envelope, "choices": [], "usage": usage_json(completion.usage)}
            if extras is not None:
                fill(usage["usage"], extras.get("usage"))
            out += b"data: " + orjson.dumps(usage) + b"\n\n"
        elif not choices and envelope is not self._envelope:
            out += b"data: " + orjson.dumps({**envelope, "choices": []}) + b"\n\n"
        return out + b"data: [DONE]\n\n"

    def broken(self, error: AtpError) -> bytes:
        return sse_error(openai_error(error)[1])


def _head(envelope: dict[str, Any], include_usage: bool) -> bytes:
    """A chunk event up to its choices: the envelope's closing brace replaced by the choices array,
    built around each delta."""
    usage_null = b',"usage":null' if include_usage else b""
    return b"data: " + orjson.dumps(envelope)[:-1] + usage_null + b',"choices":['


def _plain_text(delta: chat_pb2.Delta, n: int) -> bool:
    """Whether `delta` carries nothing but choice 0's text of `n` characters (almost every streamed chunk).

    Told by one size call: such a delta encodes as its text field alone (a tag byte, the length, the
    bytes), and with ASCII text the byte count is the character count. Any other field, or non-ASCII
    text, makes the size larger and takes the general path (the same output, built field by field).
    """
    size: int = delta.ByteSize()
    if n == 0:
        return size == 0
    return size == 1 + n + (1 if n < 0x80 else 2 if n < 0x4000 else 3 if n < 0x200000 else 4)


def _plain(delta: chat_pb2.Delta) -> bool:
    return _plain_text(delta, len(delta.content))
