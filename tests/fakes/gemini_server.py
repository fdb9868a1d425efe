"""A fake Gemini API server: generateContent, streamGenerateContent?alt=sse and batchEmbedContents under
/v1beta/models, checking what the real one does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from aiohttp import web

from .base import FakeServer, sse
from .gemini_checks import (
    Invalid,
    check_count_request,
    check_embed_request,
    check_generate_request,
    counted_gemini_tokens,
)

_FINISH_REASONS = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP", "content_filter": "SAFETY"}
_STATUSES = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL"}


class FakeGemini(FakeServer):
    """Renders the reply as GenerateContentResponse objects: a thought part precedes the text when the
    reply has reasoning tokens (as with includeThoughts), the function calls carry a thought signature,
    every candidate asked for (candidateCount) gets the text prefixed by its index, and chosen-token
    log probabilities come with each text piece when responseLogprobs is set."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding_size = 4
        # Candidate fields for a test that asks: citationMetadata.citationSources, and the finishMessage
        # sent with a SAFETY finish.
        self.citations: list[dict[str, Any]] = []
        self.finish_message = ""
        # Prompt tokens Gemini reports as audio (promptTokensDetails), for a test that asks.
        self.audio_tokens = 0
        # countTokens' body: Google's API wraps the generateContent request, Vertex's does not.
        self.count_wrapped = True
        # Fields ATP's typed reply has no place for, for a test that asks: on every response, in its
        # usageMetadata, and on each candidate's last chunk.
        self.reply_extras: dict[str, Any] = {}
        self.usage_extras: dict[str, Any] = {}
        self.candidate_extras: dict[str, Any] = {}

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
        usage.update(self.usage_extras)
        if self.audio_tokens:
            usage["promptTokensDetails"] = [
                {"modality": "TEXT", "tokenCount": reply.prompt_tokens - self.audio_tokens},
                {"modality": "AUDIO", "tokenCount": self.audio_tokens},
            ]
        return usage

    def _call_parts(self) -> list[dict[str, Any]]:
        return [
            {"functionCall": {"name": n, "args": orjson.loads(a)}, "thoughtSignature": f"ts{i}"}
            for i, (n, a) in enumerate(self.reply.tool_calls)
        ]

    def _chunks(self, index: int, stream: bool) -> list[list[dict[str, Any]]]:
        """One candidate's parts, per stream chunk (one chunk when not streamed)."""
        reply = self.reply
        prefix = f"[{index}] " if index else ""
        pieces = [prefix + p if i == 0 else p for i, p in enumerate(reply.pieces())] if reply.text else []
        if not stream:
            pieces = ["".join(pieces)] if pieces else []
        chunks: list[list[dict[str, Any]]] = [[{"text": piece}] for piece in pieces]
        if reply.reasoning_tokens:
            chunks.insert(0, [{"text": "Let me think.", "thought": True}])
        if reply.tool_calls:
            chunks.append(self._call_parts())
        if not stream:
            chunks = [[part for chunk in chunks for part in chunk]]
        return chunks or [[]]

    @staticmethod
    def _logprobs(parts: list[dict[str, Any]], top: int) -> dict[str, Any]:
        texts = [p["text"] for p in parts if "text" in p and not p.get("thought")]
        chosen = [{"token": t, "tokenId": i, "logProbability": -0.5 * (i + 1)} for i, t in enumerate(texts)]
        tops = [
            {"candidates": [c, {"token": "x", "tokenId": 99, "logProbability": -9.0}][:top]} for c in chosen
        ]
        return {"chosenCandidates": chosen, "topCandidates": tops, "logProbabilitySum": -1.0}

    def _responses(self, config: dict[str, Any], stream: bool) -> list[dict[str, Any]]:
        count = config.get("candidateCount", 1)
        per_candidate = [self._chunks(k, stream) for k in range(count)]
        steps = max(len(chunks) for chunks in per_candidate)
        finish = _FINISH_REASONS[self.reply.finish()]
        responses = []
        for step in range(steps):
            candidates = []
            for k, chunks in enumerate(per_candidate):
                if step >= len(chunks):
                    continue
                candidate: dict[str, Any] = {"content": {"role": "model", "parts": chunks[step]}, "index": k}
                if config.get("responseLogprobs"):
                    candidate["logprobsResult"] = self._logprobs(chunks[step], config.get("logprobs", 0))
                if step == len(chunks) - 1:
                    candidate["finishReason"] = finish
                    if self.citations:
                        candidate["citationMetadata"] = {"citationSources": self.citations}
                    if self.finish_message and finish == "SAFETY":
                        candidate["finishMessage"] = self.finish_message
                    candidate.update(self.candidate_extras)
                candidates.append(candidate)
            responses.append(
                {
                    "candidates": candidates,
                    "usageMetadata": self._usage(),
                    "modelVersion": "fake-001",
                    "responseId": "resp-1",
                    **self.reply_extras,
                }
            )
        return responses

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await self.record(request)
        model, _, method = request.match_info["target"].rpartition(":")
        if method == "countTokens":
            return await self._count(request, body, model)
        try:
            if method == "batchEmbedContents":
                check_embed_request(body, model)
            else:
                check_generate_request(body)
        except Invalid as exc:
            return web.json_response(self.error_body(400, str(exc)), status=400)
        failure = await self.before_reply(request)
        if failure is not None:
            return failure
        config = body.get("generationConfig") or {}
        if method == "generateContent":
            return web.json_response(self._responses(config, stream=False)[0])
        if method == "batchEmbedContents":
            return web.json_response(self._embeddings(body))
        if method != "streamGenerateContent" or request.query.get("alt") != "sse":
            return web.json_response(self.error_body(400, f"unknown method {method}"), status=400)
        events = [sse(orjson.dumps(r)) for r in self._responses(config, stream=True)]
        # Gemini ends events with CRLF pairs; the client must take either line ending.
        events = [e.replace(b"\n", b"\r\n") for e in events]
        return await self.send_events(request, events)

    async def _count(self, request: web.Request, body: Any, model: str) -> web.StreamResponse:
        try:
            counted = check_count_request(body, model, wrapped=self.count_wrapped)
        except Invalid as exc:
            return web.json_response(self.error_body(400, str(exc)), status=400)
        failure = await self.before_reply(request)
        if failure is not None:
            return failure
        return web.json_response({"totalTokens": counted_gemini_tokens(counted)})

    def _embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        out = []
        for i, request in enumerate(body["requests"]):
            size = request.get("outputDimensionality") or self.embedding_size
            text = "".join(p["text"] for p in request["content"]["parts"])
            out.append({"values": [float(len(text)), float(i)] + [0.5] * (size - 2)})
        return {"embeddings": out}


@asynccontextmanager
async def running_fake_gemini() -> AsyncIterator[FakeGemini]:
    """A started FakeGemini; `base_url` is the host root, like generativelanguage.googleapis.com."""
    server = FakeGemini()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
