"""A fake Anthropic Messages API server: POST /v1/messages, stream or not, checking what the real one does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from .anthropic_checks import (
    Invalid,
    check_context_management,
    check_count_request,
    check_messages_request,
    counted_tokens,
)
from .base import FakeServer, sse

_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


@dataclass
class AnthropicExtras:
    """Reply blocks beyond text and tool calls, for a test that asks: a thinking block (text, signature)
    before the text, a redacted_thinking block, citations on the text block, a refusal (stop_reason
    refusal with this explanation), the stop sequence that ended the reply."""

    thinking: tuple[str, str] | None = None
    redacted_thinking: str = ""
    citations: list[dict[str, Any]] = field(default_factory=list)
    refusal: str | None = None
    refusal_category: str | None = None
    stop_sequence: str = ""
    # A stop reason of Anthropic's own that ends the reply instead of the usual one.
    stop_reason: str = ""
    # Fields ATP's typed reply has no place for: a code execution container (a Message's top level, or
    # message_delta's delta when streamed) and usage fields newer than ATP.
    container: dict[str, Any] | None = None
    usage: dict[str, Any] = field(default_factory=dict)


class FakeAnthropic(FakeServer):
    """Renders the reply as Messages API content blocks and stream events; answers 400 with the real
    service's error shape for a request it would refuse (anthropic_checks.py)."""

    def __init__(self) -> None:
        super().__init__()
        self.extras = AnthropicExtras()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self.handle)
        app.router.add_post("/v1/messages/count_tokens", self.count_tokens)

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return {"type": "error", "error": {"type": _ERROR_TYPES.get(status, "api_error"), "message": message}}

    def _usage(self, output_tokens: int, body: dict[str, Any]) -> dict[str, Any]:
        reply = self.reply
        usage = {
            # Anthropic's input_tokens leaves out what was read from and written to the cache.
            "input_tokens": reply.prompt_tokens - reply.cached_tokens - reply.cache_write_tokens,
            "cache_creation_input_tokens": reply.cache_write_tokens,
            "cache_read_input_tokens": reply.cached_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": reply.cache_write_tokens,
                "ephemeral_1h_input_tokens": 0,
            },
            "output_tokens": output_tokens,
            "output_tokens_details": {"thinking_tokens": reply.reasoning_tokens},
            "service_tier": "standard",
        }
        # The request's speed and inference region, reported back as the API does.
        usage.update({k: body[k] for k in ("speed", "inference_geo") if k in body})
        usage.update(self.extras.usage)
        return usage

    async def count_tokens(self, request: web.Request) -> web.StreamResponse:
        """count_tokens as the real service answers it: its key and version headers, its body checks."""
        body = await self.record(request)
        if not request.headers.get("x-api-key") and not request.headers.get("authorization"):
            return web.json_response(self.error_body(401, "x-api-key header is required"), status=401)
        if not request.headers.get("anthropic-version"):
            return web.json_response(
                self.error_body(400, "anthropic-version: header is required"), status=400
            )
        try:
            check_count_request(body)
        except Invalid as exc:
            return web.json_response(self.error_body(400, str(exc)), status=400)
        failure = await self.before_reply(request)
        if failure is not None:
            return failure
        return web.json_response({"input_tokens": counted_tokens(body)})

    async def handle(self, request: web.Request) -> web.StreamResponse:
        return await self.respond(request, await self.record(request))

    async def respond(self, request: web.Request, body: Any) -> web.StreamResponse:
        """Check a recorded body as Messages does, then answer it."""
        try:
            check_messages_request(body)
            applied = check_context_management(body, request.headers.get("anthropic-beta", ""))
        except Invalid as exc:
            return web.json_response(self.error_body(400, str(exc)), status=400)
        failure = await self.before_reply(request)
        if failure is not None:
            return failure
        reply = self.reply
        # The edits applied, reported as the API does when the request asked for context management.
        edits = {"context_management": {"applied_edits": applied}} if "context_management" in body else {}
        if body.get("stream"):
            return await self.send_events(request, self._events(body, edits))
        return web.json_response(
            {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": body.get("model"),
                "content": self._blocks(),
                **self._stop(),
                "usage": self._usage(reply.completion_tokens, body),
                **edits,
                **self._container(),
            }
        )

    def _container(self) -> dict[str, Any]:
        return {"container": self.extras.container} if self.extras.container is not None else {}

    def _blocks(self) -> list[dict[str, Any]]:
        reply, extras = self.reply, self.extras
        content: list[dict[str, Any]] = []
        if extras.thinking:
            content.append(
                {"type": "thinking", "thinking": extras.thinking[0], "signature": extras.thinking[1]}
            )
        if extras.redacted_thinking:
            content.append({"type": "redacted_thinking", "data": extras.redacted_thinking})
        if reply.text:
            text: dict[str, Any] = {"type": "text", "text": reply.text}
            if extras.citations:
                text["citations"] = extras.citations
            content.append(text)
        for i, (name, args) in enumerate(reply.tool_calls):
            content.append(
                {"type": "tool_use", "id": f"toolu_{i}", "name": name, "input": orjson.loads(args)}
            )
        return content

    def _stop(self) -> dict[str, Any]:
        extras = self.extras
        if extras.refusal is not None:
            details = {
                "type": "refusal",
                "category": extras.refusal_category,
                "explanation": extras.refusal or None,
            }
            return {"stop_reason": "refusal", "stop_sequence": None, "stop_details": details}
        if extras.stop_reason:
            return {"stop_reason": extras.stop_reason, "stop_sequence": None, "stop_details": None}
        if extras.stop_sequence:
            return {
                "stop_reason": "stop_sequence",
                "stop_sequence": extras.stop_sequence,
                "stop_details": None,
            }
        return {
            "stop_reason": _STOP_REASONS[self.reply.finish()],
            "stop_sequence": None,
            "stop_details": None,
        }

    def _events(self, body: dict[str, Any], edits: dict[str, Any]) -> list[bytes]:
        def event(kind: str, **payload: Any) -> bytes:
            return sse(orjson.dumps({"type": kind, **payload}), kind)

        reply = self.reply
        message = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": body.get("model"),
            "stop_reason": None,
            "stop_sequence": None,
            "usage": self._usage(1, body),
        }
        events = [event("message_start", message=message)]
        for index, block in enumerate(self._blocks()):
            events.append(event("content_block_start", index=index, content_block=self._opening(block)))
            if index == 0:
                events.append(event("ping"))
            for delta in self._deltas(block, reply.pieces()):
                events.append(event("content_block_delta", index=index, delta=delta))
            events.append(event("content_block_stop", index=index))
        stop = {**self._stop(), **self._container()}
        usage = {
            "output_tokens": reply.completion_tokens,
            "output_tokens_details": {"thinking_tokens": reply.reasoning_tokens},
            **self.extras.usage,
        }
        events.append(event("message_delta", delta=stop, usage=usage, **edits))
        events.append(event("message_stop"))
        return events

    @staticmethod
    def _opening(block: dict[str, Any]) -> dict[str, Any]:
        """A block as content_block_start shows it: empty, to be filled by deltas."""
        kind = block["type"]
        if kind == "text":
            return {"type": "text", "text": "", "citations": None}
        if kind == "thinking":
            return {"type": "thinking", "thinking": "", "signature": ""}
        if kind == "tool_use":
            return {**block, "input": {}}
        return block

    @staticmethod
    def _deltas(block: dict[str, Any], pieces: list[str]) -> list[dict[str, Any]]:
        kind = block["type"]
        if kind == "text":
            deltas = [{"type": "citations_delta", "citation": c} for c in block.get("citations") or ()]
            return deltas + [{"type": "text_delta", "text": piece} for piece in pieces]
        if kind == "thinking":
            return [
                {"type": "thinking_delta", "thinking": block["thinking"]},
                {"type": "signature_delta", "signature": block["signature"]},
            ]
        if kind == "tool_use":
            args = orjson.dumps(block["input"]).decode()
            half = len(args) // 2
            return [{"type": "input_json_delta", "partial_json": part} for part in (args[:half], args[half:])]
        return []


@asynccontextmanager
async def running_fake_anthropic() -> AsyncIterator[FakeAnthropic]:
    """A started FakeAnthropic; `base_url` is the host root, like api.anthropic.com."""
    server = FakeAnthropic()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
