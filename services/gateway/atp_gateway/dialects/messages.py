"""POST /v1/messages: the Anthropic Messages dialect of the one exchange (any provider, Anthropic's errors)."""

from __future__ import annotations

import re

from atp.adapters.v1 import adapters_pb2
from atp_common.errors import InvalidArgument
from atp_gateway.dialects.json_fields import MESSAGE_SOURCES
from atp_gateway.dialects.messages_errors import messages_error_reply
from atp_gateway.dialects.messages_reply import MessagesReply
from atp_gateway.dialects.messages_request import parse_messages_request
from atp_gateway.exchange import Caller, Dialect

__all__ = ["MESSAGES", "parse_checked"]

# An API version is a date; each SDK release sends its own, and the request and reply shapes this dialect
# speaks (the SDK's typed models, checked in the tests) are what every version since 2023-06-01 uses.
_VERSION = re.compile(rb"\d{4}-\d{2}-\d{2}")
# A beta's name as Anthropic spells them (`interleaved-thinking-2025-05-14`); bounded in length and count.
_BETA = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_MAX_BETAS = 32


def _parse(body: bytes, caller: Caller) -> tuple[adapters_pb2.GenerateRequest, MessagesReply]:
    request = parse_checked(body, caller)
    return request, MessagesReply(request.stream)


def parse_checked(body: bytes, caller: Caller, *, counting: bool = False) -> adapters_pb2.GenerateRequest:
    """The request of a Messages (or, `counting`, a count_tokens) body from a caller that names its API
    version; where each message came from is kept for the errors that name one."""
    MESSAGE_SOURCES.set(())
    # Required like Anthropic requires it: a client that does not say which API it speaks gets a 400.
    version = caller.header(b"anthropic-version")
    if version is None:
        raise InvalidArgument("anthropic-version: header is required", param="anthropic-version")
    if not _VERSION.fullmatch(version.strip()) or version.strip() < b"2023-06-01":
        raise InvalidArgument(
            "anthropic-version: expected a version date from 2023-06-01 on.", param="anthropic-version"
        )
    request, sources = parse_messages_request(body, counting=counting)
    request.params.anthropic_betas.extend(_betas(caller))
    MESSAGE_SOURCES.set(tuple(sources))
    return request


def _betas(caller: Caller) -> list[str]:
    """The anthropic-beta header's betas (comma-separated, the header possibly repeated), in order, once each."""
    betas: list[str] = []
    for name, value in caller.scope["headers"]:
        if name != b"anthropic-beta":
            continue
        for beta in value.decode("latin-1").split(","):
            beta = beta.strip()
            if not beta:
                continue
            if not _BETA.fullmatch(beta):
                raise InvalidArgument(
                    f"anthropic-beta: {beta[:80]!r} is not a beta name", param="anthropic-beta"
                )
            if beta not in betas:
                betas.append(beta)
    if len(betas) > _MAX_BETAS:
        raise InvalidArgument(f"anthropic-beta: at most {_MAX_BETAS} betas", param="anthropic-beta")
    return betas


MESSAGES = Dialect("messages", _parse, error_reply=messages_error_reply)
