"""A fake Anthropic Messages API server: POST /v1/messages, stream or not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from aiohttp import web

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


class FakeAnthropic(FakeServer):
    """Renders the reply as Messages API content blocks and stream events."""

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self.handle)

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return {"type": "error", "error": {"type": _ERROR_TYPES.get(status, "api_error"), "message": message}}

    def _usage(self, output_tokens: int) -> dict[str, Any]:
        reply = self.reply
        return {
            # Anthropic's input_tokens leaves out what was read from and written to the cache.
            "input_tokens": reply.prompt_tokens - reply.cached_tokens - reply.cache_write_tokens,
            "cache_creation_input_tokens": reply.cache_write_tokens,
            "cache_read_input_tokens": reply.cached_tokens,
            "output_tokens": output_tokens,
        }

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await self.record(request)
        failure = await self.before_reply(request)
        if failure is not None:
            return failure
        reply = self.reply
        if body.get("stream"):
            return await self.send_events(request, self._events(body))
        content: list[dict[str, Any]] = []
        if reply.text:
            content.append({"type": "text", "text": reply.text})
        for i, (name, args) in enumerate(reply.tool_calls):
            content.append(
                {"type": "tool_use", "id": f"toolu_{i}", "name": name, "input": orjson.loads(args)}
            )
        return web.json_response(
            {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": body.get("model"),
                "content": content,
                "stop_reason": _STOP_REASONS[reply.finish()],
                "stop_sequence": None,
                "usage": self._usage(reply.completion_tokens),
            }
        )

    def _events(self, body: dict[str, Any]) -> list[bytes]:
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
            "usage": self._usage(1),
        }
        events = [event("message_start", message=message)]
        index = 0
        if reply.text:
            events.append(event("content_block_start", index=0, content_block={"type": "text", "text": ""}))
            events.append(event("ping"))
            for piece in reply.pieces():
                events.append(
                    event("content_block_delta", index=0, delta={"type": "text_delta", "text": piece})
                )
            events.append(event("content_block_stop", index=0))
            index = 1
        for i, (name, args) in enumerate(reply.tool_calls):
            block = {"type": "tool_use", "id": f"toolu_{i}", "name": name, "input": {}}
            events.append(event("content_block_start", index=index, content_block=block))
            half = len(args) // 2
            for part in (args[:half], args[half:]):
                delta = {"type": "input_json_delta", "partial_json": part}
                events.append(event("content_block_delta", index=index, delta=delta))
            events.append(event("content_block_stop", index=index))
            index += 1
        events.append(
            event(
                "message_delta",
                delta={"stop_reason": _STOP_REASONS[reply.finish()], "stop_sequence": None},
                usage={"output_tokens": reply.completion_tokens},
            )
        )
        events.append(event("message_stop"))
        return events


@asynccontextmanager
async def running_fake_anthropic() -> AsyncIterator[FakeAnthropic]:
    """A started FakeAnthropic; `base_url` is the host root, like api.anthropic.com."""
    server = FakeAnthropic()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
