"""A fake OpenAI-compatible Chat Completions server (also answering Azure's deployment path)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from aiohttp import web

from .base import FakeServer, sse
from .openai_checks import Invalid, check_chat_request, check_input_tokens_request, counted_openai_tokens


class FakeOpenAI(FakeServer):
    """POST /v1/chat/completions and /openai/deployments/{name}/chat/completions, stream or not,
    /v1/embeddings (and Azure's deployment path) and /v1/responses/input_tokens.

    A test that needs reply fields FakeReply does not model (refusals, logprobs, annotations, audio, n
    choices, fingerprint, tier) sets `completion` (the whole non-streamed body, sent as is with the model
    filled in) or `chunks` (the stream's chunk objects, sent as is, then `[DONE]`).
    """

    base_path = "/v1"
    # When set, requests must carry it (`Authorization: Bearer <key>`, or Azure's `api-key`); others get 401.
    api_key: str | None = None
    completion: dict[str, Any] | None = None
    chunks: list[dict[str, Any]] | None = None
    # Embeddings: the usage to report (None: leave usage out, as some compatible servers do).
    embedding_usage: dict[str, int] | None = None

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self.handle)
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self.handle)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_post("/openai/deployments/{deployment}/embeddings", self.embeddings)
        app.router.add_post("/v1/responses/input_tokens", self.input_tokens)

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        if self.api_key is None or self.api_key in (
            request.headers.get("authorization", "").removeprefix("Bearer "),
            request.headers.get("api-key"),
        ):
            return None
        return web.json_response(
            {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}},
            status=401,
        )

    async def input_tokens(self, request: web.Request) -> web.StreamResponse:
        """The Responses API's input token count, checking the body by the SDK's own types."""
        body = await self.record(request)
        refused = self._unauthorized(request) or await self.before_reply(request)
        if refused is not None:
            return refused
        try:
            check_input_tokens_request(body)
        except Invalid as exc:
            return web.json_response(self.error_body(400, str(exc)), status=400)
        return web.json_response(
            {"object": "response.input_tokens", "input_tokens": counted_openai_tokens(body)}
        )

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        """Embeddings the way OpenAI checks them: a model, input as a string, strings or token lists."""
        body = await self.record(request)
        failure = await self.before_reply(request)
        if failure is not None:
            return failure
        inputs = body.get("input")
        if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
            inputs = [inputs]
        valid = (
            isinstance(inputs, list)
            and inputs
            and all(
                (isinstance(i, str) and i)
                or (isinstance(i, list) and i and all(isinstance(t, int) for t in i))
                for i in inputs
            )
        )
        mixed = valid and len({isinstance(i, str) for i in inputs}) > 1
        if not (body.get("model") or request.match_info.get("deployment")) or not valid or mixed:
            return web.json_response(self.error_body(400, "'input' is invalid"), status=400)
        dimensions = body.get("dimensions") or 3
        # Each vector says which input it embeds: [index, length, 0, 0, ...]; data in reverse order, as
        # OpenAI does not promise order (the index field says which is which).
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": [float(i), float(len(item))] + [0.0] * (dimensions - 2),
            }
            for i, item in enumerate(inputs)
        ]
        payload: dict[str, Any] = {"object": "list", "data": data[::-1], "model": body.get("model", "")}
        if self.embedding_usage is not None:
            payload["usage"] = self.embedding_usage
        return web.json_response(payload)

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        kind = (
            "rate_limit_error"
            if status == 429
            else "invalid_request_error"
            if status < 500
            else "server_error"
        )
        return {"error": {"message": message, "type": kind, "param": None, "code": None}}

    def _usage(self) -> dict[str, Any]:
        reply = self.reply
        return {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": reply.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": reply.reasoning_tokens},
        }

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await self.record(request)
        if (refused := self._unauthorized(request)) is not None:
            return refused
        failure = await self.before_reply(request)
        if failure is not None:
            return failure
        try:
            check_chat_request(body)
        except Invalid as exc:
            refusal = self.error_body(400, str(exc))
            refusal["error"].update(param=exc.param, code=exc.code)
            return web.json_response(refusal, status=400)
        model = body.get("model") or request.match_info.get("deployment", "")
        if body.get("stream") and self.chunks is not None:
            events = [sse(orjson.dumps({"model": model, **chunk})) for chunk in self.chunks]
            return await self.send_events(request, [*events, sse(b"[DONE]")])
        if body.get("stream"):
            return await self.send_events(request, self._events(model, body))
        if self.completion is not None:
            return web.json_response({"model": model, **self.completion})
        reply = self.reply
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": args}}
                for i, (name, args) in enumerate(reply.tool_calls)
            ]
        return web.json_response(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 1700000000,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": reply.finish()}],
                "usage": self._usage(),
            }
        )

    def _events(self, model: str, body: dict[str, Any]) -> list[bytes]:
        def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> bytes:
            choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
            payload = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 1700000000,
                "model": model,
                "choices": choices,
                **extra,
            }
            return sse(orjson.dumps(payload))

        reply = self.reply
        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": piece}) for piece in reply.pieces()]
        for i, (name, args) in enumerate(reply.tool_calls):
            start = {
                "index": i,
                "id": f"call_{i}",
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
            events.append(chunk({"tool_calls": [start]}))
            half = len(args) // 2
            for part in (args[:half], args[half:]):
                events.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": part}}]}))
        events.append(chunk({}, reply.finish()))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append(chunk(None, usage=self._usage()))
        events.append(sse(b"[DONE]"))
        # A keepalive comment as the first bytes, as proxies and some servers send.
        events[0] = b": keepalive\n\n" + events[0]
        return events


@asynccontextmanager
async def running_fake_openai() -> AsyncIterator[FakeOpenAI]:
    """A started FakeOpenAI; `base_url` ends in /v1 like OpenAI's."""
    server = FakeOpenAI()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
