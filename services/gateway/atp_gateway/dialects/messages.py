"""POST /v1/messages: the Anthropic Messages dialect of the one exchange (any provider, Anthropic's errors)."""

from __future__ import annotations

from atp.adapters.v1 import adapters_pb2
from atp_common.errors import InvalidArgument
from atp_gateway.dialects.messages_errors import messages_error_reply
from atp_gateway.dialects.messages_reply import MessagesReply
from atp_gateway.dialects.messages_request import parse_messages_request
from atp_gateway.exchange import Caller, Dialect

__all__ = ["ANTHROPIC_VERSIONS", "MESSAGES"]

# The API versions whose request and reply shapes this dialect speaks (Anthropic's current one is
# 2023-06-01; 2023-01-01 differs only in streaming details the SDKs no longer use).
ANTHROPIC_VERSIONS = frozenset((b"2023-06-01", b"2023-01-01"))


def _parse(body: bytes, caller: Caller) -> tuple[adapters_pb2.GenerateRequest, MessagesReply]:
    # Required like Anthropic requires it: a client that does not say which API it speaks gets a 400.
    version = caller.header(b"anthropic-version")
    if version is None:
        raise InvalidArgument("anthropic-version: header is required", param="anthropic-version")
    if version.strip() not in ANTHROPIC_VERSIONS:
        raise InvalidArgument(
            "anthropic-version: ATP speaks 2023-06-01 (and 2023-01-01).", param="anthropic-version"
        )
    request = parse_messages_request(body)
    return request, MessagesReply(request.stream)


MESSAGES = Dialect("messages", _parse, error_reply=messages_error_reply)
