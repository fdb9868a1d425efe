"""OpenAI requests to Generate calls, and Generate replies back to OpenAI completions, chunks and SSE bytes."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from atp.adapters.v1 import adapters_pb2
from atp.common.v1 import chat_pb2
from atp_common.errors import AtpError, InvalidArgument
from atp_gateway.errors import openai_error

__all__ = [
    "CompletionBuilder",
    "SseEncoder",
    "atp_error_event",
    "merge_deltas",
    "sse_error",
    "to_generate_request",
    "usage_json",
]

_FINISH_REASONS = {
    adapters_pb2.FINISH_REASON_UNSPECIFIED: "stop",
    adapters_pb2.FINISH_REASON_STOP: "stop",
    adapters_pb2.FINISH_REASON_LENGTH: "length",
    adapters_pb2.FINISH_REASON_TOOL_CALLS: "tool_calls",
    adapters_pb2.FINISH_REASON_CONTENT_FILTER: "content_filter",
}
_OPTIONAL_PARAMS = ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty")
_JSON_PARAMS = (
    ("tools", "tools_json"),
    ("tool_choice", "tool_choice_json"),
    ("response_format", "response_format_json"),
)
_NEEDS_CONTENT = frozenset(("system", "developer", "user"))


def _dump(value: Any) -> bytes:
    """JSON for a pass-through value; orjson, or the standard library for integers beyond 64 bits."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _message(index: int, raw: dict[str, Any]) -> chat_pb2.ChatMessage:
    role = raw["role"]
    content = raw.get("content")
    message = chat_pb2.ChatMessage(role=role)
    if isinstance(content, str):
        message.content = content
    elif content is not None:
        message.content_parts_json = _dump(content)
    elif role in _NEEDS_CONTENT:
        raise InvalidArgument(
            f"Missing required parameter: 'messages[{index}].content'.", param=f"messages[{index}].content"
        )
    if name := raw.get("name"):
        message.name = name
    if role == "tool":
        tool_call_id = raw.get("tool_call_id")
        if not tool_call_id:
            raise InvalidArgument(
                f"Missing required parameter: 'messages[{index}].tool_call_id'.",
                param=f"messages[{index}].tool_call_id",
            )
        message.tool_call_id = tool_call_id
    if tool_calls := raw.get("tool_calls"):
        if role != "assistant":
            raise InvalidArgument(
                "Only assistant messages carry tool_calls.", param=f"messages[{index}].tool_calls"
            )
        message.tool_calls.extend(
            chat_pb2.ToolCall(
                id=call["id"],
                type=call.get("type", "function"),
                function_name=call["function"]["name"],
                arguments=call["function"]["arguments"],
            )
            for call in tool_calls
        )
    elif role == "assistant" and content is None:
        raise InvalidArgument(
            f"Assistant message {index} needs content or tool_calls.", param=f"messages[{index}].content"
        )
    return message


def to_generate_request(
    body: Mapping[str, Any], *, tenant: str, request_id: str, stream: bool, key_id: str = ""
) -> adapters_pb2.GenerateRequest:
    """The Generate call for a validated chat request (see schemas.ChatCompletionRequest).

    `stream` is passed separately because the WebSocket streams whatever the body says. `key_id` names
    the API key that made the request (never the key itself), for its own limits.
    """
    n = body.get("n")
    if n is not None and n != 1:
        raise InvalidArgument("ATP returns one choice per request: 'n' must be 1.", param="n")
    params = chat_pb2.GenerationParams()
    for name in _OPTIONAL_PARAMS:
        value = body.get(name)
        if value is not None:
            setattr(params, name, value)
    max_tokens = body.get("max_tokens")
    max_completion_tokens = body.get("max_completion_tokens")
    if max_tokens is not None and max_completion_tokens is not None:
        raise InvalidArgument(
            "Set either 'max_tokens' or 'max_completion_tokens', not both.", param="max_completion_tokens"
        )
    if (limit := max_completion_tokens if max_tokens is None else max_tokens) is not None:
        params.max_tokens = limit
    stop = body.get("stop")
    if stop is not None:
        params.stop.extend((stop,) if isinstance(stop, str) else stop)
    if user := body.get("user"):
        params.user = user
    for name, field in _JSON_PARAMS:
        value = body.get(name)
        if value is not None:
            setattr(params, field, _dump(value))
    if body.get("tool_choice") is not None and not body.get("tools"):
        raise InvalidArgument("'tool_choice' is only allowed when 'tools' are given.", param="tool_choice")
    stream_options = body.get("stream_options")
    if stream_options is not None and not stream:
        raise InvalidArgument(
            "'stream_options' is only allowed when 'stream' is true.", param="stream_options"
        )
    return adapters_pb2.GenerateRequest(
        request_id=request_id,
        tenant=tenant,
        key_id=key_id,
        model=body["model"],
        messages=[_message(i, m) for i, m in enumerate(body["messages"])],
        params=params,
        stream=stream,
        include_usage=bool(stream_options and stream_options.get("include_usage")),
    )


def usage_json(usage: chat_pb2.Usage) -> dict[str, Any]:
    """OpenAI's usage object."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_prompt_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
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


def merge_deltas(deltas: Iterable[chat_pb2.Delta]) -> dict[str, Any] | None:
    """One OpenAI chunk delta for the deltas of one Generate message (they arrived together), or None."""
    content: list[str] = []
    tool_calls: dict[int, dict[str, Any]] = {}
    for delta in deltas:
        if delta.content:
            content.append(delta.content)
        if delta.tool_calls:
            _merge_tool_calls(tool_calls, delta.tool_calls)
    if not content and not tool_calls:
        return None
    merged: dict[str, Any] = {}
    if content:
        merged["content"] = content[0] if len(content) == 1 else "".join(content)
    if tool_calls:
        merged["tool_calls"] = [tool_calls[i] for i in sorted(tool_calls)]
    return merged


class CompletionBuilder:
    """Collects a Generate reply into one OpenAI chat.completion."""

    __slots__ = ("_content", "_tool_calls", "completion", "header")

    def __init__(self, header: adapters_pb2.GenerateHeader):
        self.header = header
        self.completion: adapters_pb2.GenerateCompletion | None = None
        self._content: list[str] = []
        self._tool_calls: dict[int, dict[str, Any]] = {}

    def add(self, response: adapters_pb2.GenerateResponse) -> None:
        """Take the deltas and the completion of one message."""
        for delta in response.deltas:
            if delta.content:
                self._content.append(delta.content)
            if delta.tool_calls:
                _merge_tool_calls(self._tool_calls, delta.tool_calls)
        if response.HasField("completion"):
            self.completion = response.completion

    def result(self) -> dict[str, Any]:
        """The chat.completion object."""
        header = self.header
        completion = self.completion or adapters_pb2.GenerateCompletion()
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(self._content) if self._content or not self._tool_calls else None,
            "refusal": None,
        }
        if self._tool_calls:
            calls = []
            for index in sorted(self._tool_calls):
                call = dict(self._tool_calls[index])
                del call["index"]
                call.setdefault("type", "function")
                calls.append(call)
            message["tool_calls"] = calls
        return {
            "id": "chatcmpl-" + (header.decision_id or header.request_id),
            "object": "chat.completion",
            "created": header.created,
            "model": header.model,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": _FINISH_REASONS.get(completion.finish_reason, "stop"),
                }
            ],
            "usage": usage_json(completion.usage),
        }


class SseEncoder:
    """Pre-encoded chat.completion.chunk events for one stream: only the delta is serialized per event."""

    __slots__ = ("_head", "_include_usage", "_tail", "header")

    def __init__(self, header: adapters_pb2.GenerateHeader, include_usage: bool):
        self.header = header
        self._include_usage = include_usage
        envelope = orjson.dumps(
            {
                "id": "chatcmpl-" + (header.decision_id or header.request_id),
                "object": "chat.completion.chunk",
                "created": header.created,
                "model": header.model,
                "system_fingerprint": None,
            }
        )
        # The envelope's closing brace is replaced by the choices array, built around each delta.
        usage_null = b',"usage":null' if include_usage else b""
        self._head = b"data: " + envelope[:-1] + usage_null + b',"choices":[{"index":0,"delta":'
        self._tail = b',"logprobs":null,"finish_reason":null}]}\n\n'

    def start(self) -> bytes:
        """The first event: the assistant role, as OpenAI sends it."""
        return self._head + b'{"role":"assistant","content":"","refusal":null}' + self._tail

    def deltas(self, deltas: Iterable[chat_pb2.Delta]) -> bytes:
        """One event for the deltas of one Generate message (empty when they carry nothing)."""
        merged = merge_deltas(deltas)
        if merged is None:
            return b""
        return self._head + orjson.dumps(merged) + self._tail

    def finish(self, completion: adapters_pb2.GenerateCompletion) -> bytes:
        """The finish event, the usage event when asked for, and the [DONE] sentinel."""
        reason = _FINISH_REASONS.get(completion.finish_reason, "stop")
        out = self._head + b'{},"logprobs":null,"finish_reason":"' + reason.encode() + b'"}]}\n\n'
        if self._include_usage:
            header = self.header
            out += (
                b"data: "
                + orjson.dumps(
                    {
                        "id": "chatcmpl-" + (header.decision_id or header.request_id),
                        "object": "chat.completion.chunk",
                        "created": header.created,
                        "model": header.model,
                        "system_fingerprint": None,
                        "choices": [],
                        "usage": usage_json(completion.usage),
                    }
                )
                + b"\n\n"
            )
        return out + b"data: [DONE]\n\n"


def sse_error(error: dict[str, Any]) -> bytes:
    """The terminal error event of a stream that broke after output; no [DONE] follows it."""
    return b"data: " + orjson.dumps({"error": error}) + b"\n\n"


def atp_error_event(exc: AtpError) -> bytes:
    """sse_error for a typed error."""
    return sse_error(openai_error(exc)[1])
