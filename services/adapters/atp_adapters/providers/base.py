"""The provider contract: one request in, an async iterator of batches out, typed errors on failure."""

from __future__ import annotations

import abc
import hashlib
import importlib.metadata
import re
import time
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from atp.common.v1 import chat_pb2
from atp_adapters.providers._errors import exceeds_context
from atp_common.errors import (
    CONTEXT_LENGTH_EXCEEDED,
    AtpError,
    DeadlineExceeded,
    InvalidArgument,
    PayloadTooLarge,
    RateLimited,
    Unavailable,
    UpstreamError,
)

FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]
ErrorKind = Literal["http", "timeout", "connect", "malformed", "cut", "unsupported"]

# Statuses that say the request itself is wrong: retrying it, or opening a circuit over it, cannot help.
_REQUEST_FAULT_STATUSES = frozenset((400, 413, 422))
_RETRYABLE_STATUSES = frozenset((408, 409, 425, 429, 500, 502, 503, 504, 529))

# Who calls, on every request ATP makes for a client (providers, the image hosts Gemini needs fetched):
# some hosts refuse a library's default agent.
USER_AGENT = f"atp/{importlib.metadata.version('atp')}"


@dataclass(slots=True)
class ProviderRequest:
    """What the adapters ask one provider for. Built once per attempt; providers never mutate it."""

    provider_model: str
    messages: Sequence[chat_pb2.ChatMessage]
    params: chat_pb2.GenerationParams
    stream: bool = True
    include_usage: bool = True
    request_id: str = ""
    # Absolute time on the time.monotonic() clock after which the whole call must have ended; None means
    # only the provider's own timeouts apply. Absolute, so failover attempts share one budget.
    deadline: float | None = None
    # The model takes only adaptive thinking (Anthropic's API): effort and budgets are sent in that form.
    adaptive_thinking: bool = False

    def remaining(self) -> float | None:
        """Seconds left before the deadline (may be negative), or None without a deadline."""
        return None if self.deadline is None else self.deadline - time.monotonic()


@dataclass(slots=True)
class ProviderBatch:
    """Everything one network read produced.

    `deltas` carries the reply pieces that arrived together (possibly none). `finish_reason` and `usage`
    are set only on the last batch of a call, which always has a finish_reason; usage is None when the
    provider did not report it (then the caller estimates).
    """

    deltas: list[chat_pb2.Delta] = field(default_factory=list)
    finish_reason: str = ""
    usage: chat_pb2.Usage | None = None
    # Also only on the last batch: the provider's id for the reply, its model version, the stop sequence
    # that ended it, the service tier that served it, and each choice's finish reason by choice index
    # (requests with n > 1).
    response_id: str = ""
    model_version: str = ""
    stop_sequence: str = ""
    service_tier: str = ""
    choice_finish_reasons: dict[int, str] = field(default_factory=dict)
    # Reply fields of the provider's own API with no place in the internal reply, as JSON by name.
    provider_fields: Mapping[str, bytes] | None = None


@dataclass(slots=True)
class EmbedCall:
    """What the adapters ask one provider to embed: texts, or token ids (OpenAI takes both)."""

    provider_model: str
    inputs: Sequence[str | Sequence[int]]
    dimensions: int | None = None
    user: str = ""
    request_id: str = ""
    # Absolute time on the time.monotonic() clock, as in ProviderRequest.
    deadline: float | None = None

    def remaining(self) -> float | None:
        """Seconds left before the deadline (may be negative), or None without a deadline."""
        return None if self.deadline is None else self.deadline - time.monotonic()


@dataclass(slots=True)
class Embeddings:
    """One vector per input, in input order; usage None when the provider did not report it."""

    vectors: list[list[float]]
    usage: chat_pb2.Usage | None = None


class ProviderError(Exception):
    """A provider call failed. Carries what failover, retry and circuit breaking need to decide.

    `to_atp()` is the error to show the caller when no other candidate helps.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: ErrorKind,
        provider: str = "",
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        before_first_token: bool = True,
        chunks_received: int = 0,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.provider = provider
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.before_first_token = before_first_token
        self.chunks_received = chunks_received
        self.param = param
        # The provider's own error code (OpenAI's `code`), where its error body has one.
        self.code = code

    def __repr__(self) -> str:
        return (
            f"ProviderError({self.message!r}, kind={self.kind!r}, status={self.status}, "
            f"retryable={self.retryable}, before_first_token={self.before_first_token})"
        )

    @property
    def is_request_fault(self) -> bool:
        """The request itself is at fault (bad argument, unsupported parameter), not the provider."""
        return self.kind == "unsupported" or self.status in _REQUEST_FAULT_STATUSES

    @property
    def counts_for_circuit(self) -> bool:
        """Whether this failure says something about the provider's health (for the circuit breaker)."""
        return not self.is_request_fault

    @property
    def fail_over(self) -> bool:
        """Whether the next candidate may be tried: nothing was emitted yet. A request fault still fails
        over, because another provider may accept what this one refused (a parameter, a context size)."""
        return self.before_first_token

    @property
    def reason(self) -> str | None:
        """What the caller is told went wrong with its request, in OpenAI's code words: the prompt does
        not fit the context window (however the provider put it), else the provider's own code."""
        if self.kind != "http" or self.status not in _REQUEST_FAULT_STATUSES:
            return None
        if exceeds_context(self.message, self.code):
            return CONTEXT_LENGTH_EXCEEDED
        return self.code

    def to_atp(self) -> AtpError:
        """The typed error for the caller (one table: status and kind to ATP error class)."""
        if self.kind == "unsupported":
            return InvalidArgument(self.message, param=self.param)
        if self.kind == "timeout":
            return DeadlineExceeded(self.message)
        if self.kind == "connect":
            return Unavailable(self.message, retry_after=self.retry_after)
        if self.status == 429:
            return RateLimited(self.message, retry_after=self.retry_after)
        reason = self.reason
        param = self.param or ("messages" if reason == CONTEXT_LENGTH_EXCEEDED else None)
        if self.status == 413:
            return PayloadTooLarge(self.message, param=param, reason=reason)
        if self.status in (400, 422):
            return InvalidArgument(self.message, param=param, reason=reason)
        # 401/403 mean our key or account is wrong, 404 our model name: the caller did nothing wrong.
        return UpstreamError(self.message, retry_after=self.retry_after)


def tool_description(tool: chat_pb2.Tool) -> str:
    """A tool's description as providers without Anthropic's input_examples read it: the examples at the
    end, one JSON object a line, so the model still sees them."""
    if not tool.input_examples_json:
        return tool.description
    examples = "\n".join(orjson.dumps(example).decode() for example in orjson.loads(tool.input_examples_json))
    lead = f"{tool.description}\n\n" if tool.description else ""
    return f"{lead}Examples of valid input:\n{examples}"


# A thought signature is valid only at the provider that wrote it. Claude's go out as Claude gave them (a
# Messages client may have them from Anthropic itself); Gemini's go out marked, so each encoder can tell
# its own from another's and send another's reasoning nowhere.
GEMINI_SIGNED = "atp-gemini:"


def from_gemini(part: chat_pb2.ContentPart) -> bool:
    """Whether `part` is thinking Gemini signed (foreign to every other provider)."""
    return part.WhichOneof("kind") == "thinking" and part.thinking.signature.startswith(GEMINI_SIGNED)


def keyed_cache_hint(params: chat_pb2.GenerationParams) -> chat_pb2.CacheControl | None:
    """OpenAI's prompt cache key (this prompt comes again) as a whole-request cache hint for Claude, which
    caches only what is marked: kept as long as Claude keeps a prefix when OpenAI was asked for 24 hours.
    None without a key or retention."""
    if not (params.prompt_cache_key or params.prompt_cache_retention):
        return None
    return chat_pb2.CacheControl(type="ephemeral", ttl="1h" if params.prompt_cache_retention == "24h" else "")


def blank_text(part: chat_pb2.ContentPart) -> bool:
    """An empty text part without citations (an image sent with no words): it says nothing, and
    Anthropic's and Gemini's APIs refuse an empty text block."""
    return part.WhichOneof("kind") == "text" and not part.text and not part.citations_json


_CLAUDE_ID_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")
# OpenAI's Chat Completions takes tool call ids of at most 40 characters, of any kind.
OPENAI_TOOL_ID_MAX = 40


def fitted_tool_id(call_id: str, limit: int, unsafe: re.Pattern[str] | None = None) -> str:
    """A tool call id as an API takes it: at most `limit` characters, none that `unsafe` matches. Ids are
    the conversation's own references, so one another provider or client made (Kimi's
    `functions.get_weather:0`, a framework's 46-character id) is rewritten the same way in its call and
    its result, keeping a digest of the original so two ids never meet; replies carry the provider's
    own ids, so nothing maps back."""
    if len(call_id) <= limit and (unsafe is None or unsafe.search(call_id) is None):
        return call_id
    digest = hashlib.sha256(call_id.encode()).hexdigest()[:12]
    readable = unsafe.sub("_", call_id) if unsafe is not None else call_id
    return f"{readable[: limit - len(digest) - 1]}_{digest}"


def claude_tool_id(call_id: str) -> str:
    """A tool call id as Claude's APIs take it: Anthropic's letters, digits, _ and -; Bedrock's 64."""
    return fitted_tool_id(call_id, 64, _CLAUDE_ID_UNSAFE)


# A recalled tool's input schema: any object (the history's calls are not checked against it).
_ANY = {"type": "object"}


def recalled_tools(names: Iterable[str]) -> list[dict[str, Any]]:
    """Claude's tool entries for the functions a conversation called (`names`), for a request that offers
    none: Claude refuses tool history without tool definitions (a summary after an agent loop sends
    exactly that). Sent with tool_choice none, they name what the history used and cannot be called."""
    return [
        {
            "name": name,
            "description": "Called earlier in this conversation; not offered now.",
            "input_schema": _ANY,
        }
        for name in dict.fromkeys(names)
    ]


def claude_sampling(params: chat_pb2.GenerationParams) -> dict[str, float]:
    """`temperature` and `top_p` as Claude is sent them (the set ones). Claude's newer models refuse the
    two together, so when both are set, one at Claude's own default (top_p 1 keeps every token,
    temperature 1) is honoured by leaving it out; two non-default values go as sent."""
    has_temperature, has_top_p = params.HasField("temperature"), params.HasField("top_p")
    if has_temperature and has_top_p:
        if params.top_p >= 1:
            return {"temperature": params.temperature}
        if params.temperature == 1:
            return {"top_p": params.top_p}
        return {"temperature": params.temperature, "top_p": params.top_p}
    if has_temperature:
        return {"temperature": params.temperature}
    return {"top_p": params.top_p} if has_top_p else {}


# A cache hint's lifetime in Claude's terms (Anthropic's API, Bedrock): its own 5m and 1h, and OpenAI's
# breakpoint lifetime, a minimum, as the shortest of Claude's that keeps it. Claude keeps nothing 12 hours.
_CLAUDE_CACHE_TTLS = {"5m": "5m", "1h": "1h", "30m": "1h"}


def claude_cache_ttl(provider: str, path: str, ttl: str) -> str:
    """The cache lifetime Claude is sent for a hint's `ttl`; unsupported when Claude keeps none as long."""
    try:
        return _CLAUDE_CACHE_TTLS[ttl]
    except KeyError:
        raise unsupported(provider, path, f"a cache lifetime of {ttl} (Claude keeps 5m or 1h)") from None


def unsupported(provider: str, param: str, why: str = "") -> ProviderError:
    """A parameter this provider cannot honour; refusing is better than dropping it silently."""
    detail = f": {why}" if why else ""
    return ProviderError(
        f"provider {provider} does not support parameter {param!r}{detail}",
        kind="unsupported",
        provider=provider,
        param=param,
    )


def http_error(
    provider: str, status: int, message: str, retry_after: float | None, *, before_first_token: bool = True
) -> ProviderError:
    """The error for an HTTP error status from a provider."""
    return ProviderError(
        f"provider {provider} answered HTTP {status}: {message}",
        kind="http",
        provider=provider,
        status=status,
        retryable=status in _RETRYABLE_STATUSES,
        retry_after=retry_after,
        before_first_token=before_first_token,
    )


class Provider(abc.ABC):
    """One configured provider. `stream` is safe to call concurrently; `close` releases its pool."""

    name: str

    @abc.abstractmethod
    def stream(self, request: ProviderRequest) -> AsyncGenerator[ProviderBatch, None]:
        """Call the provider and yield one batch per network read, the last one with a finish_reason.

        Non-streamed requests yield exactly one batch. Raises ProviderError. Close the iterator (use
        `contextlib.aclosing`) when abandoning it early, so the upstream connection is closed at once.
        """

    async def embed(self, call: EmbedCall) -> Embeddings:
        """Embeddings for `call.inputs`. Raises ProviderError; unsupported unless the provider has them."""
        raise unsupported(self.name, "model", "this provider has no embeddings")

    async def count_tokens(self, request: ProviderRequest) -> int:
        """The input tokens `request` would use, as the provider counts them (its max_tokens and stream
        left out). Raises ProviderError; unsupported unless the provider can count."""
        raise unsupported(self.name, "model", "this provider cannot count tokens")

    async def close(self) -> None:  # noqa: B027 - a provider without resources has nothing to close
        """Release connections. The provider must not be used afterwards."""
