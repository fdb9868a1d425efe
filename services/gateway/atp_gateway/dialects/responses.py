"""POST /v1/responses: the OpenAI Responses dialect of the one exchange (stateless, any provider)."""

from __future__ import annotations

from atp.adapters.v1 import adapters_pb2
from atp_gateway.dialects.responses_reply import ResponsesReply
from atp_gateway.dialects.responses_request import parse_responses_request
from atp_gateway.exchange import Caller, Dialect

__all__ = ["RESPONSES"]


def _parse(body: bytes, caller: Caller) -> tuple[adapters_pb2.GenerateRequest, ResponsesReply]:
    request, options = parse_responses_request(body)
    return request, ResponsesReply(options)


# Errors keep OpenAI's shape (the exchange's default), as OpenAI's Responses API answers them.
RESPONSES = Dialect("responses", _parse)
