"""POST /v1/responses: the OpenAI Responses dialect of the one exchange (stateless, any provider)."""

from __future__ import annotations

from atp.adapters.v1 import adapters_pb2
from atp_gateway.dialects.json_fields import MESSAGE_SOURCES
from atp_gateway.dialects.responses_errors import responses_error_reply
from atp_gateway.dialects.responses_reply import ResponsesReply
from atp_gateway.dialects.responses_request import parse_responses_request
from atp_gateway.exchange import Caller, Dialect

__all__ = ["RESPONSES"]


def _parse(body: bytes, caller: Caller) -> tuple[adapters_pb2.GenerateRequest, ResponsesReply]:
    MESSAGE_SOURCES.set(())
    request, options = parse_responses_request(body)
    MESSAGE_SOURCES.set(options.sources)
    return request, ResponsesReply(options)


# Errors keep OpenAI's shape, as OpenAI's Responses API answers them, naming paths of the Responses body.
RESPONSES = Dialect("responses", _parse, error_reply=responses_error_reply)
