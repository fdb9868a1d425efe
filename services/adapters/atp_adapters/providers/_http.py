"""What every HTTP provider shares: the pooled session, timeouts, SSE decoding and error translation."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncGenerator, Mapping
from typing import Any, Protocol

import aiohttp
import orjson
from opentelemetry import propagate, trace
from yarl import URL

from atp.common.v1 import chat_pb2
from atp_adapters.providers._deltas import DeltaBuilder
from atp_adapters.providers._errors import error_message, parse_retry_after
from atp_adapters.providers._sse import SseDecoder, SseError, StreamFormatError
from atp_adapters.providers.base import (
    USER_AGENT,
    Provider,
    ProviderBatch,
    ProviderError,
    ProviderRequest,
    http_error,
)
from atp_adapters.secrets import SecretRef
from atp_common import config

# Bounds on what an upstream can make us hold: one SSE line, a whole non-streamed body, an error body.
MAX_BODY_BYTES = 16 << 20
MAX_ERROR_BODY_BYTES = 64 << 10
_MAX_CACHED_URLS = 1024
_DNS_CACHE_TTL_S = 300
# What a provider's stream decoding raises on a body that is not its format.
_MALFORMED_STREAM = (StreamFormatError, orjson.JSONDecodeError, KeyError, TypeError, AttributeError)


__all__ = [
    "DeltaBuilder",
    "HttpProvider",
    "LiveSecret",
    "SseDecoder",
    "SseError",
    "StreamFormatError",
    "StreamState",
    "usage_from",
]


class StreamState(abc.ABC):
    """Per-call decoding state of one provider's streamed wire format."""

    __slots__ = (
        "choice_finish_reasons",
        "deltas",
        "finish_reason",
        "model_version",
        "provider_fields",
        "response_id",
        "service_tier",
        "stop_sequence",
        "usage",
    )

    def __init__(self) -> None:
        self.deltas = DeltaBuilder()
        self.finish_reason = ""
        self.usage: chat_pb2.Usage | None = None
        # What the provider said about the reply as a whole; copied onto the last batch.
        self.response_id = ""
        self.model_version = ""
        self.stop_sequence = ""
        self.service_tier = ""
        self.choice_finish_reasons: dict[int, str] = {}
        self.provider_fields: Mapping[str, bytes] | None = None

    def last_batch(self, deltas: list[chat_pb2.Delta]) -> ProviderBatch:
        """The batch that ends the reply."""
        return ProviderBatch(
            deltas,
            self.finish_reason or "stop",
            self.usage,
            response_id=self.response_id,
            model_version=self.model_version,
            stop_sequence=self.stop_sequence,
            service_tier=self.service_tier,
            choice_finish_reasons=self.choice_finish_reasons,
            provider_fields=self.provider_fields,
        )

    def first_batch(self, deltas: list[chat_pb2.Delta]) -> ProviderBatch:
        """The batch of the first output: it carries what is known of the reply so far."""
        return ProviderBatch(
            deltas,
            response_id=self.response_id,
            model_version=self.model_version,
            service_tier=self.service_tier,
        )

    @abc.abstractmethod
    def event(self, name: bytes, data: bytes) -> bool:
        """Apply one SSE event; True when the provider has said the reply is complete."""

    def complete_at_eof(self) -> bool:
        """Whether a stream that ends here (without the format's end marker) still ended properly."""
        return bool(self.finish_reason)


class LiveSecret(Protocol):
    """A credential that changes over time: a rotating secret (SecretRef) or a cloud token
    (cloud_auth.RefreshingCredential). `value` is read per call; a new `version` means it changed."""

    value: Any
    version: int

    def request_refresh(self) -> None: ...


class HttpProvider(Provider):
    """A provider over HTTP with one pooled aiohttp session, created in the running loop on first use.

    Subclasses say how to build the URL, headers and body, and how to decode replies. Timeouts: connect
    (socket connect), first token (until the response headers and the first event of a stream; for a
    non-streamed call the whole body falls under the total timeout instead, since the headers come only
    after generation), idle (between reads of a stream), total (the whole call, tightened by the request's
    deadline).

    The key is a SecretRef that the resolver keeps current: each call compares its version with the one
    the cached headers were built from (an attribute read), so a rotated key is used from the next call
    on, without a restart. A 401 or 403 asks the resolver to re-read the key early.
    """

    def __init__(self, cfg: config.HttpProvider, api_key: str | LiveSecret, name: str) -> None:
        self.name = name
        self.config = cfg
        self._base_url = cfg.base_url.rstrip("/")
        self._secret: LiveSecret = SecretRef.static(api_key) if isinstance(api_key, str) else api_key
        self._secret_version = -1
        self._headers: dict[str, str] = {}
        self._connect_s = cfg.connect_timeout_s
        self._first_token_s = cfg.first_token_timeout_s
        self._idle_s = cfg.idle_timeout_s
        # The timeout errors' labels, formatted once instead of per call or per read.
        self._first_token_label = f"first-token timeout {self._first_token_s:g}s"
        self._idle_label = f"idle timeout {self._idle_s:g}s"
        self._total_s = cfg.total_timeout_s
        self._urls: dict[tuple[str, bool], URL] = {}
        self._session: aiohttp.ClientSession | None = None

    # What a subclass provides.

    @abc.abstractmethod
    def auth_headers(self, api_key: str) -> dict[str, str]:
        """Headers that carry the key."""

    @abc.abstractmethod
    def url_for(self, provider_model: str, stream: bool) -> str:
        """The endpoint for this model and mode."""

    @abc.abstractmethod
    def encode(self, request: ProviderRequest) -> bytes:
        """The request body. Raises ProviderError(kind='unsupported') for what cannot be honoured."""

    @abc.abstractmethod
    def decode_full(self, payload: Any) -> ProviderBatch:
        """The single batch of a non-streamed reply, from its parsed JSON body."""

    @abc.abstractmethod
    def stream_state(self, request: ProviderRequest) -> StreamState:
        """Fresh decoding state for one streamed call."""

    def request_headers(self, url: URL, body: bytes) -> dict[str, str]:
        """The headers of one call; a provider that signs each request (SigV4) overrides this."""
        return self._current_headers()

    def request_options(self, request: ProviderRequest) -> dict[str, str] | None:
        """Headers that carry something of this request (Anthropic's betas); None for most calls."""
        return None

    def stream_decoder(self) -> SseDecoder | Any:
        """A fresh decoder of the streamed wire format: (event, data) pairs from the bytes read."""
        return SseDecoder()

    # Shared machinery.

    def _current_headers(self) -> dict[str, str]:
        secret = self._secret
        if secret.version != self._secret_version:
            # First call, or the key rotated: build the headers once for every call until the next rotation.
            self._headers = {
                "content-type": "application/json",
                **self.auth_headers(secret.value),
                **self.config.headers,
            }
            self._secret_version = secret.version
        return self._headers

    def _url(self, provider_model: str, stream: bool) -> URL:
        key = (provider_model, stream)
        url = self._urls.get(key)
        if url is None:
            if len(self._urls) >= _MAX_CACHED_URLS:
                self._urls.clear()
            url = self._urls[key] = URL(self.url_for(provider_model, stream), encoded=True)
        return url

    def _client(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.config.max_connections, ttl_dns_cache=_DNS_CACHE_TTL_S
            )
            session = self._session = aiohttp.ClientSession(
                connector=connector,
                # Who calls, for the provider's logs and support; a provider's configured headers win.
                headers={"User-Agent": USER_AGENT},
                # Our own per-phase deadlines bound everything else; aiohttp only bounds the socket connect.
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_s),
                trust_env=False,
            )
        return session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _error(self, kind: Any, message: str, **kwargs: Any) -> ProviderError:
        return ProviderError(f"provider {self.name}: {message}", kind=kind, provider=self.name, **kwargs)

    async def post_count(self, url: str, body: bytes, request: ProviderRequest, key: str) -> int:
        """A count endpoint's answer: POST `body` for `request`, the non-negative integer under `key`."""
        payload = await self.post_json(url, body, request.remaining(), self.request_options(request))
        tokens = payload.get(key) if isinstance(payload, dict) else None
        if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
            raise self._error("malformed", f"token count without {key}")
        return tokens

    async def stream(self, request: ProviderRequest) -> AsyncGenerator[ProviderBatch, None]:
        body, url = self.encode(request), self._url(request.provider_model, request.stream)
        loop = asyncio.get_running_loop()
        total_at, total_label, phase_at, phase_label = self._deadlines(request, loop.time())
        headers = self._traced(self.request_headers(url, body), self.request_options(request))
        response: aiohttp.ClientResponse | None = None
        finished = False
        try:
            try:
                async with asyncio.timeout_at(phase_at):
                    response = await self._client().post(url, data=body, headers=headers)
            except (TimeoutError, aiohttp.ClientConnectionError) as exc:
                raise self._connect_error(exc, f"no response within the {phase_label}") from exc
            if response.status >= 400:
                raise await self._http_error(response, phase_at)
            if not request.stream:
                batch = await self._read_full(response, total_at, total_label)
                finished = True
                yield batch
                return
            state, decoder = self.stream_state(request), self.stream_decoder()
            chunks, first_token = 0, True
            while True:
                try:
                    async with asyncio.timeout_at(phase_at):
                        data = await response.content.readany()
                except (TimeoutError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
                    raise self._read_error(exc, phase_label, chunks, first_token) from exc
                done = False
                try:
                    for name, payload in decoder.feed(data) if data else decoder.close():
                        chunks += 1
                        if done := state.event(name, payload):
                            break
                except ProviderError as exc:  # an error event inside the stream
                    exc.before_first_token, exc.chunks_received = first_token, chunks
                    raise
                except _MALFORMED_STREAM as exc:
                    raise self._malformed_stream(exc, chunks, first_token) from exc
                # At the end of the body, a stream that lacks the format's end marker may still be complete.
                if not (data or done or state.complete_at_eof()):
                    raise self._unfinished_stream(chunks, first_token)
                deltas = state.deltas.take()
                if done or not data:
                    finished = True
                    yield state.last_batch(deltas)
                    return
                if first_token and deltas:
                    # The header goes out with the first output: it carries what is known of the reply.
                    first_token = False
                    yield state.first_batch(deltas)
                elif deltas:
                    yield ProviderBatch(deltas)
                # The first-token phase ends with the first event; from then on reads are bounded by idle.
                if chunks:
                    phase_at, phase_label = loop.time() + self._idle_s, self._idle_label
                    if phase_at > total_at:
                        phase_at, phase_label = total_at, total_label
        finally:
            _release(response, finished)

    def _deadlines(self, request: ProviderRequest, now: float) -> tuple[float, str, float, str]:
        """When the call must be over and when its first phase must be, each with the label its timeout
        error names: the total timeout tightened by the request's deadline; first token, when streamed."""
        total_at = now + self._total_s
        total_label = f"total timeout {self._total_s:g}s"
        remaining = request.remaining()
        if remaining is not None and now + remaining < total_at:
            if remaining <= 0:
                raise self._error("timeout", "request deadline already passed")
            total_at = now + remaining
            total_label = "request deadline"
        if request.stream and now + self._first_token_s < total_at:
            return total_at, total_label, now + self._first_token_s, self._first_token_label
        return total_at, total_label, total_at, total_label

    @staticmethod
    def _traced(headers: dict[str, str], options: dict[str, str] | None = None) -> dict[str, str]:
        """`headers` and the request's own `options`, plus the W3C trace context when the call is inside a
        recorded trace."""
        if options is not None:
            headers = {**headers, **options}
        if trace.get_current_span().is_recording():
            # Inside a traced call: the provider (or a proxy before it) continues our trace.
            headers = dict(headers)
            propagate.inject(headers)
        return headers

    def _connect_error(self, exc: Exception, timed_out: str) -> ProviderError:
        """A failure before the response headers: connect timeout, no response in time, or no connection."""
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return self._error("connect", f"connect timeout {self._connect_s:g}s", retryable=True)
        if isinstance(exc, TimeoutError):
            return self._error("timeout", timed_out)
        return self._error("connect", f"cannot connect: {exc}", retryable=True)

    def _read_error(self, exc: Exception, phase_label: str, chunks: int, first_token: bool) -> ProviderError:
        """A read of the stream that timed out or broke."""
        if isinstance(exc, TimeoutError):
            return self._error(
                "timeout",
                f"no data within the {phase_label} after {chunks} chunks",
                before_first_token=first_token,
                chunks_received=chunks,
            )
        return self._error(
            "cut",
            f"stream broke after {chunks} chunks: {exc}",
            before_first_token=first_token,
            chunks_received=chunks,
            retryable=first_token,
        )

    def _malformed_stream(self, exc: Exception, chunks: int, first_token: bool) -> ProviderError:
        return self._error(
            "malformed",
            f"malformed stream after {chunks} chunks: {exc}",
            before_first_token=first_token,
            chunks_received=chunks,
        )

    def _unfinished_stream(self, chunks: int, first_token: bool) -> ProviderError:
        return self._error(
            "cut",
            f"stream ended without finishing after {chunks} chunks",
            before_first_token=first_token,
            chunks_received=chunks,
            retryable=first_token,
        )

    async def post_json(
        self, url: str, body: bytes, remaining: float | None, headers: dict[str, str] | None = None
    ) -> Any:
        """One non-streamed call (embeddings): POST `body`, the parsed JSON reply, within the total
        timeout tightened by `remaining` seconds; the same error translation as `stream`."""
        loop = asyncio.get_running_loop()
        total = self._total_s if remaining is None else min(self._total_s, remaining)
        if total <= 0:
            raise self._error("timeout", "request deadline already passed")
        deadline = loop.time() + total
        try:
            async with asyncio.timeout_at(deadline):
                target = URL(url, encoded=True)
                sent = self.request_headers(target, body)  # signed per call where the provider signs
                if headers is not None:
                    sent = {**sent, **headers}
                response = await self._client().post(target, data=body, headers=sent)
        except (TimeoutError, aiohttp.ClientConnectionError) as exc:
            raise self._connect_error(exc, f"no response within {total:g}s") from exc
        try:
            if response.status >= 400:
                raise await self._http_error(response, deadline)
            try:
                payload = await self._read_body(response, deadline, MAX_BODY_BYTES)
            except TimeoutError as exc:
                raise self._error("timeout", f"no complete response within {total:g}s") from exc
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
                raise self._error("cut", f"response broke: {exc}", retryable=True) from exc
            try:
                return orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                raise self._error("malformed", f"malformed response: {exc}") from exc
        finally:
            response.release()

    async def _read_body(self, response: aiohttp.ClientResponse, deadline: float, limit: int) -> bytes:
        length = response.content_length
        if length is not None and length > limit:
            raise self._error("malformed", f"response body of {length} bytes exceeds {limit}")
        parts: list[bytes] = []
        size = 0
        async with asyncio.timeout_at(deadline):
            while chunk := await response.content.readany():
                size += len(chunk)
                if size > limit:
                    raise self._error("malformed", f"response body exceeds {limit} bytes")
                parts.append(chunk)
        return b"".join(parts)

    async def _read_full(
        self, response: aiohttp.ClientResponse, deadline: float, label: str
    ) -> ProviderBatch:
        try:
            body = await self._read_body(response, deadline, MAX_BODY_BYTES)
        except TimeoutError as exc:
            raise self._error("timeout", f"no complete response within the {label}") from exc
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
            raise self._error("cut", f"response broke: {exc}", retryable=True) from exc
        try:
            return self.decode_full(orjson.loads(body))
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, IndexError) as exc:
            raise self._error("malformed", f"malformed response: {exc}") from exc

    async def _http_error(self, response: aiohttp.ClientResponse, deadline: float) -> ProviderError:
        try:
            body = await self._read_body(response, deadline, MAX_ERROR_BODY_BYTES)
        except (TimeoutError, aiohttp.ClientError, ProviderError):
            body = b""
        if response.status in (401, 403):
            # Our key may have been rotated at the source: fetch it again (rate-limited by the resolver).
            self._secret.request_refresh()
        message, param, code = (
            error_message(body) if body else (response.reason or "no error body", None, None)
        )
        error = http_error(self.name, response.status, message, parse_retry_after(response.headers))
        error.param, error.code = param, code
        return error


def _release(response: aiohttp.ClientResponse | None, finished: bool) -> None:
    """A read reply's connection back to the pool; one abandoned or failed mid-body dropped, so the
    provider stops generating (and bills no more) instead of a half-read socket returning to the pool."""
    if response is None:
        return
    if finished:
        response.release()
    else:
        response.close()


def usage_from(
    prompt: Any, completion: Any, cached: Any = 0, reasoning: Any = 0, cache_write: Any = 0
) -> chat_pb2.Usage:
    """A provider-reported Usage; missing (None) counts are zero."""
    return chat_pb2.Usage(
        prompt_tokens=int(prompt or 0),
        completion_tokens=int(completion or 0),
        cached_prompt_tokens=int(cached or 0),
        reasoning_tokens=int(reasoning or 0),
        cache_write_tokens=int(cache_write or 0),
    )
