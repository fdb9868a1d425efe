"""Generate replies as OpenAI Responses: the `Response` object and, streamed, its typed SSE events."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from atp.adapters.v1 import adapters_pb2
from atp.common.v1 import chat_pb2
from atp_common.errors import AtpError, RateLimited
from atp_gateway.dialects.responses_echo import echo_fields
from atp_gateway.dialects.responses_input import REDACTED_PREFIX
from atp_gateway.dialects.responses_request import RequestOptions

__all__ = ["ResponsesReply", "usage_json"]

# The tier that served the reply, in OpenAI's words (Anthropic reports `standard`).
_TIERS = {"standard": "default"}
_INCOMPLETE = {
    adapters_pb2.FINISH_REASON_LENGTH: "max_output_tokens",
    adapters_pb2.FINISH_REASON_CONTENT_FILTER: "content_filter",
}


def usage_json(usage: chat_pb2.Usage) -> dict[str, Any]:
    """Responses' usage object."""
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cached_prompt_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def _logprobs(logprobs: Iterable[chat_pb2.TokenLogprob]) -> list[dict[str, Any]]:
    """Log probabilities as an output_text part holds them (with bytes)."""
    return [
        {
            "token": entry.token,
            "bytes": list(entry.token_bytes),
            "logprob": entry.logprob,
            "top_logprobs": [
                {"token": top.token, "bytes": list(top.token_bytes), "logprob": top.logprob}
                for top in entry.top_logprobs
            ],
        }
        for entry in logprobs
    ]


def _event_logprobs(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same as the text delta and done events carry them (without bytes)."""
    return [
        {
            "token": entry["token"],
            "logprob": entry["logprob"],
            "top_logprobs": [
                {"token": top["token"], "logprob": top["logprob"]} for top in entry["top_logprobs"]
            ],
        }
        for entry in entries
    ]


def _annotation(annotation: chat_pb2.Annotation) -> dict[str, Any]:
    # Responses knows URL and file citations only; a provider's other citation kinds keep their place and
    # title as a url_citation (their source URL, when they have one).
    return {
        "type": "url_citation",
        "url": annotation.url,
        "title": annotation.title or annotation.cited_text,
        "start_index": annotation.start_index,
        "end_index": annotation.end_index,
    }


class ResponsesReply:
    """One reply in the making. Fed the deltas of a Generate reply, it builds the output items; when
    `stream` is set it also writes every typed event as SSE bytes (returned by each call)."""

    __slots__ = (
        "_base",
        "_closed",
        "_count",
        "_open",
        "_out",
        "_seq",
        "_text_head",
        "_tools",
        "header",
        "options",
        "output",
        "stream",
    )

    def __init__(self, options: RequestOptions):
        self.header = adapters_pb2.GenerateHeader()
        self.options = options
        self.stream = options.stream
        self.output: list[dict[str, Any]] = []
        self._base = ""
        self._count = 0
        self._seq = 0
        self._out: list[bytes] = []
        # The message or reasoning item being written, and function calls by tool-call index.
        self._open: dict[str, Any] | None = None
        self._tools: dict[int, dict[str, Any]] = {}
        # The tool-call indexes whose items are done (a later item ended them).
        self._closed: set[int] = set()
        # The encoded start of the open output_text part's delta events, and that part.
        self._text_head: tuple[dict[str, Any], bytes] | None = None

    # Events.

    def _emit(self, kind: str, **fields: Any) -> None:
        if self.stream:
            fields["type"] = kind
            fields["sequence_number"] = self._seq
            self._seq += 1
            self._out.append(b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(fields) + b"\n\n")

    def _flush(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    def response(
        self, status: str, completion: adapters_pb2.GenerateCompletion | None = None
    ) -> dict[str, Any]:
        """The Response object in its current state."""
        body: dict[str, Any] = {
            "id": "resp_" + self._base,
            "object": "response",
            "created_at": self.header.created,
            "status": status,
            "model": self.header.model,
            "output": self.output if status != "in_progress" else [],
            "error": None,
            "incomplete_details": None,
            "usage": usage_json(completion.usage) if completion is not None else None,
            "service_tier": _TIERS.get(self.header.service_tier, self.header.service_tier) or None,
        }
        body.update(echo_fields(self.options))
        if completion is not None and (reason := _INCOMPLETE.get(completion.finish_reason)):
            body["incomplete_details"] = {"reason": reason}
        return body

    def _begin(self, header: adapters_pb2.GenerateHeader) -> None:
        self.header = header
        self._base = header.decision_id or header.request_id

    def whole(self, reply: adapters_pb2.GenerateResponse) -> bytes:
        """The Response of a non-streamed request."""
        self._begin(reply.header)
        self.deltas(reply.deltas)
        self.finish(reply.completion)
        status = "incomplete" if reply.completion.finish_reason in _INCOMPLETE else "completed"
        return orjson.dumps(self.response(status, reply.completion))

    def start(self, header: adapters_pb2.GenerateHeader) -> bytes:
        """response.created and response.in_progress."""
        self._begin(header)
        self._emit("response.created", response=self.response("in_progress"))
        self._emit("response.in_progress", response=self.response("in_progress"))
        return self._flush()

    def deltas(self, deltas: Iterable[chat_pb2.Delta]) -> bytes:
        """The events of one Generate message's deltas; consecutive plain text deltas make one event."""
        texts: list[str] = []
        for delta in deltas:
            if delta.content and len(delta.ListFields()) == 1:
                texts.append(delta.content)
                continue
            if texts:
                self._text(self._part("output_text"), "".join(texts), ())
                texts.clear()
            self._delta(delta)
        if texts:
            self._text(self._part("output_text"), "".join(texts), ())
        return self._flush()

    def _delta(self, delta: chat_pb2.Delta) -> None:
        if delta.reasoning or delta.reasoning_signature:
            self._reasoning(delta.reasoning, delta.reasoning_signature)
        if delta.redacted_reasoning:
            self._redacted(delta.redacted_reasoning)
        if delta.content or delta.logprobs:
            self._text(self._part("output_text"), delta.content, delta.logprobs)
        if delta.annotations:
            part = self._part("output_text")
            for annotation in delta.annotations:
                self._annotate(part, annotation)
        if delta.refusal:
            self._refusal(self._part("refusal"), delta.refusal)
        for fragment in delta.tool_calls:
            self._tool(fragment)

    def finish(self, completion: adapters_pb2.GenerateCompletion) -> bytes:
        """Close every item and end with response.completed (or response.incomplete)."""
        status = "incomplete" if completion.finish_reason in _INCOMPLETE else "completed"
        self._close_all(status)
        if self.stream:
            kind = "response.completed" if status == "completed" else "response.incomplete"
            self._emit(kind, response=self.response(status, completion))
        return self._flush()

    def broken(self, error: AtpError) -> bytes:
        """A stream that broke after output: its open items end incomplete, then an error event and
        response.failed."""
        code = "rate_limit_exceeded" if isinstance(error, RateLimited) else "server_error"
        self._close_all("incomplete")
        self._emit("error", code=code, message=error.message, param=None)
        body = self.response("failed")
        body["output"] = self.output
        body["error"] = {"code": code, "message": error.message}
        self._emit("response.failed", response=body)
        return self._flush()

    # Output items.

    def _add_item(self, item: dict[str, Any], prefix: str) -> dict[str, Any]:
        # Providers send one call after another: a new item ends the calls before it, so items are
        # written one after another, as OpenAI's own stream writes them.
        self._close_tools("completed")
        self._count += 1
        item["id"] = f"{prefix}_{self._base}_{self._count}"
        self.output.append(item)
        self._emit("response.output_item.added", output_index=len(self.output) - 1, item=item)
        return item

    def _current(self, kind: str) -> dict[str, Any]:
        """The open item of `kind` (message or reasoning), opened after closing another open one."""
        item = self._open
        if item is not None and item["type"] == kind:
            return item
        if item is not None:
            self._close(item, "completed")
        if kind == "message":
            item = {"type": "message", "role": "assistant", "status": "in_progress", "content": []}
        else:
            item = {"type": "reasoning", "summary": [], "content": [], "status": "in_progress"}
        self._open = self._add_item(item, "msg" if kind == "message" else "rs")
        return self._open

    def _part(self, kind: str) -> dict[str, Any]:
        """The message's open content part of `kind`, added after closing the previous part."""
        message = self._current("message")
        content = message["content"]
        if content and content[-1]["type"] == kind:
            open_part: dict[str, Any] = content[-1]
            return open_part
        if content:
            self._close_part(message, content[-1])
        part: dict[str, Any] = (
            {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            if kind == "output_text"
            else {"type": "refusal", "refusal": ""}
        )
        content.append(part)
        self._emit(
            "response.content_part.added", **self._where(message), content_index=len(content) - 1, part=part
        )
        return part

    def _where(self, item: dict[str, Any]) -> dict[str, Any]:
        return {"item_id": item["id"], "output_index": self.output.index(item)}

    def _text(self, part: dict[str, Any], text: str, logprobs: Iterable[chat_pb2.TokenLogprob]) -> None:
        entries = _logprobs(logprobs)
        part["text"] += text
        part["logprobs"] += entries
        if not self.stream:
            return
        message = self._open
        assert message is not None
        if entries:
            where = self._where(message)
            index = len(message["content"]) - 1
            self._emit(
                "response.output_text.delta",
                **where,
                content_index=index,
                delta=text,
                logprobs=_event_logprobs(entries),
            )
            return
        # The common event, written around the text: only the text and the number are encoded per event.
        if self._text_head is None or self._text_head[0] is not part:
            where = self._where(message)
            head = orjson.dumps(
                {
                    "type": "response.output_text.delta",
                    **where,
                    "content_index": len(message["content"]) - 1,
                    "logprobs": [],
                }
            )
            self._text_head = (part, b"event: response.output_text.delta\ndata: " + head[:-1] + b',"delta":')
        self._out.append(self._text_head[1] + orjson.dumps(text) + b',"sequence_number":%d}\n\n' % self._seq)
        self._seq += 1

    def _annotate(self, part: dict[str, Any], annotation: chat_pb2.Annotation) -> None:
        entry = _annotation(annotation)
        part["annotations"].append(entry)
        message = self._open
        assert message is not None
        self._emit(
            "response.output_text.annotation.added",
            **self._where(message),
            content_index=len(message["content"]) - 1,
            annotation_index=len(part["annotations"]) - 1,
            annotation=entry,
        )

    def _refusal(self, part: dict[str, Any], text: str) -> None:
        part["refusal"] += text
        message = self._open
        assert message is not None
        where = self._where(message)
        self._emit("response.refusal.delta", **where, content_index=len(message["content"]) - 1, delta=text)

    def _reasoning(self, text: str, signature: str) -> None:
        item = self._current("reasoning")
        if text:
            if not item["content"]:
                item["content"].append({"type": "reasoning_text", "text": ""})
                part = item["content"][0]
                self._emit("response.content_part.added", **self._where(item), content_index=0, part=part)
            item["content"][0]["text"] += text
            self._emit("response.reasoning_text.delta", **self._where(item), content_index=0, delta=text)
        if signature:
            item["encrypted_content"] = item.get("encrypted_content", "") + signature

    def _redacted(self, data: str) -> None:
        if self._open is not None:
            self._close(self._open, "completed")
        item = {"type": "reasoning", "summary": [], "status": "in_progress"}
        item["encrypted_content"] = REDACTED_PREFIX + data
        self._open = self._add_item(item, "rs")

    def _tool(self, fragment: chat_pb2.ToolCallDelta) -> None:
        item = self._tools.get(fragment.index)
        if item is None:
            if self._open is not None:
                self._close(self._open, "completed")
                self._open = None
            custom = fragment.type == "custom"
            item = {
                "type": "custom_tool_call" if custom else "function_call",
                "call_id": fragment.id,
                "name": fragment.function_name,
                "input" if custom else "arguments": "",
            }
            if not custom:
                item["status"] = "in_progress"
            self._tools[fragment.index] = self._add_item(item, "ctc" if custom else "fc")
        else:
            if fragment.id and not item["call_id"]:
                item["call_id"] = fragment.id
            item["name"] += fragment.function_name
        if fragment.arguments and fragment.index in self._closed:
            # A call resumed after a later item began (no provider does this): its whole arguments still
            # reach the completed response, though its item's done event had the part before.
            item["input" if item["type"] == "custom_tool_call" else "arguments"] += fragment.arguments
        elif fragment.arguments:
            key, event = (
                ("input", "response.custom_tool_call_input.delta")
                if item["type"] == "custom_tool_call"
                else ("arguments", "response.function_call_arguments.delta")
            )
            item[key] += fragment.arguments
            self._emit(event, **self._where(item), delta=fragment.arguments)

    def _close_part(self, message: dict[str, Any], part: dict[str, Any]) -> None:
        where = {**self._where(message), "content_index": message["content"].index(part)}
        if part["type"] == "output_text":
            self._emit(
                "response.output_text.done",
                **where,
                text=part["text"],
                logprobs=_event_logprobs(part["logprobs"]),
            )
        elif part["type"] == "refusal":
            self._emit("response.refusal.done", **where, refusal=part["refusal"])
        else:
            self._emit("response.reasoning_text.done", **where, text=part["text"])
        self._emit("response.content_part.done", **where, part=part)

    def _close(self, item: dict[str, Any], status: str) -> None:
        kind = item["type"]
        if kind in ("message", "reasoning") and item.get("content"):
            self._close_part(item, item["content"][-1])
        elif kind == "function_call":
            self._emit(
                "response.function_call_arguments.done", **self._where(item), arguments=item["arguments"]
            )
        elif kind == "custom_tool_call":
            self._emit("response.custom_tool_call_input.done", **self._where(item), input=item["input"])
        if kind != "custom_tool_call":
            item["status"] = status
        self._emit("response.output_item.done", output_index=self.output.index(item), item=item)

    def _close_all(self, status: str) -> None:
        if self._open is not None:
            self._close(self._open, status)
            self._open = None
        self._close_tools(status)
        self._tools.clear()
        self._closed.clear()

    def _close_tools(self, status: str) -> None:
        for index in sorted(self._tools.keys() - self._closed):
            self._closed.add(index)
            self._close(self._tools[index], status)
