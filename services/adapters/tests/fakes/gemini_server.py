"""A fake Gemini API server: generateContent and streamGenerateContent?alt=sse under /v1beta/models."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from aiohttp import web

from .base import FakeServer, sse

_FINISH_REASONS = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP", "content_filter": "SAFETY"}
_STATUSES = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL"}


class FakeGemini(FakeServer):
    """Renders the reply as GenerateContentResponse objects; a thought part precedes the text when the
    reply has reasoning tokens, as thinking models send with includeThoughts."""

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/{version}/models/{target}", self.handle)

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return {"error": {"code": status, "message": message, "status": _STATUSES.get(status, "UNKNOWN")}}

    def _usage(self) -> dict[str, Any]:
        reply = self.reply
        usage = {
            "promptTokenCount": reply.prompt_tokens,
            "candidatesTokenCount": reply.completion_tokens - reply.reasoning_tokens,
            "totalTokenCount": reply.prompt_tokens + reply.completion_tokens,
        }
        if reply.cached_tokens:
            usage["cachedContentTokenCount"] = reply.cached_tokens
        if reply.reasoning_tokens:
            usage["thoughtsTokenCount"] = reply.reasoning_tokens
        return usage

    def _response(self, parts: list[dict[str, Any]], finish: str | None) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        return {"candidates": [candidate], "usageMetadata": self._usage(), "modelVersion": "fake"}

    def _call_parts(self) -> list[dict[str, Any]]:
        return [{"functionCall": {"name": n, "args": orjson.loads(a)}} for n, a in self.reply.tool_calls]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await self.record(request)
        failure = await self.before_reply(request)
        if failure is not None:
            return failure
        target = request.match_info["target"]
        _, _, method = target.rpartition(":")
        reply = self.reply
        finish = _FINISH_REASONS[reply.finish()]
        thought = [{"text": "Let me think.", "thought": True}] if reply.reasoning_tokens else []
        if method == "generateContent":
            parts = thought + ([{"text": reply.text}] if reply.text else []) + self._call_parts()
            return web.json_response(self._response(parts, finish))
        if method != "streamGenerateContent" or request.query.get("alt") != "sse":
            return web.json_response(self.error_body(400, f"unknown method {method}"), status=400)
        chunks = [[{"text": piece}] for piece in reply.pieces()]
        if thought:
            chunks.insert(0, thought)
        if reply.tool_calls:
            chunks.append(self._call_parts())
        if not chunks:
            chunks.append([])
        events = [
            sse(orjson.dumps(self._response(parts, finish if i == len(chunks) - 1 else None)))
            for i, parts in enumerate(chunks)
        ]
        # Gemini ends events with CRLF pairs; the client must take either line ending.
        events = [e.replace(b"\n", b"\r\n") for e in events]
        return await self.send_events(request, events)


@asynccontextmanager
async def running_fake_gemini() -> AsyncIterator[FakeGemini]:
    """A started FakeGemini; `base_url` is the host root, like generativelanguage.googleapis.com."""
    server = FakeGemini()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
