"""The built-in deterministic provider: echoes the last user message, paced like a real model."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator

import orjson

from atp.common.v1 import chat_pb2
from atp_adapters.providers.base import Provider, ProviderBatch, ProviderError, ProviderRequest
from atp_common import config

# Word-ish tokens that concatenate back to the text exactly: leading whitespace sticks to its word.
_TOKEN = re.compile(r"\s*\S+|\s+")
# Per-message overhead in the prompt estimate, as OpenAI's chat format spends on role and delimiters.
_MESSAGE_OVERHEAD_TOKENS = 3
_JSON_FORMATS = frozenset(("json_object", "json_schema"))


def count_prompt_tokens(messages: list[chat_pb2.ChatMessage] | tuple[chat_pb2.ChatMessage, ...]) -> int:
    """The local provider's prompt token count: whitespace-separated words plus 3 per message."""
    total = 0
    for message in messages:
        total += len(_message_text(message).split()) + _MESSAGE_OVERHEAD_TOKENS
    return total


def _message_text(message: chat_pb2.ChatMessage) -> str:
    if message.content or not message.content_parts_json:
        return message.content
    try:
        parts = orjson.loads(message.content_parts_json)
    except orjson.JSONDecodeError:
        return ""
    return " ".join(p.get("text", "") for p in parts if isinstance(p, dict) and p.get("type") == "text")


class LocalProvider(Provider):
    """Replies `reply_prefix + last user message`, split into word-ish tokens.

    Behaviour, all deterministic: `latency_ms` passes before the first token; with `tokens_per_second`
    each streamed batch holds one token, paced, and a non-streamed reply takes as long in total; at 0 the
    whole reply is one batch at once. `stop` cuts the reply before the first stop string, `max_tokens`
    truncates it (finish_reason `length`). A JSON `response_format` wraps the reply as `{"echo": reply}`.
    With tools and a `tool_choice` of `required` or a named function, it calls that function (or the first
    tool) with `{"text": last user message}`. Usage is exact: completion tokens are the tokens emitted,
    prompt tokens follow `count_prompt_tokens`.
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
        if not params.tools_json or not params.tool_choice_json:
            return None
        try:
            choice = orjson.loads(params.tool_choice_json)
            tools = orjson.loads(params.tools_json)
        except orjson.JSONDecodeError as exc:
            raise ProviderError(
                f"provider {self.name}: tools or tool_choice is not JSON",
                kind="unsupported",
                provider=self.name,
                param="tools",
            ) from exc
        if isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name", "")
        elif choice == "required" and tools:
            name = (tools[0].get("function") or {}).get("name", "")
        else:
            return None
        return chat_pb2.ToolCallDelta(
            index=0,
            id="call_local_0",
            type="function",
            function_name=name,
            arguments=orjson.dumps({"text": user_text}).decode(),
        )

    async def _sleep(self, seconds: float, request: ProviderRequest) -> None:
        remaining = request.remaining()
        if remaining is not None and remaining < seconds:
            await asyncio.sleep(max(remaining, 0.0))
            raise ProviderError(f"provider {self.name}: deadline passed", kind="timeout", provider=self.name)
        await asyncio.sleep(seconds)

    async def stream(self, request: ProviderRequest) -> AsyncGenerator[ProviderBatch, None]:
        params = request.params
        user_text = self._last_user_text(request)
        prompt_tokens = count_prompt_tokens(request.messages)  # type: ignore[arg-type]
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

        text = self._prefix + user_text
        if params.response_format_json and _wants_json(params.response_format_json):
            text = orjson.dumps({"echo": text}).decode()
        finish = "stop"
        for stop in params.stop:
            cut = text.find(stop) if stop else -1
            if cut >= 0:
                text = text[:cut]
        tokens = _TOKEN.findall(text)
        if params.HasField("max_tokens") and len(tokens) > params.max_tokens:
            tokens = tokens[: max(params.max_tokens, 0)]
            finish = "length"
        usage = chat_pb2.Usage(prompt_tokens=prompt_tokens, completion_tokens=len(tokens))

        interval = self._interval_s
        if not request.stream or not interval or len(tokens) <= 1:
            delay = self._latency_s + interval * max(len(tokens) - 1, 0)
            if delay:
                await self._sleep(delay, request)
            deltas = [chat_pb2.Delta(role="assistant", content="".join(tokens))] if tokens else []
            yield ProviderBatch(deltas, finish, usage)
            return

        if self._latency_s:
            await self._sleep(self._latency_s, request)
        last = len(tokens) - 1
        yield ProviderBatch([chat_pb2.Delta(role="assistant", content=tokens[0])])
        for i in range(1, last + 1):
            await self._sleep(interval, request)
            delta = chat_pb2.Delta(content=tokens[i])
            yield ProviderBatch([delta], finish, usage) if i == last else ProviderBatch([delta])


def _wants_json(response_format_json: bytes) -> bool:
    try:
        response_format = orjson.loads(response_format_json)
    except orjson.JSONDecodeError:
        return False
    return isinstance(response_format, dict) and response_format.get("type") in _JSON_FORMATS
