"""OpenAI Chat Completions (and every compatible server, and Azure OpenAI) as a provider."""

from __future__ import annotations

from typing import Any

import orjson

from atp.common.v1 import chat_pb2
from atp_adapters.providers._http import DeltaBuilder, HttpProvider, LiveSecret, StreamState, usage_from
from atp_adapters.providers.base import (
    EmbedCall,
    Embeddings,
    ProviderBatch,
    ProviderError,
    ProviderRequest,
    unsupported,
)
from atp_adapters.providers.openai_count import Untranslatable, responses_count_body
from atp_adapters.providers.openai_encode import encode_openai
from atp_adapters.providers.openai_extra import StreamExtras, reply_extras
from atp_common import config

_FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
_DONE = b"[DONE]"
DEFAULT_AZURE_API_VERSION = "2024-10-21"

__all__ = ["DEFAULT_AZURE_API_VERSION", "OpenAIProvider", "encode_openai"]


def _finish(reason: str | None) -> str:
    return _FINISH_REASONS.get(reason or "", "stop")


def _usage(usage: dict[str, Any]) -> chat_pb2.Usage:
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    out = usage_from(
        usage.get("prompt_tokens"),
        usage.get("completion_tokens"),
        prompt_details.get("cached_tokens"),
        completion_details.get("reasoning_tokens"),
    )
    out.prompt_audio_tokens = int(prompt_details.get("audio_tokens") or 0)
    out.completion_audio_tokens = int(completion_details.get("audio_tokens") or 0)
    out.accepted_prediction_tokens = int(completion_details.get("accepted_prediction_tokens") or 0)
    out.rejected_prediction_tokens = int(completion_details.get("rejected_prediction_tokens") or 0)
    return out


def _token_logprobs(entries: list[dict[str, Any]] | None) -> list[chat_pb2.TokenLogprob]:
    out = []
    for entry in entries or ():
        raw = entry.get("bytes")
        logprob = chat_pb2.TokenLogprob(
            token=entry.get("token") or "",
            logprob=float(entry.get("logprob") or 0.0),
            token_bytes=bytes(raw) if raw is not None else b"",
            has_bytes=raw is not None,
        )
        for top in entry.get("top_logprobs") or ():
            top_raw = top.get("bytes")
            logprob.top_logprobs.add(
                token=top.get("token") or "",
                logprob=float(top.get("logprob") or 0.0),
                token_bytes=bytes(top_raw) if top_raw is not None else b"",
                has_bytes=top_raw is not None,
            )
        out.append(logprob)
    return out


def _annotation(raw: dict[str, Any]) -> chat_pb2.Annotation:
    kind = raw.get("type") or ""
    detail = raw.get(kind) or {}
    return chat_pb2.Annotation(
        type=kind,
        url=detail.get("url") or "",
        title=detail.get("title") or "",
        start_index=int(detail.get("start_index") or 0),
        end_index=int(detail.get("end_index") or 0),
    )


def _audio(raw: dict[str, Any]) -> chat_pb2.AudioDelta:
    return chat_pb2.AudioDelta(
        id=raw.get("id") or "",
        data=raw.get("data") or "",
        transcript=raw.get("transcript") or "",
        expires_at=int(raw.get("expires_at") or 0),
    )


def _tool_calls(builder: DeltaBuilder, calls: list[dict[str, Any]], whole: bool) -> None:
    for position, call in enumerate(calls):
        kind = call.get("type") or ("function" if whole else "")
        if kind == "custom":
            custom = call.get("custom") or {}
            name, arguments = custom.get("name") or "", custom.get("input") or ""
        else:
            function = call.get("function") or {}
            name, arguments = function.get("name") or "", function.get("arguments") or ""
        index = position if whole else call.get("index", 0)
        builder.tool(index, call.get("id") or "", kind, name, arguments)


def _apply(builder: DeltaBuilder, message: dict[str, Any], whole: bool) -> None:
    """One choice's message (whole) or delta (streamed) into the builder, in reply order."""
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        builder.reasoning(reasoning)
    content = message.get("content")
    if content:
        builder.text(content)
    refusal = message.get("refusal")
    if refusal:
        builder.refusal(refusal)
    calls = message.get("tool_calls")
    if calls:
        _tool_calls(builder, calls, whole)
    for annotation in message.get("annotations") or ():
        builder.annotation(_annotation(annotation))
    audio = message.get("audio")
    if audio:
        builder.audio(_audio(audio))


def _apply_logprobs(builder: DeltaBuilder, logprobs: dict[str, Any] | None) -> None:
    if not logprobs:
        return
    builder.logprobs(_token_logprobs(logprobs.get("content")))
    refusal = _token_logprobs(logprobs.get("refusal"))
    if refusal:
        builder.refusal_logprobs(refusal)


class _Choices:
    """Finish reasons per choice: choice 0's is the reply's, all of them go out when n > 1."""

    __slots__ = ("reasons",)

    def __init__(self) -> None:
        self.reasons: dict[int, str] = {}

    def finish(self, builder: DeltaBuilder, index: int, reason: str) -> None:
        self.reasons[index] = reason
        if index:
            builder.finish(reason)

    def batch_fields(self, builder: DeltaBuilder) -> dict[int, str]:
        many = len(self.reasons) > 1 or any(self.reasons)
        if many and 0 in self.reasons:
            # Choice 0 finished before another choice was known to exist: mark its delta now.
            builder.choice(0)
            builder.finish(self.reasons[0])
        return self.reasons if many else {}


class _OpenAIStream(StreamState):
    __slots__ = ("_choices", "_extras", "_provider")

    def __init__(self, provider: str) -> None:
        super().__init__()
        self._provider = provider
        self._choices = _Choices()
        self._extras = StreamExtras()

    def event(self, name: bytes, data: bytes) -> bool:
        if data == _DONE:
            return True
        chunk = orjson.loads(data)
        error = chunk.get("error")
        if error:
            message = error.get("message", "") if isinstance(error, dict) else str(error)
            raise ProviderError(
                f"provider {self._provider} sent an error in the stream: {message}",
                kind="http",
                provider=self._provider,
            )
        self._extras.add(chunk)
        if not self.response_id:
            self.response_id = chunk.get("id") or ""
            self.model_version = chunk.get("system_fingerprint") or ""
            self.service_tier = chunk.get("service_tier") or ""
        builder = self.deltas
        for choice in chunk.get("choices") or ():
            index = choice.get("index", 0)
            builder.choice(index)
            delta = choice.get("delta")
            if delta:
                _apply(builder, delta, whole=False)
            _apply_logprobs(builder, choice.get("logprobs"))
            reason = choice.get("finish_reason")
            if reason:
                self._choices.finish(builder, index, _finish(reason))
                if index == 0:
                    self.finish_reason = _finish(reason)
        usage = chunk.get("usage")
        if usage:
            self.usage = _usage(usage)
        return False

    def last_batch(self, deltas: list[chat_pb2.Delta]) -> ProviderBatch:
        self.choice_finish_reasons = self._choices.batch_fields(self.deltas)
        self.provider_fields = self._extras.field()
        deltas = deltas + self.deltas.take()
        return super().last_batch(deltas)


def decode_openai(payload: dict[str, Any]) -> ProviderBatch:
    """A whole Chat Completions reply as one batch: every choice, in index order."""
    builder = DeltaBuilder()
    choices = _Choices()
    finish = "stop"
    for choice in sorted(payload.get("choices") or (), key=lambda c: c.get("index", 0)):
        index = choice.get("index", 0)
        builder.choice(index)
        _apply(builder, choice.get("message") or {}, whole=True)
        _apply_logprobs(builder, choice.get("logprobs"))
        reason = _finish(choice.get("finish_reason"))
        choices.finish(builder, index, reason)
        if index == 0:
            finish = reason
    reasons = choices.batch_fields(builder)
    usage = payload.get("usage")
    return ProviderBatch(
        builder.take(),
        finish,
        _usage(usage) if usage else None,
        response_id=payload.get("id") or "",
        model_version=payload.get("system_fingerprint") or "",
        service_tier=payload.get("service_tier") or "",
        choice_finish_reasons=reasons,
        provider_fields=reply_extras(payload),
    )


class OpenAIProvider(HttpProvider):
    """OpenAI's Chat Completions API; `type: azure` uses Azure's deployment path and `api-key` header.

    `base_url` includes the version path for OpenAI-compatible servers (`https://api.openai.com/v1`) and
    is the resource endpoint for Azure (`https://NAME.openai.azure.com`).
    """

    def __init__(self, cfg: config.HttpProvider, api_key: str | LiveSecret, name: str = "openai") -> None:
        self._azure = cfg.type == "azure"
        self._entra = cfg.auth == "entra"
        self._token_limit_field = cfg.token_limit
        super().__init__(cfg, api_key, name)
        self._api_version = cfg.api_version or DEFAULT_AZURE_API_VERSION

    def auth_headers(self, api_key: str) -> dict[str, str]:
        if not api_key:
            return {}
        if self._azure and not self._entra:
            return {"api-key": api_key}
        # OpenAI's key, or an Entra ID token for Azure.
        return {"authorization": f"Bearer {api_key}"}

    def _endpoint(self, provider_model: str, operation: str) -> str:
        if self._azure:
            return (
                f"{self._base_url}/openai/deployments/{provider_model}/{operation}"
                f"?api-version={self._api_version}"
            )
        return f"{self._base_url}/{operation}"

    def url_for(self, provider_model: str, stream: bool) -> str:
        return self._endpoint(provider_model, "chat/completions")

    def encode(self, request: ProviderRequest) -> bytes:
        return encode_openai(request, self._token_limit_field, self.name)

    def stream_state(self, request: ProviderRequest) -> StreamState:
        return _OpenAIStream(self.name)

    def decode_full(self, payload: Any) -> ProviderBatch:
        return decode_openai(payload)

    async def count_tokens(self, request: ProviderRequest) -> int:
        """OpenAI's input token count of the Responses API, given the chat request in its terms."""
        if self._azure:
            raise unsupported(self.name, "model", "counting tokens on Azure OpenAI is not built")
        try:
            body = responses_count_body(orjson.loads(self.encode(request)))
        except Untranslatable as exc:
            raise unsupported(self.name, "messages", f"OpenAI's token count has no place for {exc}") from None
        url = self._endpoint(request.provider_model, "responses/input_tokens")
        try:
            return await self.post_count(url, orjson.dumps(body), request, "input_tokens")
        except ProviderError as exc:
            if exc.status in (404, 405):
                # An OpenAI-compatible server (vLLM, Ollama, ...) without OpenAI's count endpoint.
                raise unsupported(self.name, "model", "this server has no responses/input_tokens") from exc
            raise

    async def embed(self, call: EmbedCall) -> Embeddings:
        """OpenAI's /embeddings (Azure's deployment path): texts or token ids, float vectors in input order."""
        texts = sum(isinstance(item, str) for item in call.inputs)
        if 0 < texts < len(call.inputs):
            # OpenAI takes an array of strings or an array of token arrays, never both in one request.
            raise unsupported(self.name, "input", "OpenAI cannot embed strings and token ids in one request")
        body: dict[str, Any] = {
            "model": call.provider_model,
            "input": [item if isinstance(item, str) else list(item) for item in call.inputs],
            "encoding_format": "float",
        }
        if call.dimensions is not None:
            body["dimensions"] = call.dimensions
        if call.user:
            body["user"] = call.user
        payload = await self.post_json(
            self._endpoint(call.provider_model, "embeddings"), orjson.dumps(body), call.remaining()
        )
        try:
            data = sorted(payload["data"], key=lambda item: item.get("index", 0))
            vectors = [[float(v) for v in item["embedding"]] for item in data]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self._error("malformed", f"malformed embeddings response: {exc}") from exc
        if len(vectors) != len(call.inputs):
            raise self._error("malformed", f"{len(vectors)} embeddings for {len(call.inputs)} inputs")
        usage = payload.get("usage")
        return Embeddings(vectors, usage_from(usage.get("prompt_tokens"), 0) if usage else None)
