"""Google's Gemini API (generateContent, streamGenerateContent over SSE, batchEmbedContents) as a provider."""

from __future__ import annotations

import secrets
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import replace
from typing import Any

import orjson

from atp.common.v1 import chat_pb2
from atp_adapters.providers._http import DeltaBuilder, HttpProvider, LiveSecret, StreamState, usage_from
from atp_adapters.providers.base import (
    GEMINI_SIGNED,
    EmbedCall,
    Embeddings,
    ProviderBatch,
    ProviderError,
    ProviderRequest,
    unsupported,
)
from atp_adapters.providers.gemini_encode import encode_gemini
from atp_adapters.providers.gemini_extra import GeminiExtras
from atp_adapters.providers.image_fetch import FetchLimits, ImageFetcher, remote_images
from atp_common import config

__all__ = ["GeminiProvider", "encode_gemini"]

DEFAULT_GEMINI_VERSION = "v1beta"
_FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}


def _usage(metadata: dict[str, Any]) -> chat_pb2.Usage:
    thoughts = metadata.get("thoughtsTokenCount") or 0
    # Gemini counts thinking apart from the candidates; OpenAI's completion tokens include reasoning.
    usage = usage_from(
        metadata.get("promptTokenCount"),
        (metadata.get("candidatesTokenCount") or 0) + thoughts,
        metadata.get("cachedContentTokenCount"),
        thoughts,
    )
    for detail in metadata.get("promptTokensDetails") or ():
        if detail.get("modality") == "AUDIO":
            usage.prompt_audio_tokens += detail.get("tokenCount") or 0
    return usage


def _call_id() -> str:
    # Gemini's function calls carry no id in most versions; OpenAI clients need one to answer with.
    return "call_" + secrets.token_hex(12)


def _logprobs(result: dict[str, Any]) -> list[chat_pb2.TokenLogprob]:
    """logprobsResult as token log probabilities: chosen tokens, each with its step's top candidates."""
    tops = result.get("topCandidates") or []
    out = []
    for step, chosen in enumerate(result.get("chosenCandidates") or ()):
        token = chosen.get("token") or ""
        entry = chat_pb2.TokenLogprob(
            token=token, logprob=chosen.get("logProbability", 0.0), token_bytes=token.encode(), has_bytes=True
        )
        if step < len(tops):
            for top in tops[step].get("candidates") or ():
                text = top.get("token") or ""
                entry.top_logprobs.add(
                    token=text,
                    logprob=top.get("logProbability", 0.0),
                    token_bytes=text.encode(),
                    has_bytes=True,
                )
        out.append(entry)
    return out


class _Reply:
    """Applies GenerateContentResponse objects (whole, or stream chunks) to a DeltaBuilder; each
    candidate is the choice of its index."""

    __slots__ = ("extras", "finish_reasons", "model_version", "response_id", "tool_counts", "usage")

    def __init__(self) -> None:
        self.finish_reasons: dict[int, str] = {}
        self.tool_counts: dict[int, int] = {}
        self.usage: chat_pb2.Usage | None = None
        self.response_id = ""
        self.model_version = ""
        self.extras = GeminiExtras()

    def apply(self, provider: str, payload: dict[str, Any], builder: DeltaBuilder) -> None:
        error = payload.get("error")
        if error:
            raise ProviderError(
                f"provider {provider} sent an error: {error.get('message', '')}",
                kind="http",
                provider=provider,
                status=error.get("code") if isinstance(error.get("code"), int) else None,
            )
        self.extras.add(payload)
        self.response_id = payload.get("responseId") or self.response_id
        self.model_version = payload.get("modelVersion") or self.model_version
        candidates = payload.get("candidates") or ()
        for position, candidate in enumerate(candidates):
            self.candidate(candidate.get("index", position), candidate, builder, len(candidates) > 1)
        if not candidates and (payload.get("promptFeedback") or {}).get("blockReason"):
            self.finish_reasons[0] = "content_filter"
        metadata = payload.get("usageMetadata")
        if metadata:
            self.usage = _usage(metadata)

    def candidate(self, index: int, candidate: dict[str, Any], builder: DeltaBuilder, many: bool) -> None:
        builder.choice(index)
        for part in (candidate.get("content") or {}).get("parts") or ():
            if part.get("thoughtSignature"):
                # Ahead of the part it belongs to, which is where the encoder puts it back.
                builder.reasoning(signature=GEMINI_SIGNED + part["thoughtSignature"])
            text = part.get("text")
            if part.get("thought"):
                builder.reasoning(text or "")
            elif text:
                builder.text(text)
            call = part.get("functionCall")
            if call:
                arguments = orjson.dumps(call.get("args") or {}).decode()
                count = self.tool_counts.get(index, 0)
                builder.tool(count, call.get("id") or _call_id(), "function", call.get("name", ""), arguments)
                self.tool_counts[index] = count + 1
        logprobs = candidate.get("logprobsResult")
        if logprobs:
            builder.logprobs(_logprobs(logprobs))
        for source in (candidate.get("citationMetadata") or {}).get("citationSources") or ():
            builder.annotation(
                chat_pb2.Annotation(
                    type="citation_source",
                    url=source.get("uri") or "",
                    title=source.get("title") or "",
                    start_index=source.get("startIndex") or 0,
                    end_index=source.get("endIndex") or 0,
                )
            )
        reason = candidate.get("finishReason")
        self.extras.candidate(index, candidate, _FINISH_REASONS.get(reason or "") == "content_filter")
        if reason:
            finish = _FINISH_REASONS.get(reason, "stop")
            if finish == "content_filter":
                # Why the candidate was stopped, in Gemini's words, is the refusal.
                builder.refusal(candidate.get("finishMessage") or "")
            # Gemini says STOP when it calls a function; OpenAI's vocabulary says tool_calls.
            if finish == "stop" and self.tool_counts.get(index):
                finish = "tool_calls"
            self.finish_reasons[index] = finish
            if many or index:
                builder.finish(finish)

    def finish(self) -> str:
        if 0 not in self.finish_reasons and self.tool_counts.get(0):
            return "tool_calls"
        return self.finish_reasons.get(0, "")

    def batch(self, deltas: list[chat_pb2.Delta]) -> ProviderBatch:
        return ProviderBatch(
            deltas,
            self.finish() or "stop",
            self.usage,
            response_id=self.response_id,
            model_version=self.model_version,
            choice_finish_reasons=dict(self.finish_reasons),
            provider_fields=self.extras.field(whole=True),
        )


class _GeminiStream(StreamState):
    __slots__ = ("_provider", "_reply")

    def __init__(self, provider: str) -> None:
        super().__init__()
        self._provider = provider
        self._reply = _Reply()

    def event(self, name: bytes, data: bytes) -> bool:
        reply = self._reply
        reply.apply(self._provider, orjson.loads(data), self.deltas)
        self.usage = reply.usage
        self.response_id = reply.response_id
        self.model_version = reply.model_version
        self.choice_finish_reasons = reply.finish_reasons
        self.finish_reason = reply.finish()
        # The stream has no end marker: it ends with the connection's body, after the finishReason.
        return False

    def last_batch(self, deltas: list[chat_pb2.Delta]) -> ProviderBatch:
        self.provider_fields = self._reply.extras.field(whole=False)
        return super().last_batch(deltas)


class GeminiProvider(HttpProvider):
    """Gemini's generateContent API. `base_url` without the version (`https://generativelanguage.
    googleapis.com`); `api_version` picks the version path (default v1beta). Images given by http(s)
    URL are fetched first (image_fetch.py): Gemini takes images only inline."""

    def __init__(self, cfg: config.HttpProvider, api_key: str | LiveSecret, name: str = "gemini") -> None:
        super().__init__(cfg, api_key, name)
        self._version = cfg.api_version or DEFAULT_GEMINI_VERSION
        limits = FetchLimits(
            max_bytes=cfg.image_fetch_max_bytes,
            timeout_s=cfg.image_fetch_timeout_s,
            allow_private=cfg.image_fetch_private_hosts,
        )
        self.images = ImageFetcher(name, limits)

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"x-goog-api-key": api_key} if api_key else {}

    def url_for(self, provider_model: str, stream: bool) -> str:
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"{self._base_url}/{self._version}/models/{provider_model}:{method}"

    def encode(self, request: ProviderRequest) -> bytes:
        return encode_gemini(self.name, request)

    def stream(self, request: ProviderRequest) -> AsyncGenerator[ProviderBatch, None]:
        # Requests without http(s) images take the shared path unchanged, at no extra cost.
        if not remote_images(request.messages):
            return super().stream(request)
        return self._stream_fetched(request)

    async def count_tokens(self, request: ProviderRequest) -> int:
        """countTokens over the generateContent request a call would send (remote images fetched)."""
        if remote_images(request.messages):
            request = replace(
                request, messages=await self.images.inline(request.messages, request.remaining())
            )
        url, body = self.count_call(request.provider_model, orjson.loads(self.encode(request)))
        return await self.post_count(url, orjson.dumps(body), request, "totalTokens")

    def count_call(self, provider_model: str, generate: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """countTokens' URL and body: Google's API takes the whole generateContent request, named."""
        url = f"{self._base_url}/{self._version}/models/{provider_model}:countTokens"
        return url, {"generateContentRequest": {"model": f"models/{provider_model}", **generate}}

    async def _stream_fetched(self, request: ProviderRequest) -> AsyncGenerator[ProviderBatch, None]:
        messages = await self.images.inline(request.messages, request.remaining())
        async with aclosing(super().stream(replace(request, messages=messages))) as batches:
            async for batch in batches:
                yield batch

    async def embed(self, call: EmbedCall) -> Embeddings:
        """batchEmbedContents: one request per input, vectors in input order. Gemini reports no token
        counts for embeddings (the caller estimates them) and has no field for `user`."""
        model = call.provider_model
        requests = []
        for i, item in enumerate(call.inputs):
            if not isinstance(item, str):
                raise unsupported(self.name, f"input[{i}]", "Gemini embeds text, not token ids")
            request: dict[str, Any] = {"model": f"models/{model}", "content": {"parts": [{"text": item}]}}
            if call.dimensions is not None:
                request["outputDimensionality"] = call.dimensions
            requests.append(request)
        url = f"{self._base_url}/{self._version}/models/{model}:batchEmbedContents"
        payload = await self.post_json(url, orjson.dumps({"requests": requests}), call.remaining())
        try:
            vectors = [[float(v) for v in item["values"]] for item in payload["embeddings"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise self._error("malformed", f"malformed embeddings: {exc}") from exc
        if len(vectors) != len(requests):
            raise self._error("malformed", f"{len(vectors)} embeddings for {len(requests)} inputs")
        return Embeddings(vectors)

    async def close(self) -> None:
        await self.images.close()
        await super().close()

    def stream_state(self, request: ProviderRequest) -> StreamState:
        return _GeminiStream(self.name)

    def decode_full(self, payload: Any) -> ProviderBatch:
        builder = DeltaBuilder()
        reply = _Reply()
        reply.apply(self.name, payload, builder)
        return reply.batch(builder.take())
