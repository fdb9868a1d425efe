"""Anthropic's Messages API as a provider: the typed request out, every reply block back as deltas."""

from __future__ import annotations

from typing import Any

import orjson

from atp.common.v1 import chat_pb2
from atp_adapters.providers._http import DeltaBuilder, HttpProvider, LiveSecret, StreamState, usage_from
from atp_adapters.providers.anthropic_encode import encode_anthropic
from atp_adapters.providers.base import ProviderBatch, ProviderError, ProviderRequest
from atp_common import config

__all__ = ["AnthropicProvider", "encode_anthropic"]

DEFAULT_ANTHROPIC_VERSION = "2023-06-01"
# The tier that served a reply, in the internal (OpenAI's) vocabulary; the batch tier is never asked for.
_SERVICE_TIERS = {"standard": "default", "priority": "priority"}
# What count_tokens takes of a Messages body; the rest (max_tokens, stream, sampling, metadata) it refuses,
# and none of it changes the input's tokens.
_COUNTED_FIELDS = frozenset(
    (
        "model",
        "messages",
        "system",
        "tools",
        "tool_choice",
        "thinking",
        "output_config",
        "cache_control",
        "context_management",
    )
)
_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",
}


def _usage(usage: dict[str, Any], output_tokens: Any = None) -> chat_pb2.Usage:
    cached = usage.get("cache_read_input_tokens") or 0
    written = usage.get("cache_creation_input_tokens") or 0
    # Anthropic's input_tokens leaves out cache reads and writes; prompt tokens here count them all.
    prompt = (usage.get("input_tokens") or 0) + cached + written
    completion = output_tokens if output_tokens is not None else usage.get("output_tokens")
    thinking = (usage.get("output_tokens_details") or {}).get("thinking_tokens")
    return usage_from(prompt, completion, cached, thinking, cache_write=written)


# The usage fields the internal Usage holds; every other (cache_creation, inference_geo, speed,
# server_tool_use, output_tokens_details, and any Anthropic adds) returns to Messages clients as sent.
_USAGE_HELD = frozenset(
    (
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
        "service_tier",
    )
)
# A Message's fields the typed reply holds, or that travel as provider fields of their own; any other
# (a `container`, and whatever Anthropic adds) travels with the stop, which is where it belongs both in
# a Message (its top level) and in a stream (message_delta's delta).
_MESSAGE_HELD = frozenset(
    (
        *("id", "type", "role", "model", "content", "usage", "context_management"),
        *("stop_reason", "stop_sequence", "stop_details"),
    )
)


# Stop reasons the internal finish reasons fold into others; a Messages client gets them as sent.
_OWN_STOP_REASONS = ("model_context_window_exceeded", "pause_turn")


def _provider_fields(edits: Any, usage: dict[str, Any], stop: dict[str, Any]) -> dict[str, bytes] | None:
    """A reply's own fields: context_management's applied edits, the usage fields listed above, and
    the stop as Anthropic gave it where the finish reason says less (`stop`: its reason, its details)."""
    fields: dict[str, bytes] = {}
    if edits is not None:
        fields["context_management"] = orjson.dumps(edits)
    if stop:
        fields["stop"] = orjson.dumps(stop)
    extras = {name: value for name, value in usage.items() if name not in _USAGE_HELD and value is not None}
    if extras:
        fields["usage"] = orjson.dumps(extras)
    return fields or None


def _annotation(citation: dict[str, Any], start: int, end: int) -> chat_pb2.Annotation:
    """A citation of the text between start and end (the reply's characters its text block spans)."""
    return chat_pb2.Annotation(
        type=citation.get("type") or "",
        url=citation.get("url") or citation.get("source") or "",
        title=citation.get("title") or citation.get("document_title") or "",
        start_index=start,
        end_index=end,
        cited_text=citation.get("cited_text") or "",
        anthropic_json=orjson.dumps(citation),
    )


class _Reply:
    """What Messages content blocks add up to, whole or streamed: the deltas, the text offsets that
    citations point into, the tool-call numbering, and the reply's metadata."""

    def __init__(self, builder: DeltaBuilder, streamed: bool) -> None:
        self.builder = builder
        # A streamed tool_use block starts with an empty input that input_json_delta events fill in.
        self.streamed = streamed
        self.text_length = 0
        self.tool_count = 0
        self.response_id = ""
        self.stop_sequence = ""
        self.finish_reason = ""
        # The stop as Anthropic gave it, where the finish reason says less (see _provider_fields).
        self.stop_fields: dict[str, Any] = {}
        # Content block index -> tool call index, for input_json_delta events.
        self.tool_index: dict[int, int] = {}
        # The open text block's start offset and the citations that arrived for it.
        self.block_start = 0
        self.citations: list[dict[str, Any]] = []

    def text(self, text: str) -> None:
        self.builder.text(text)
        self.text_length += len(text)

    def start_block(self, index: int, block: dict[str, Any]) -> None:
        kind = block.get("type")
        if kind == "text":
            self.block_start = self.text_length
            self.citations = list(block.get("citations") or ())
            self.text(block.get("text") or "")
        elif kind == "tool_use":
            self.tool_index[index] = self.tool_count
            self.tool_count += 1
            arguments = "" if self.streamed else orjson.dumps(block.get("input") or {}).decode()
            call_id, name = block.get("id", ""), block.get("name", "")
            self.builder.tool(self.tool_index[index], call_id, "function", name, arguments)
        elif kind == "thinking":
            self.builder.reasoning(block.get("thinking") or "", block.get("signature") or "")
        elif kind == "redacted_thinking":
            self.builder.reasoning(redacted=block.get("data") or "")

    def delta(self, index: int, delta: dict[str, Any]) -> None:
        kind = delta.get("type")
        if kind == "text_delta":
            self.text(delta.get("text") or "")
        elif kind == "input_json_delta":
            tool = self.tool_index.get(index)
            if tool is not None:
                self.builder.tool(tool, "", "", "", delta.get("partial_json") or "")
        elif kind == "thinking_delta":
            self.builder.reasoning(delta.get("thinking") or "")
        elif kind == "signature_delta":
            self.builder.reasoning(signature=delta.get("signature") or "")
        elif kind == "citations_delta":
            self.citations.append(delta["citation"])

    def stop_block(self) -> None:
        for citation in self.citations:
            self.builder.annotation(_annotation(citation, self.block_start, self.text_length))
        self.citations = []

    def keep_unknown(self, fields: dict[str, Any]) -> None:
        """A Message's (or message_delta's delta's) fields the typed reply has no place for, as sent."""
        if not fields.keys() <= _MESSAGE_HELD:
            self.stop_fields.update((k, v) for k, v in fields.items() if k not in _MESSAGE_HELD)

    def stop(self, delta: dict[str, Any]) -> None:
        self.keep_unknown(delta)
        reason = delta.get("stop_reason")
        if reason:
            self.finish_reason = _STOP_REASONS.get(reason, "stop")
        self.stop_sequence = delta.get("stop_sequence") or self.stop_sequence
        details = delta.get("stop_details")
        if reason in _OWN_STOP_REASONS:
            self.stop_fields["stop_reason"] = reason
        if details:
            self.stop_fields["stop_details"] = details
        if reason == "refusal":
            self.builder.refusal((details or {}).get("explanation") or "")


class _AnthropicStream(StreamState):
    __slots__ = ("_provider", "_reply", "_start_usage")

    def __init__(self, provider: str) -> None:
        super().__init__()
        self._provider = provider
        self._reply = _Reply(self.deltas, streamed=True)
        self._start_usage: dict[str, Any] = {}

    def event(self, name: bytes, data: bytes) -> bool:
        payload = orjson.loads(data)
        kind = payload.get("type") or name.decode()
        reply = self._reply
        if kind == "content_block_delta":
            reply.delta(payload.get("index", 0), payload["delta"])
        elif kind == "content_block_start":
            reply.start_block(payload.get("index", 0), payload.get("content_block") or {})
        elif kind == "content_block_stop":
            reply.stop_block()
        elif kind == "message_start":
            message = payload.get("message") or {}
            reply.keep_unknown(message)
            self.response_id = reply.response_id = message.get("id") or ""
            self._start_usage = message.get("usage") or {}
            self.usage = _usage(self._start_usage)
            self.service_tier = _SERVICE_TIERS.get(self._start_usage.get("service_tier") or "", "")
        elif kind == "message_delta":
            reply.stop(payload.get("delta") or {})
            self.finish_reason = reply.finish_reason or self.finish_reason
            self.stop_sequence = reply.stop_sequence
            usage = payload.get("usage")
            if usage:
                # message_delta's usage is cumulative; input counts may be restated there too.
                self.usage = _usage({**self._start_usage, **usage}, usage.get("output_tokens"))
            self.provider_fields = _provider_fields(
                payload.get("context_management"), {**self._start_usage, **(usage or {})}, reply.stop_fields
            )
        elif kind == "message_stop":
            return True
        elif kind == "error":
            error = payload.get("error") or {}
            status = 529 if error.get("type") == "overloaded_error" else None
            raise ProviderError(
                f"provider {self._provider} sent an error in the stream: {error.get('message', '')}",
                kind="http",
                provider=self._provider,
                status=status,
            )
        return False

    def complete_at_eof(self) -> bool:
        return False  # message_stop is the only proper end


def decode_message(payload: dict[str, Any]) -> ProviderBatch:
    """The single batch of a non-streamed Message."""
    reply = _Reply(DeltaBuilder(), streamed=False)
    for index, block in enumerate(payload.get("content") or ()):
        reply.start_block(index, block)
        reply.stop_block()
    reply.stop(payload)
    usage = payload.get("usage")
    return ProviderBatch(
        reply.builder.take(),
        reply.finish_reason or "stop",
        _usage(usage) if usage else None,
        response_id=payload.get("id") or "",
        stop_sequence=reply.stop_sequence,
        service_tier=_SERVICE_TIERS.get((usage or {}).get("service_tier") or "", ""),
        provider_fields=_provider_fields(payload.get("context_management"), usage or {}, reply.stop_fields),
    )


class AnthropicProvider(HttpProvider):
    """Anthropic's Messages API. `base_url` without the version path (`https://api.anthropic.com`);
    `api_version` is the anthropic-version header."""

    def __init__(self, cfg: config.HttpProvider, api_key: str | LiveSecret, name: str = "anthropic") -> None:
        self._version = cfg.api_version or DEFAULT_ANTHROPIC_VERSION
        super().__init__(cfg, api_key, name)

    def auth_headers(self, api_key: str) -> dict[str, str]:
        headers = {"anthropic-version": self._version}
        if api_key:
            headers["x-api-key"] = api_key
        return headers

    def url_for(self, provider_model: str, stream: bool) -> str:
        return f"{self._base_url}/v1/messages"

    def request_options(self, request: ProviderRequest) -> dict[str, str] | None:
        betas = request.params.anthropic_betas
        return {"anthropic-beta": ",".join(betas)} if betas else None

    def encode(self, request: ProviderRequest) -> bytes:
        return encode_anthropic(self.name, request)

    def stream_state(self, request: ProviderRequest) -> StreamState:
        return _AnthropicStream(self.name)

    def decode_full(self, payload: Any) -> ProviderBatch:
        return decode_message(payload)

    async def count_tokens(self, request: ProviderRequest) -> int:
        """Messages' count_tokens: the body a Messages call would send, less what the count refuses."""
        body = orjson.loads(encode_anthropic(self.name, request))
        counted = {k: v for k, v in body.items() if k in _COUNTED_FIELDS}
        url, counted = self.count_call(counted)
        return await self.post_count(url, orjson.dumps(counted), request, "input_tokens")

    def count_call(self, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The count endpoint and its body (Vertex AI has its own)."""
        return f"{self._base_url}/v1/messages/count_tokens", body
