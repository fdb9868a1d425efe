"""AWS Bedrock's Converse and ConverseStream APIs as a provider, every call signed with SigV4 by botocore."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.eventstream import EventStreamBuffer, ParserError
from yarl import URL

from atp.common.v1 import chat_pb2
from atp_adapters.providers._http import (
    DeltaBuilder,
    HttpProvider,
    StreamFormatError,
    StreamState,
    usage_from,
)
from atp_adapters.providers.base import ProviderBatch, ProviderError, ProviderRequest
from atp_adapters.providers.bedrock_encode import CITATION_LOCATIONS, encode_bedrock
from atp_adapters.providers.cloud_auth import RefreshingCredential
from atp_common import config

SIGNING_NAME = "bedrock"
# What CountTokens takes of a Converse body: what the model reads, not how it answers.
_COUNTED = frozenset(("messages", "system", "toolConfig", "additionalModelRequestFields"))
_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
# Exceptions Bedrock sends inside a stream, as the HTTP status the same error has as a response.
_STREAM_EXCEPTIONS = {
    "throttlingException": 429,
    "serviceUnavailableException": 503,
    "internalServerException": 500,
    "modelStreamErrorException": 502,
    "validationException": 400,
}


def _usage(usage: dict[str, Any]) -> chat_pb2.Usage:
    cached = usage.get("cacheReadInputTokens") or 0
    written = usage.get("cacheWriteInputTokens") or 0
    # As with Anthropic's API, inputTokens leaves out the tokens read from or written to the cache.
    prompt = (usage.get("inputTokens") or 0) + cached + written
    return usage_from(prompt, usage.get("outputTokens"), cached, cache_write=written)


def _anthropic_citation(citation: dict[str, Any], cited: str) -> tuple[str, bytes] | None:
    """A Converse citation's kind and its form as Anthropic's API gives Claude's (CITATION_LOCATIONS), so a
    Messages client learns which document or search result, and where in it; None for a web citation."""
    location = citation.get("location") or {}
    for kind, (key, index_field, index, start, end) in CITATION_LOCATIONS.items():
        spot = location.get(key)
        if spot is None:
            continue
        form: dict[str, Any] = {
            "type": kind,
            "cited_text": cited,
            index: spot.get(index_field, 0),
            start: spot.get("start", 0),
            end: spot.get("end", 0),
        }
        if kind == "search_result_location":
            form.update(source=citation.get("source") or "", title=citation.get("title") or None)
        else:
            form["document_title"] = citation.get("title") or None
        return kind, orjson.dumps(form)
    return None


def _annotations(citations: list[dict[str, Any]]) -> list[chat_pb2.Annotation]:
    out = []
    for citation in citations:
        web = (citation.get("location") or {}).get("web") or {}
        cited = "".join(part.get("text", "") for part in citation.get("sourceContent") or ())
        annotation = chat_pb2.Annotation(
            type="url_citation" if web else "document_citation",
            url=web.get("url", "") or citation.get("source") or "",
            title=citation.get("title") or web.get("domain", ""),
            cited_text=cited,
        )
        if (found := _anthropic_citation(citation, cited)) is not None:
            annotation.type, annotation.anthropic_json = found
        out.append(annotation)
    return out


def _reasoning(builder: DeltaBuilder, block: dict[str, Any]) -> None:
    if "redactedContent" in block:
        builder.reasoning(redacted=block["redactedContent"])
        return
    text = block.get("reasoningText") or block
    builder.reasoning(text.get("text", ""), signature=text.get("signature", ""))


class EventStreamDecoder:
    """AWS event-stream frames (the binary framing of ConverseStream) in, (event type, payload) out.

    botocore's own buffer checks each frame's length prefix and CRCs. An exception frame comes out as
    the event type `exception:<name>`.
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = EventStreamBuffer()

    def feed(self, chunk: bytes) -> list[tuple[bytes, bytes]]:
        self._buffer.add_data(chunk)
        events: list[tuple[bytes, bytes]] = []
        try:
            for message in self._buffer:
                headers = message.headers
                if headers.get(":message-type") == "exception":
                    name = "exception:" + str(headers.get(":exception-type", ""))
                elif headers.get(":message-type") == "error":
                    name = "exception:" + str(headers.get(":error-code", "error"))
                else:
                    name = str(headers.get(":event-type", ""))
                events.append((name.encode(), message.payload))
        except ParserError as exc:
            raise StreamFormatError(f"broken event-stream frame: {exc}") from exc
        return events

    def close(self) -> list[tuple[bytes, bytes]]:
        return []


class _ConverseStream(StreamState):
    __slots__ = ("_provider", "_tool_index")

    def __init__(self, provider: str) -> None:
        super().__init__()
        self._provider = provider
        # Content block index -> tool call index.
        self._tool_index: dict[int, int] = {}

    def event(self, name: bytes, data: bytes) -> bool:
        kind = name.decode()
        payload = orjson.loads(data) if data else {}
        if kind == "contentBlockDelta":
            self._delta(payload.get("contentBlockIndex", 0), payload.get("delta") or {})
        elif kind == "contentBlockStart":
            tool = (payload.get("start") or {}).get("toolUse")
            if tool:
                index = self._tool_index[payload.get("contentBlockIndex", 0)] = len(self._tool_index)
                self.deltas.tool(index, tool.get("toolUseId", ""), "function", tool.get("name", ""), "")
        elif kind == "messageStop":
            self.finish_reason = _STOP_REASONS.get(payload.get("stopReason") or "", "stop")
            self.provider_fields = _own_stop(payload.get("stopReason"))
        elif kind == "metadata":
            if payload.get("usage"):
                self.usage = _usage(payload["usage"])
            # metadata is the last event of a stream.
            return bool(self.finish_reason)
        elif kind.startswith("exception:"):
            exception = kind.removeprefix("exception:")
            raise ProviderError(
                f"provider {self._provider} sent {exception} in the stream: {payload.get('message', '')}",
                kind="http",
                provider=self._provider,
                status=_STREAM_EXCEPTIONS.get(exception),
                retryable=_STREAM_EXCEPTIONS.get(exception, 0) in (429, 500, 503),
            )
        return False

    def _delta(self, block_index: int, delta: dict[str, Any]) -> None:
        if "text" in delta:
            self.deltas.text(delta["text"])
        elif "toolUse" in delta:
            index = self._tool_index.get(block_index)
            if index is not None:
                self.deltas.tool(index, "", "", "", delta["toolUse"].get("input", ""))
        elif "reasoningContent" in delta:
            _reasoning(self.deltas, delta["reasoningContent"])
        elif "citation" in delta:
            for annotation in _annotations([delta["citation"]]):
                self.deltas.annotation(annotation)

    def complete_at_eof(self) -> bool:
        return bool(self.finish_reason)


def decode_converse(payload: dict[str, Any]) -> ProviderBatch:
    """The single batch of a Converse reply."""
    builder = DeltaBuilder()
    tool_index = 0
    message = (payload.get("output") or {}).get("message") or {}
    for block in message.get("content") or ():
        if "text" in block:
            builder.text(block["text"])
        elif "toolUse" in block:
            use = block["toolUse"]
            arguments = orjson.dumps(use.get("input") or {}).decode()
            builder.tool(tool_index, use.get("toolUseId", ""), "function", use.get("name", ""), arguments)
            tool_index += 1
        elif "reasoningContent" in block:
            _reasoning(builder, block["reasoningContent"])
        elif "citationsContent" in block:
            cited = block["citationsContent"]
            builder.text("".join(part.get("text", "") for part in cited.get("content") or ()))
            for annotation in _annotations(cited.get("citations") or []):
                builder.annotation(annotation)
    finish = _STOP_REASONS.get(payload.get("stopReason") or "", "stop")
    usage = payload.get("usage")
    return ProviderBatch(
        builder.take(),
        finish,
        _usage(usage) if usage else None,
        provider_fields=_own_stop(payload.get("stopReason")),
    )


def _own_stop(reason: str | None) -> dict[str, bytes] | None:
    """Claude's own stop reason where the finish reason folds it into `length`: a Messages client gets it
    as Anthropic's API would say it (the same `stop` field the Anthropic provider fills)."""
    if reason == "model_context_window_exceeded":
        return {"stop": orjson.dumps({"stop_reason": reason})}
    return None


class BedrockProvider(HttpProvider):
    """Bedrock Runtime in one region. The model id (or inference profile ARN) is the provider model;
    credentials come from botocore's chain and are refreshed off the request path."""

    def __init__(self, cfg: config.HttpProvider, credential: RefreshingCredential, name: str = "bedrock"):
        if not cfg.base_url:
            cfg = cfg.model_copy(update={"base_url": f"https://bedrock-runtime.{cfg.region}.amazonaws.com"})
        # The credential stands where an API key would: a 401 or 403 asks it to refresh early.
        super().__init__(cfg, credential, name)
        self._credential = credential
        self._region = cfg.region

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {}

    def url_for(self, provider_model: str, stream: bool) -> str:
        # Encoded as botocore encodes a URI label (an inference profile ARN holds ':' and '/').
        model = quote(provider_model, safe="~")
        return f"{self._base_url}/model/{model}/{'converse-stream' if stream else 'converse'}"

    def request_headers(self, url: URL, body: bytes) -> dict[str, str]:
        # SigV4 signs the method, path, headers and a hash of the body: one signature per call.
        request = AWSRequest(method="POST", url=str(url), data=body, headers=dict(self._current_headers()))
        SigV4Auth(self._credential.value, SIGNING_NAME, self._region).add_auth(request)
        return dict(request.headers.items())

    def encode(self, request: ProviderRequest) -> bytes:
        return encode_bedrock(self.name, request)

    async def count_tokens(self, request: ProviderRequest) -> int:
        """CountTokens over the Converse request a call would send (its conversation, system and tools)."""
        converse = orjson.loads(self.encode(request))
        body = {"input": {"converse": {k: v for k, v in converse.items() if k in _COUNTED}}}
        url = f"{self._base_url}/model/{quote(request.provider_model, safe='~')}/count-tokens"
        return await self.post_count(url, orjson.dumps(body), request, "inputTokens")

    def stream_decoder(self) -> EventStreamDecoder:
        return EventStreamDecoder()

    def stream_state(self, request: ProviderRequest) -> StreamState:
        return _ConverseStream(self.name)

    def decode_full(self, payload: Any) -> ProviderBatch:
        return decode_converse(payload)
