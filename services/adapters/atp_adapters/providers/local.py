"""The built-in deterministic provider: echoes the last user message, paced like a real model."""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from collections.abc import AsyncGenerator, Sequence

import orjson

from atp.common.v1 import chat_pb2
from atp_adapters.providers.base import (
    EmbedCall,
    Embeddings,
    Provider,
    ProviderBatch,
    ProviderError,
    ProviderRequest,
)
from atp_adapters.providers.local_schema import schema_instance
from atp_common import config

# Word-ish tokens that concatenate back to the text exactly: leading whitespace sticks to its word.
_TOKEN = re.compile(r"\s*\S+|\s+")
# Per-message overhead in the prompt estimate, as OpenAI's chat format spends on role and delimiters.
_MESSAGE_OVERHEAD_TOKENS = 3
_JSON_FORMATS = frozenset(("json_object", "json_schema"))
# The echo's embeddings: this many dimensions unless the request asks for fewer or more.
EMBEDDING_DIMENSIONS = 64
_MAX_EMBEDDING_DIMENSIONS = 4096


def count_prompt_tokens(messages: Sequence[chat_pb2.ChatMessage]) -> int:
    """The local provider's prompt token count: whitespace-separated words plus 3 per message."""
    total = 0
    for message in messages:
        total += len(_message_text(message).split()) + _MESSAGE_OVERHEAD_TOKENS
    return total


def _part_text(part: chat_pb2.ContentPart) -> str:
    """What the echo reads of a part: text as is, media as a bracketed mark that proves it arrived."""
    kind = part.WhichOneof("kind")
    if kind == "text":
        return part.text
    if kind == "image":
        return "[image]"
    if kind == "audio":
        return f"[audio {part.audio.format}]"
    if kind == "file":
        file = part.file
        return f"[file {file.filename or file.title or file.file_id or file.url or file.media_type}]"
    if kind == "search_result":
        return f"[search result {part.search_result.title}]"
    return ""


def _arguments(parameters_json: bytes, text: str) -> str:
    """A function call's arguments: an instance of the tool's parameters, else `{"text": ...}`."""
    instance = schema_instance(parameters_json, text)
    return orjson.dumps({"text": text} if instance is None else instance).decode()


def _message_text(message: chat_pb2.ChatMessage) -> str:
    if not message.parts:
        return message.content
    return " ".join(text for part in message.parts if (text := _part_text(part)))


class LocalProvider(Provider):
    """Replies `reply_prefix + last user message`, split into word-ish tokens.

    Behaviour, all deterministic: `latency_ms` passes before the first token; with `tokens_per_second`
    each streamed batch holds one token, paced, and a non-streamed reply takes as long in total; at 0 the
    whole reply is one batch at once. `stop` cuts the reply before the first stop string, `max_tokens`
    truncates it (finish_reason `length`). A `json_schema` response format gets the schema's smallest
    instance with the reply in its strings (so SDK `parse` helpers validate it), `json_object` (or a
    schema without properties) `{"echo": reply}`. With tools and a `tool_choice` of `required`, a named
    function or custom tool, it calls that tool (or the first one) with an instance of its parameters
    (`{"text": last user message}` when they name none; a custom tool gets the text itself). Media parts
    are echoed as marks (`[image]`, `[audio wav]`, `[file name]`). `n` gives n identical choices;
    `logprobs` gives each token log probability 0 (and `top_logprobs` alternatives at -inf's stand-in,
    -9999); a reasoning request first reasons `thinking about: <text>`. Sampling parameters (seed,
    temperature, penalties, top_k) change nothing in an echo. Usage is exact: completion tokens are the
    tokens emitted per choice times n, prompt tokens follow `count_prompt_tokens`.
    """

    def __init__(self, cfg: config.LocalProvider, name: str = "local") -> None:
        self.name = name
        self._latency_s = cfg.latency_ms / 1000.0
        self._interval_s = 1.0 / cfg.tokens_per_second if cfg.tokens_per_second > 0 else 0.0
        self._prefix = cfg.reply_prefix

    def _last_user_text(self, request: ProviderRequest) -> str:
        for message in reversed(request.messages):
            if message.role == "user":
                return _message_text(message)
        return ""

    def _tool_call(self, request: ProviderRequest, user_text: str) -> chat_pb2.ToolCallDelta | None:
        params = request.params
        if not params.tools or not params.HasField("tool_choice"):
            return None
        choice = params.tool_choice
        tools = {tool.name: tool for tool in params.tools}
        if choice.mode in ("function", "custom") and choice.name in tools:
            tool = tools[choice.name]
        elif choice.mode == "required":
            tool = params.tools[0]
        elif choice.mode == "allowed_tools" and choice.allowed_mode == "required" and choice.allowed:
            tool = tools.get(choice.allowed[0], params.tools[0])
        else:
            return None
        custom = tool.type == "custom"
        return chat_pb2.ToolCallDelta(
            index=0,
            id="call_local_0",
            type="custom" if custom else "function",
            function_name=tool.name,
            arguments=user_text if custom else _arguments(tool.parameters_json, user_text),
        )

    async def _sleep(self, seconds: float, request: ProviderRequest) -> None:
        remaining = request.remaining()
        if remaining is not None and remaining < seconds:
            await asyncio.sleep(max(remaining, 0.0))
            raise ProviderError(f"provider {self.name}: deadline passed", kind="timeout", provider=self.name)
        await asyncio.sleep(seconds)

    def _reply_tokens(self, request: ProviderRequest, user_text: str) -> tuple[list[str], str]:
        params = request.params
        text = self._prefix + user_text
        if params.response_format.type in _JSON_FORMATS:
            instance = schema_instance(params.response_format.schema_json, text)
            text = orjson.dumps({"echo": text} if instance is None else instance).decode()
        finish = "stop"
        for stop in params.stop:
            cut = text.find(stop) if stop else -1
            if cut >= 0:
                text = text[:cut]
        tokens = _TOKEN.findall(text)
        if params.HasField("max_tokens") and len(tokens) > params.max_tokens:
            tokens = tokens[: max(params.max_tokens, 0)]
            finish = "length"
        return tokens, finish

    async def stream(self, request: ProviderRequest) -> AsyncGenerator[ProviderBatch, None]:
        params = request.params
        user_text = self._last_user_text(request)
        prompt_tokens = count_prompt_tokens(request.messages)
        tool_call = self._tool_call(request, user_text)
        if tool_call is not None:
            usage = chat_pb2.Usage(
                prompt_tokens=prompt_tokens, completion_tokens=len(_TOKEN.findall(tool_call.arguments))
            )
            if self._latency_s:
                await self._sleep(self._latency_s, request)
            delta = chat_pb2.Delta(role="assistant", tool_calls=[tool_call])
            yield ProviderBatch([delta], "tool_calls", usage)
            return

        tokens, finish = self._reply_tokens(request, user_text)
        choices = params.n if params.n > 1 else 1
        usage = chat_pb2.Usage(prompt_tokens=prompt_tokens, completion_tokens=len(tokens) * choices)
        reasoning = params.HasField("reasoning") and _wants_reasoning(params.reasoning)
        if reasoning:
            usage.reasoning_tokens = len(_TOKEN.findall(_REASONING_PREFIX + user_text))
            usage.completion_tokens += usage.reasoning_tokens
        interval = self._interval_s
        if not request.stream or not interval or len(tokens) <= 1 or choices > 1 or reasoning:
            delay = self._latency_s + interval * max(len(tokens) - 1, 0)
            if delay:
                await self._sleep(delay, request)
            deltas = self._whole(params, tokens, choices, finish, user_text if reasoning else None)
            reasons = {index: finish for index in range(choices)} if choices > 1 else {}
            yield ProviderBatch(deltas, finish, usage, choice_finish_reasons=reasons)
            return

        if self._latency_s:
            await self._sleep(self._latency_s, request)
        logprobs = params.logprobs
        last = len(tokens) - 1
        first = chat_pb2.Delta(role="assistant", content=tokens[0])
        if logprobs:
            first.logprobs.append(_logprob(tokens[0], params.top_logprobs))
        yield ProviderBatch([first])
        for i in range(1, last + 1):
            await self._sleep(interval, request)
            delta = chat_pb2.Delta(content=tokens[i])
            if logprobs:
                delta.logprobs.append(_logprob(tokens[i], params.top_logprobs))
            yield ProviderBatch([delta], finish, usage) if i == last else ProviderBatch([delta])

    def _whole(
        self,
        params: chat_pb2.GenerationParams,
        tokens: list[str],
        choices: int,
        finish: str,
        reasoning_about: str | None,
    ) -> list[chat_pb2.Delta]:
        deltas = []
        text = "".join(tokens)
        for index in range(choices):
            if reasoning_about is not None:
                deltas.append(
                    chat_pb2.Delta(
                        role="assistant", choice=index, reasoning=_REASONING_PREFIX + reasoning_about
                    )
                )
            if not tokens and reasoning_about is None and choices == 1:
                continue
            delta = chat_pb2.Delta(content=text, choice=index)
            if reasoning_about is None:
                delta.role = "assistant"
            if params.logprobs:
                delta.logprobs.extend(_logprob(token, params.top_logprobs) for token in tokens)
            if choices > 1:
                delta.finish_reason = finish
            deltas.append(delta)
        return deltas

    async def count_tokens(self, request: ProviderRequest) -> int:
        """The prompt tokens its replies report for the same messages."""
        return count_prompt_tokens(request.messages)

    async def embed(self, call: EmbedCall) -> Embeddings:
        """Deterministic unit vectors from each input's SHA-256 (equal inputs, equal vectors)."""
        dimensions = call.dimensions or EMBEDDING_DIMENSIONS
        if not 1 <= dimensions <= _MAX_EMBEDDING_DIMENSIONS:
            raise ProviderError(
                f"provider {self.name}: dimensions must be between 1 and {_MAX_EMBEDDING_DIMENSIONS}",
                kind="unsupported",
                provider=self.name,
                param="dimensions",
            )
        if self._latency_s:
            remaining = call.remaining()
            if remaining is not None and remaining < self._latency_s:
                raise ProviderError(
                    f"provider {self.name}: deadline passed", kind="timeout", provider=self.name
                )
            await asyncio.sleep(self._latency_s)
        vectors = []
        tokens = 0
        for item in call.inputs:
            text = item if isinstance(item, str) else " ".join(str(i) for i in item)
            tokens += len(text.split()) if isinstance(item, str) else len(item)
            vectors.append(_unit_vector(text, dimensions))
        return Embeddings(vectors, chat_pb2.Usage(prompt_tokens=tokens))


_REASONING_PREFIX = "thinking about: "


def _wants_reasoning(reasoning: chat_pb2.Reasoning) -> bool:
    if reasoning.disabled:
        return False
    return reasoning.effort not in ("", "none") or reasoning.budget_tokens > 0 or reasoning.include_thoughts


def _logprob(token: str, top: int) -> chat_pb2.TokenLogprob:
    raw = token.encode()
    entry = chat_pb2.TokenLogprob(token=token, logprob=0.0, token_bytes=raw, has_bytes=True)
    if top > 0:
        entry.top_logprobs.add(token=token, logprob=0.0, token_bytes=raw, has_bytes=True)
    # The echo is certain of its token: the alternatives get the lowest log probability OpenAI reports.
    for rank in range(max(top - 1, 0)):
        alternative = f"<alt{rank}>"
        entry.top_logprobs.add(
            token=alternative, logprob=-9999.0, token_bytes=alternative.encode(), has_bytes=True
        )
    return entry


def _unit_vector(text: str, dimensions: int) -> list[float]:
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        block = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        values.extend((b - 127.5) / 127.5 for b in block)
        counter += 1
    values = values[:dimensions]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]
