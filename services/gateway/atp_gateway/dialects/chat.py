"""The OpenAI Chat Completions dialect: its request parser and reply encoder over the one exchange."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

from atp.adapters.v1 import adapters_pb2
from atp_gateway.dialects.chat_reply import ChatEncoder
from atp_gateway.dialects.chat_request import to_generate_request
from atp_gateway.dialects.chat_schema import CHAT_REQUEST
from atp_gateway.errors import error_from_validation
from atp_gateway.exchange import Caller, Dialect

__all__ = ["CHAT", "parse"]


def parse(body: bytes, caller: Caller) -> tuple[adapters_pb2.GenerateRequest, ChatEncoder]:
    """A chat completion request body as the Generate request and the encoder of its reply."""
    try:
        parsed = CHAT_REQUEST.validate_json(body)
    except ValidationError as exc:
        raise error_from_validation(exc, _loads(body)) from None
    request = to_generate_request(parsed, stream=bool(parsed.get("stream")))
    return request, ChatEncoder(request.include_usage, legacy_functions=bool(parsed.get("functions")))


def _loads(body: bytes) -> Any:
    """The body as JSON, for naming an error's path (None when it is not JSON)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


CHAT = Dialect("chat", parse, endpoint="chat_completions")
