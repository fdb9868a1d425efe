"""Generate replies as Anthropic Messages: the `Message` object and, streamed, Anthropic's event sequence."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from atp.adapters.v1 import adapters_pb2
from atp.common.v1 import chat_pb2
from atp_common.errors import AtpError
from atp_common.replies import OPENAI_EXTRA_FIELD
from atp_gateway.dialects.messages_errors import stream_error_event

__all__ = ["MessagesReply", "citation", "usage_json"]

_STOP_REASONS = {
    adapters_pb2.FINISH_REASON_UNSPECIFIED: "end_turn",
    adapters_pb2.FINISH_REASON_STOP: "end_turn",
    adapters_pb2.FINISH_REASON_LENGTH: "max_tokens",
    adapters_pb2.FINISH_REASON_TOOL_CALLS: "tool_use",
    adapters_pb2.FINISH_REASON_CONTENT_FILTER: "refusal",
}
# The tier that served the reply, in Anthropic's words (OpenAI's `default`, `flex` and `scale` are standard).
_TIERS = {"priority": "priority", "batch": "batch"}
_DOCUMENT_CITATIONS = frozenset(("char_location", "page_location", "content_block_location"))


def usage_json(usage: chat_pb2.Usage) -> dict[str, Any]:
    """Anthropic's usage: input_tokens excludes the prompt tokens read from or written to the cache
    (ATP's prompt_tokens counts them, as OpenAI's does)."""
    cached = usage.cached_prompt_tokens + usage.cache_write_tokens
    return {
        "input_tokens": max(0, usage.prompt_tokens - cached),
        "output_tokens": usage.completion_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_prompt_tokens,
    }


def citation(annotation: chat_pb2.Annotation) -> dict[str, Any]:
    """A reply citation as Anthropic's: a document location when it cites a document, else a web
    result location (OpenAI's url_citation and Anthropic's web citations). A citation the provider gave
    in Anthropic's form (Claude's, on the API or Bedrock) goes out whole."""
    if annotation.anthropic_json:
        cited: dict[str, Any] = orjson.loads(annotation.anthropic_json)
        return cited
    if annotation.type in _DOCUMENT_CITATIONS:
        return {
            "type": "char_location",
            "cited_text": annotation.cited_text,
            "document_index": 0,
            "document_title": annotation.title or None,
            "start_char_index": 0,
            "end_char_index": len(annotation.cited_text),
        }
    return {
        "type": "web_search_result_location",
        "cited_text": annotation.cited_text,
        "encrypted_index": "",
        "title": annotation.title or None,
        "url": annotation.url,
    }


def _tool_input(arguments: str) -> dict[str, Any]:
    """A tool call's arguments as the object Messages returns; arguments that are not a JSON object (a
    reply cut short by max_tokens) are kept whole under `_raw_arguments`, never dropped."""
    if not arguments:
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {"_raw_arguments": arguments}
    return value if isinstance(value, dict) else {"_raw_arguments": arguments}


class MessagesReply:
    """One reply in the making: content blocks built from the deltas; when streaming, each call also
    returns Anthropic's events for what it added."""

    __slots__ = ("_arguments", "_open", "_out", "_refused", "_tools", "content", "header", "stream")

    def __init__(self, stream: bool):
        self.stream = stream
        self.header = adapters_pb2.GenerateHeader()
        self.content: list[dict[str, Any]] = []
        self._open: int | None = None
        self._tools: dict[int, int] = {}
        self._arguments: dict[int, list[str]] = {}
        self._refused = False
        self._out: list[bytes] = []

    def _emit(self, kind: str, **fields: Any) -> None:
        if self.stream:
            fields = {"type": kind, **fields}
            self._out.append(b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(fields) + b"\n\n")

    def _flush(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    def message(self, completion: adapters_pb2.GenerateCompletion | None) -> dict[str, Any]:
        """The Message in its current state (empty and unfinished before the completion)."""
        header = self.header
        stop: dict[str, Any] = {"stop_reason": None, "stop_sequence": None}
        usage: dict[str, Any] = {"input_tokens": 0, "output_tokens": 0}
        if completion is not None:
            stop = self._stop(completion)
            usage = _usage(completion)
        if header.service_tier:
            usage["service_tier"] = _TIERS.get(header.service_tier, "standard")
        message = {
            "id": "msg_" + (header.decision_id or header.request_id),
            "type": "message",
            "role": "assistant",
            "model": header.model,
            "content": self.content if completion is not None else [],
            **stop,
            "usage": usage,
        }
        if completion is not None:
            message.update(_provider_fields(completion))
        return message

    def _stop(self, completion: adapters_pb2.GenerateCompletion) -> dict[str, Any]:
        """stop_reason and stop_sequence, and stop_details when Anthropic gave them; Anthropic's own stop
        reason where the finish reason folds it into another (model_context_window_exceeded)."""
        own = orjson.loads(raw) if (raw := completion.provider_fields.get("stop")) else {}
        stop: dict[str, Any] = {"stop_reason": None, "stop_sequence": None}
        if completion.stop_sequence:
            stop.update(stop_reason="stop_sequence", stop_sequence=completion.stop_sequence)
        elif self._refused and completion.finish_reason == adapters_pb2.FINISH_REASON_STOP:
            stop["stop_reason"] = "refusal"
        else:
            stop["stop_reason"] = own.get("stop_reason") or _STOP_REASONS.get(
                completion.finish_reason, "end_turn"
            )
        if own.get("stop_details"):
            stop["stop_details"] = own["stop_details"]
        # Anthropic's fields the typed reply has no place for (a container, ...), as it sent them.
        stop.update(
            (k, v) for k, v in own.items() if k not in stop and k not in ("stop_reason", "stop_details")
        )
        return stop

    def whole(self, reply: adapters_pb2.GenerateResponse) -> bytes:
        """The Message of a non-streamed request."""
        self.header = reply.header
        self.deltas(reply.deltas)
        self._close()
        return orjson.dumps(self.message(reply.completion))

    def start(self, header: adapters_pb2.GenerateHeader) -> bytes:
        """message_start."""
        self.header = header
        self._emit("message_start", message=self.message(None))
        return self._flush()

    def deltas(self, deltas: Iterable[chat_pb2.Delta]) -> bytes:
        """The content block events for one Generate message's deltas; consecutive plain text deltas make
        one text_delta."""
        texts: list[str] = []
        for delta in deltas:
            if delta.content and len(delta.ListFields()) == 1:
                texts.append(delta.content)
                continue
            if texts:
                self._text("".join(texts))
                texts.clear()
            self._delta(delta)
        if texts:
            self._text("".join(texts))
        return self._flush()

    def _delta(self, delta: chat_pb2.Delta) -> None:
        if delta.reasoning:
            self._add("thinking", "thinking_delta", "thinking", delta.reasoning)
        if delta.reasoning_signature:
            self._add("thinking", "signature_delta", "signature", delta.reasoning_signature)
        if delta.redacted_reasoning:
            self._close()
            self._block({"type": "redacted_thinking", "data": delta.redacted_reasoning})
            self._close()
        if delta.content:
            self._text(delta.content)
        for annotation in delta.annotations:
            self._cite(citation(annotation))
        if delta.refusal:
            # Messages has no refusal block: the refusal is the reply's text, and stop_reason says so.
            self._refused = True
            self._text(delta.refusal)
        for fragment in delta.tool_calls:
            self._tool(fragment)

    def _text(self, text: str) -> None:
        index = self._current("text")
        self.content[index]["text"] += text
        if self.stream:
            # The common event, written around the text: only the text is encoded per event.
            self._out.append(
                b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
                b'"delta":{"type":"text_delta","text":%b}}\n\n' % (index, orjson.dumps(text))
            )

    def finish(self, completion: adapters_pb2.GenerateCompletion) -> bytes:
        """content_block_stop for the last block, message_delta (stop reason, usage) and message_stop."""
        self._close()
        usage = _usage(completion, delta=True)
        self._emit("message_delta", delta=self._stop(completion), usage=usage, **_provider_fields(completion))
        self._emit("message_stop")
        return self._flush()

    def broken(self, error: AtpError) -> bytes:
        """A stream that broke after output ends with Anthropic's error event."""
        return self._flush() + stream_error_event(error)

    # Blocks.

    def _block(self, block: dict[str, Any]) -> int:
        self.content.append(block)
        self._open = len(self.content) - 1
        start = dict(block)
        if block["type"] == "tool_use":
            start["input"] = {}
        self._emit("content_block_start", index=self._open, content_block=start)
        return self._open

    def _close(self) -> None:
        index = self._open
        if index is None:
            return
        block = self.content[index]
        if block["type"] == "tool_use":
            block["input"] = _tool_input("".join(self._arguments.pop(index, ())))
        self._emit("content_block_stop", index=index)
        self._open = None

    def _current(self, kind: str) -> int:
        if self._open is not None and self.content[self._open]["type"] == kind:
            return self._open
        self._close()
        if kind == "text":
            return self._block({"type": "text", "text": "", "citations": None})
        return self._block({"type": "thinking", "thinking": "", "signature": ""})

    def _add(self, kind: str, event: str, key: str, text: str) -> None:
        index = self._current(kind)
        self.content[index][key] += text
        self._emit("content_block_delta", index=index, delta={"type": event, key: text})

    def _cite(self, entry: dict[str, Any]) -> None:
        index = self._current("text")
        block = self.content[index]
        block["citations"] = [*(block["citations"] or ()), entry]
        self._emit("content_block_delta", index=index, delta={"type": "citations_delta", "citation": entry})

    def _tool(self, fragment: chat_pb2.ToolCallDelta) -> None:
        index = self._tools.get(fragment.index)
        if index is None or index != self._open:
            self._close()
            block = {"type": "tool_use", "id": fragment.id, "name": fragment.function_name, "input": {}}
            index = self._tools[fragment.index] = self._block(block)
        elif fragment.function_name:
            self.content[index]["name"] += fragment.function_name
        if fragment.arguments:
            self._arguments.setdefault(index, []).append(fragment.arguments)
            delta = {"type": "input_json_delta", "partial_json": fragment.arguments}
            self._emit("content_block_delta", index=index, delta=delta)


# Provider fields that are not Anthropic's top-level reply fields: its usage and stop (read where they
# belong) and an OpenAI-compatible server's extras, which only the chat dialect speaks.
_NOT_TOP_LEVEL = frozenset(("usage", "stop", OPENAI_EXTRA_FIELD))


def _provider_fields(completion: adapters_pb2.GenerateCompletion) -> dict[str, Any]:
    """Anthropic's own top-level reply fields (context_management's applied edits), as Anthropic sent them."""
    fields = completion.provider_fields
    if not fields:
        return {}
    return {name: orjson.Fragment(raw) for name, raw in fields.items() if name not in _NOT_TOP_LEVEL}


# What message_delta's usage may hold beyond the counts (Anthropic's MessageDeltaUsage); the rest of its
# usage (cache_creation, speed, inference_geo) belongs to message_start, sent before the reply is known.
_DELTA_USAGE = ("output_tokens_details", "server_tool_use")


def _usage(completion: adapters_pb2.GenerateCompletion, delta: bool = False) -> dict[str, Any]:
    """Anthropic's usage: ATP's counts, with the fields of Anthropic's own usage that ATP does not model
    (cache_creation, speed, inference_geo, ...) as Anthropic sent them."""
    usage = usage_json(completion.usage)
    if raw := completion.provider_fields.get("usage"):
        extras = orjson.loads(raw)
        usage.update({k: v for k, v in extras.items() if k in _DELTA_USAGE} if delta else extras)
    return usage
