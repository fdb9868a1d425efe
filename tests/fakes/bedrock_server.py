"""A fake Bedrock Runtime: checks SigV4 and the Converse body against botocore's model, answers Converse(Stream)."""

from __future__ import annotations

import base64
import binascii
import datetime
import re
import struct
from typing import Any
from urllib.parse import unquote

import botocore.session
import orjson
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from .base import FakeServer, RecordedRequest

ACCESS_KEY = "AKIDFAKEBEDROCK00001"
SECRET_KEY = "fake/secret/key/for/loopback/tests/only0"
_MODEL = botocore.session.get_session().get_service_model("bedrock-runtime")
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
_MAX_SKEW = datetime.timedelta(minutes=5)


class ShapeError(ValueError):
    """The body breaks the API's model, as Bedrock's ValidationException says."""


def _check(shape: Any, value: Any, path: str) -> None:
    kind = shape.type_name
    if kind == "structure":
        if shape.metadata.get("document"):
            return
        if not isinstance(value, dict):
            raise ShapeError(f"{path}: expected an object")
        unknown = set(value) - set(shape.members)
        if unknown:
            raise ShapeError(f"{path}: unknown field(s) {sorted(unknown)}")
        missing = [m for m in shape.required_members if m not in value]
        if missing:
            raise ShapeError(f"{path}: missing required field(s) {missing}")
        if shape.metadata.get("union") and len(value) != 1:
            raise ShapeError(f"{path}: exactly one member of {shape.name} must be set")
        for name, member in value.items():
            _check(shape.members[name], member, f"{path}.{name}")
    elif kind == "list":
        if not isinstance(value, list):
            raise ShapeError(f"{path}: expected a list")
        for i, item in enumerate(value):
            _check(shape.member, item, f"{path}[{i}]")
    elif kind == "map":
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ShapeError(f"{path}: expected a map of strings")
    elif kind == "string":
        if not isinstance(value, str):
            raise ShapeError(f"{path}: expected a string")
        if shape.enum and value not in shape.enum:
            raise ShapeError(f"{path}: {value!r} is not one of {shape.enum}")
        if len(value) < shape.metadata.get("min", 0):
            raise ShapeError(f"{path}: shorter than {shape.metadata['min']}")
        if len(value) > shape.metadata.get("max", len(value)):
            raise ShapeError(f"{path}: longer than {shape.metadata['max']}")
        pattern = shape.metadata.get("pattern")
        if pattern and re.fullmatch(pattern, value) is None:
            raise ShapeError(f"{path}: does not match {pattern}")
    elif kind in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ShapeError(f"{path}: expected an integer")
    elif kind in ("float", "double"):
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ShapeError(f"{path}: expected a number")
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if (low is not None and value < low) or (high is not None and value > high):
            raise ShapeError(f"{path}: {value} is outside {low}..{high}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise ShapeError(f"{path}: expected a boolean")
    elif kind == "blob":
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, TypeError) as exc:
            raise ShapeError(f"{path}: not base64") from exc


def check_converse(body: Any) -> None:
    """The checks Bedrock makes of a Converse body: the model's shapes, then the conversation's rules."""
    shape = _MODEL.operation_model("Converse").input_shape
    if not isinstance(body, dict) or "modelId" in body:
        raise ShapeError("body: the model id travels in the path")
    _check(shape, {"modelId": "m", **body}, "body")
    messages = body["messages"]
    if not messages or messages[0]["role"] != "user":
        raise ShapeError("messages: a conversation must start with a user message")
    tool_ids: set[str] = set()
    for i, message in enumerate(messages):
        if i and message["role"] == messages[i - 1]["role"]:
            raise ShapeError("messages: user and assistant messages must alternate")
        for block in message["content"]:
            if "toolUse" in block:
                tool_ids.add(block["toolUse"]["toolUseId"])
            if "toolResult" in block and block["toolResult"]["toolUseId"] not in tool_ids:
                raise ShapeError(f"messages[{i}]: toolResult for an unknown toolUseId")
    if tool_ids and "toolConfig" not in body:
        raise ShapeError("toolConfig: required when messages hold toolUse or toolResult blocks")


def check_count(body: Any) -> dict[str, Any]:
    """The checks of a CountTokens body (botocore's model, the conversation's rules); the Converse input."""
    shape = _MODEL.operation_model("CountTokens").input_shape
    if not isinstance(body, dict) or "modelId" in body:
        raise ShapeError("body: the model id travels in the path")
    _check(shape, {"modelId": "m", **body}, "body")
    converse = body["input"].get("converse")
    if converse is None:
        raise ShapeError("input: the fake counts Converse input only")
    check_converse(converse)
    return converse


def counted_bedrock_tokens(converse: dict[str, Any]) -> int:
    """The fake's count: a quarter of the JSON of what the model reads (deterministic)."""
    return len(orjson.dumps(converse, option=orjson.OPT_SORT_KEYS)) // 4


def frame(event_type: str, payload: dict[str, Any], message_type: str = "event") -> bytes:
    """One AWS event-stream message: prelude, headers, payload and CRCs."""
    headers = b""
    kind_header = ":exception-type" if message_type == "exception" else ":event-type"
    for name, value in (
        (kind_header, event_type),
        (":content-type", "application/json"),
        (":message-type", message_type),
    ):
        raw = value.encode()
        headers += bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(raw)) + raw
    body = orjson.dumps(payload)
    total = 12 + len(headers) + len(body) + 4
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    message = prelude + headers + body
    return message + struct.pack(">I", binascii.crc32(message))


class FakeBedrock(FakeServer):
    """Bedrock Runtime in `region`, accepting only requests signed with ACCESS_KEY/SECRET_KEY."""

    def __init__(self, region: str = "eu-west-1") -> None:
        super().__init__()
        self.region = region
        self.reasoning = ""
        self.stream_exception: str | None = None
        # Converse citations of the reply's text (a citationsContent block; citation deltas when streamed).
        self.citations: list[dict[str, Any]] = []
        # A stopReason of Converse's own to end the reply with instead of the usual one.
        self.stop_reason = ""

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/model/{model}/converse", self.handle)
        app.router.add_post("/model/{model}/converse-stream", self.handle)
        app.router.add_post("/model/{model}/count-tokens", self.count_tokens)

    async def count_tokens(self, request: web.Request) -> web.StreamResponse:
        """CountTokens as Bedrock answers it: signed, its body checked by botocore's model."""
        raw = await request.read()
        problem = self._signature_error(request, raw)
        body = orjson.loads(raw)
        await self.record_body(request, body)
        if problem is not None:
            return web.json_response({"message": problem}, status=403)
        try:
            converse = check_count(body)
        except ShapeError as exc:
            headers = {"x-amzn-errortype": "ValidationException"}
            return web.json_response({"message": str(exc)}, status=400, headers=headers)
        return web.json_response({"inputTokens": counted_bedrock_tokens(converse)})

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return {"message": message}

    def _signature_error(self, request: web.Request, body: bytes) -> str | None:
        authorization = request.headers.get("authorization", "")
        if not authorization.startswith("AWS4-HMAC-SHA256 "):
            return "Missing Authentication Token"
        fields = dict(item.strip().split("=", 1) for item in authorization[17:].split(","))
        access_key, scope_date, region, service, _ = fields["Credential"].split("/")
        if access_key != ACCESS_KEY:
            return "The security token included in the request is invalid."
        if (region, service) != (self.region, "bedrock"):
            return f"Credential should be scoped to a valid region and service {self.region}/bedrock."
        amz_date = request.headers.get("x-amz-date", "")
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
        if abs(datetime.datetime.now(datetime.UTC) - when) > _MAX_SKEW or scope_date != amz_date[:8]:
            return "Signature expired"
        signed = fields["SignedHeaders"].split(";")
        url = f"http://{request.host}{request.raw_path}"
        replay = AWSRequest("POST", url, data=body, headers={h: request.headers[h] for h in signed})
        replay.context["timestamp"] = amz_date
        auth = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "bedrock", self.region)
        expected = auth.signature(auth.string_to_sign(replay, auth.canonical_request(replay)), replay)
        if expected != fields["Signature"]:
            return "The request signature we calculated does not match the signature you provided."
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        problem = self._signature_error(request, raw)
        body = orjson.loads(raw)
        await self.record_body(request, body)
        if problem is not None:
            return web.json_response({"message": problem}, status=403)
        try:
            check_converse(body)
        except ShapeError as exc:
            headers = {"x-amzn-errortype": "ValidationException"}
            return web.json_response({"message": str(exc)}, status=400, headers=headers)
        failure = await self.before_reply(request)
        if failure is not None:
            return failure
        if request.path.endswith("/converse-stream"):
            return await self.send_events(request, self._events())
        return web.json_response(self._full())

    async def record_body(self, request: web.Request, body: Any) -> None:
        path = unquote(request.raw_path)
        self.requests.append(RecordedRequest("POST", path, dict(request.query), dict(request.headers), body))

    def _usage(self) -> dict[str, Any]:
        reply = self.reply
        return {
            "inputTokens": reply.prompt_tokens - reply.cached_tokens - reply.cache_write_tokens,
            "outputTokens": reply.completion_tokens,
            "totalTokens": reply.prompt_tokens + reply.completion_tokens,
            "cacheReadInputTokens": reply.cached_tokens,
            "cacheWriteInputTokens": reply.cache_write_tokens,
        }

    def _full(self) -> dict[str, Any]:
        reply = self.reply
        content: list[dict[str, Any]] = []
        if self.reasoning:
            content.append(
                {"reasoningContent": {"reasoningText": {"text": self.reasoning, "signature": "sig"}}}
            )
        if reply.text and self.citations:
            content.append(
                {"citationsContent": {"content": [{"text": reply.text}], "citations": self.citations}}
            )
        elif reply.text:
            content.append({"text": reply.text})
        for i, (name, args) in enumerate(reply.tool_calls):
            content.append(
                {"toolUse": {"toolUseId": f"tooluse_{i}", "name": name, "input": orjson.loads(args)}}
            )
        return {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": self.stop_reason or _STOP_REASONS.get(self.reply.finish(), "end_turn"),
            "usage": self._usage(),
            "metrics": {"latencyMs": 12},
        }

    def _events(self) -> list[bytes]:
        reply = self.reply
        events = [frame("messageStart", {"role": "assistant"})]
        block = 0
        if self.reasoning:
            delta = {"reasoningContent": {"text": self.reasoning}}
            events.append(frame("contentBlockDelta", {"contentBlockIndex": block, "delta": delta}))
            delta = {"reasoningContent": {"signature": "sig"}}
            events.append(frame("contentBlockDelta", {"contentBlockIndex": block, "delta": delta}))
            events.append(frame("contentBlockStop", {"contentBlockIndex": block}))
            block += 1
        for piece in reply.pieces():
            events.append(frame("contentBlockDelta", {"contentBlockIndex": block, "delta": {"text": piece}}))
        for citation in self.citations:
            delta = {"citation": citation}
            events.append(frame("contentBlockDelta", {"contentBlockIndex": block, "delta": delta}))
        if self.stream_exception:
            events.append(frame(self.stream_exception, {"message": "slow down"}, "exception"))
        events.append(frame("contentBlockStop", {"contentBlockIndex": block}))
        for i, (name, args) in enumerate(reply.tool_calls):
            block += 1
            start = {"toolUse": {"toolUseId": f"tooluse_{i}", "name": name}}
            events.append(frame("contentBlockStart", {"contentBlockIndex": block, "start": start}))
            half = len(args) // 2
            for piece in (args[:half], args[half:]):
                delta = {"toolUse": {"input": piece}}
                events.append(frame("contentBlockDelta", {"contentBlockIndex": block, "delta": delta}))
            events.append(frame("contentBlockStop", {"contentBlockIndex": block}))
        stop = self.stop_reason or _STOP_REASONS.get(reply.finish(), "end_turn")
        events.append(frame("messageStop", {"stopReason": stop}))
        events.append(frame("metadata", {"usage": self._usage(), "metrics": {"latencyMs": 12}}))
        return events
